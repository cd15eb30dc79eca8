// BatchNorm + activation around a conv output y (N, C, H, W), in any layout: the three elementwise /
// per-channel-reduction kernels of the conv_bn_relu family (contract: cnnkern/problem/conv_bn.py; design and
// predicted times: conv_bn_relu.md beside this file).
//
//   kNormalize  out = act(y * a + b)
//   kReduce     per channel: sum dz and sum dz * xhat, dz = grad * act'(y * a + b), xhat = (y - mean) * invstd
//   kApply      out = k_dz * dz + k_one + k_xhat * xhat
//
// Per-channel vectors are fp32 with any element stride; every tensor is addressed through its own strides,
// so y, grad and out may each be NCHW, channels_last or a strided view. The launch geometry follows y:
//
//   channels-inner (y channels_last-like, kCL): an item is one pixel row (n, h, w) x V channels. A block
//     covers a channel block of tc * V channels with tc x tr threads (tc channel vectors, tr rows); each
//     thread keeps its channel vector for the whole block, so its per-channel values come from a table the
//     block stages once in shared memory, and a reduction keeps its V channels' sums in registers.
//   planes (otherwise): an item is V consecutive pixels of one (n, c) plane; a block works on one channel at
//     a time (blockIdx.y), its per-channel values are uniform scalars.
//
// V > 1 (16 bytes) needs every tensor the kernel touches to be contiguous and 16-byte aligned along the
// item (checked by bn_plan), else V = 1 with the same iteration. Each thread has kBnUnroll items' loads in
// flight before it uses any (loads are predicated, never branched around). Index is int32 unless a tensor's
// largest offset needs int64.
//
// The reduction is deterministic: block bx of a channel block sums the same rows in the same order on every
// run; its sums reduce over the block's threads by a fixed tree (tree_first_step) into partials
// (splits, C, 2); bn_reduce_finalize_kernel adds the splits in order. The number of splits depends on the
// shape only (a constant block target, not the SM count), so results are bitwise identical across GPUs.
//
// Phases (replayed in this order by the CPU emulator), per channel-block iteration it (all threads):
//   [barrier if it > 0] stage(it); barrier; run(it); and for kReduce: red_put(); [barrier; red_tree(s)] for
//   s = tree_first_step(rows of the tree) .. 1; barrier; red_store(it).
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/epilogue.cuh"
#include "common/fastdiv.cuh"
#include "conv/conv2d_params.cuh"

namespace cnnkern {

enum class BnOp { kNormalize, kReduce, kApply };

constexpr int kBnThreads = 256;
constexpr int kBnUnroll = 4;         // items per thread with their loads in flight together
constexpr int kBnTableMax = 256;     // channels of one channels-inner block (its parameter table)
constexpr int kBnTargetBlocks = 1024;

// The per-channel vectors, in table order. kNormalize reads a, b; kReduce also mean, invstd; kApply all.
enum : int { kBnA = 0, kBnB, kBnMean, kBnInvstd, kBnKdz, kBnKone, kBnKxhat, kBnVecs };
constexpr int bn_vec_count(BnOp op) { return op == BnOp::kNormalize ? 2 : (op == BnOp::kReduce ? 4 : 7); }

struct BnVec {
  const float* p = nullptr;
  int64_t stride = 1;
};

struct BnTensor {
  Strides4 st{};
  const void* ptr = nullptr;
};

template <class T>
struct BnParams {
  int n, c, h, w;
  const T* y;
  Strides4 ys;
  const T* grad;  // kReduce, kApply
  Strides4 gs;
  T* out;  // kNormalize, kApply
  Strides4 os;
  BnVec vec[kBnVecs];
  float* partials;  // kReduce: (splits, c, 2)
  // ---- geometry (bn_plan)
  bool cl;        // channels-inner items (else planes)
  bool idx64;     // some tensor needs 64-bit offsets
  int v;          // elements per access
  int tc, tr;     // channels-inner: channel-vector threads x row threads; planes: 1 x threads
  int threads;
  int cvecs;      // channels-inner: c / v
  int cblocks;    // channel blocks (channels-inner) or channels (planes)
  int table;      // table row length: tc * v (channels-inner), 1 (planes)
  int items;      // per channel block: pixel rows (channels-inner) or n * h * w / v (planes)
  int per_block;  // items one block covers per step of its loop: tr * kBnUnroll or threads * kBnUnroll
  int splits;     // gridDim.x
  unsigned grid_y;
  FastDivmod w_div, h_div;  // pixel -> (n, h, w) / (h, w)
  FastDivmod img_div;       // planes: item -> (n, pixel vector), divisor h * w / v
};

// ---- per-element math shared with the host emulator's reference ----------------------------------------

// y * a + b rounded twice (no fused multiply-add), as the unfused ATen ops compute it: the activation's
// derivative is discontinuous at 0 (and 6), so the mask must come out of exactly the same z.
CNNKERN_HD float bn_affine(float y, float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(__fmul_rn(y, a), b);
#else
  volatile float t = y * a;  // keeps a contracting host compiler honest
  return t + b;
#endif
}

template <class T, int V>
CNNKERN_HD void bn_store(T* q, const float (&in)[V]) {
  if constexpr (V == 1) {
    *q = Num<T>::from_float(in[0]);
  } else {
    Vec<T, V> v;
#pragma unroll
    for (int i = 0; i < V; ++i) v.v[i] = Num<T>::from_float(in[i]);
    *reinterpret_cast<Vec<T, V>*>(q) = v;
  }
}

// ---- the block --------------------------------------------------------------------------------------------

template <class T, BnOp K, int A, bool kCL, int V, class Index>
struct BnBlock {
  static constexpr int U = kBnUnroll;
  static constexpr int kVecs = bn_vec_count(K);
  static constexpr bool kGrad = K != BnOp::kNormalize;
  static constexpr bool kOut = K != BnOp::kReduce;
  // Reduction sums per thread: one per channel lane (channels-inner), one in all (planes).
  static constexpr int kLanes = kCL ? V : 1;

  int tid_ = 0, tc_ = 0, tr_ = 0, bx_ = 0;
  float sdz_[kLanes];
  float sdzx_[kLanes];

  CNNKERN_HD void init(const BnParams<T>& p, int bx, int tid) {
    tid_ = tid;
    bx_ = bx;
    tc_ = kCL ? tid % p.tc : 0;
    tr_ = kCL ? tid / p.tc : tid;
  }

  // Iteration it of the block's channel-block loop: channel block (or channel) by + it * grid_y.
  CNNKERN_HD static int channel_block(const BnParams<T>& p, int by, int it) {
    return by + it * static_cast<int>(p.grid_y);
  }
  CNNKERN_HD static int iterations(const BnParams<T>& p, int by) {
    return (p.cblocks - by + static_cast<int>(p.grid_y) - 1) / static_cast<int>(p.grid_y);
  }

  // The block's per-channel table: vector k of table channel j at table[k * kBnTableMax + j] (0 past C). The
  // row pitch is a constant so that the compiler can prove a thread's V lanes 16-byte aligned and read them
  // as LDS.128.
  CNNKERN_HD void stage(const BnParams<T>& p, float* table, int cb) const {
    const int total = kVecs * p.table;
    for (int i = tid_; i < total; i += p.threads) {
      const int k = i / p.table;
      const int j = i - k * p.table;
      const int c = cb * p.table + j;
      table[k * kBnTableMax + j] = c < p.c ? p.vec[k].p[c * p.vec[k].stride] : 0.0f;
    }
  }

  CNNKERN_HD static Index off(const Strides4& s, int n, int c, int h, int w) {
    return static_cast<Index>(n) * static_cast<Index>(s.n) + static_cast<Index>(c) * static_cast<Index>(s.c) +
           static_cast<Index>(h) * static_cast<Index>(s.h) + static_cast<Index>(w) * static_cast<Index>(s.w);
  }

  // Planes: with V > 1 every plane is one contiguous run (bn_plan), so pixel `flat` sits at +flat; with
  // V == 1 the pixel (h, w) goes through the strides.
  CNNKERN_HD static Index plane_off(const Strides4& s, int n, int c, int h, int w, int flat) {
    if constexpr (V > 1) {
      return off(s, n, c, 0, 0) + static_cast<Index>(flat);
    } else {
      return off(s, n, c, h, w);
    }
  }

  // One item's V elements: the op on fp32, in chunks of W lanes whose per-channel values prm.get(k, l0, ...)
  // reads together (one LDS.128 per vector and chunk from the table; at most 7 x W values live at once).
  static constexpr int W = V % 4 == 0 ? 4 : 1;

  template <class Prm>
  CNNKERN_HD void apply_item(const Vec<T, V>& yraw, const Vec<T, V>& graw, const Prm& prm, float (&ov)[V]) {
#pragma unroll
    for (int l0 = 0; l0 < V; l0 += W) {
      float pa[W], pb[W];
      constexpr bool kAffine = K == BnOp::kNormalize || A != kActNone;
      if constexpr (kAffine) {
        prm.get(kBnA, l0, pa);
        prm.get(kBnB, l0, pb);
      }
      if constexpr (K == BnOp::kNormalize) {
#pragma unroll
        for (int i = 0; i < W; ++i) ov[l0 + i] = activate<A>(bn_affine(Num<T>::to_float(yraw.v[l0 + i]), pa[i], pb[i]));
      } else {
        float pm[W], pi[W];
        prm.get(kBnMean, l0, pm);
        prm.get(kBnInvstd, l0, pi);
        float dz[W], xhat[W];
#pragma unroll
        for (int i = 0; i < W; ++i) {
          const float y = Num<T>::to_float(yraw.v[l0 + i]);
          dz[i] = Num<T>::to_float(graw.v[l0 + i]);
          if constexpr (A != kActNone) dz[i] *= activate_grad<A>(bn_affine(y, pa[i], pb[i]));
          xhat[i] = (y - pm[i]) * pi[i];
        }
        if constexpr (K == BnOp::kReduce) {
#pragma unroll
          for (int i = 0; i < W; ++i) {
            sdz_[kCL ? l0 + i : 0] += dz[i];
            sdzx_[kCL ? l0 + i : 0] += dz[i] * xhat[i];
          }
        } else {
          float kd[W], k1[W], kx[W];
          prm.get(kBnKdz, l0, kd);
          prm.get(kBnKone, l0, k1);
          prm.get(kBnKxhat, l0, kx);
#pragma unroll
          for (int i = 0; i < W; ++i) ov[l0 + i] = kd[i] * dz[i] + k1[i] + kx[i] * xhat[i];
        }
      }
    }
  }

  CNNKERN_HD void run(const BnParams<T>& p, const float* table, int cb) {
#pragma unroll
    for (int l = 0; l < kLanes; ++l) sdz_[l] = sdzx_[l] = 0.0f;
    if constexpr (kCL) {
      run_cl(p, table, cb);
    } else {
      run_planes(p, table, cb);
    }
  }

  // Per-channel values of the thread's channel vector, read from the shared table where they are used:
  // V lanes x up to 7 vectors would not fit in registers next to the items in flight.
  struct TablePrm {
    const float* col;  // table + tc_ * V: 16-byte aligned when V is a multiple of 4
    CNNKERN_HD void get(int k, int l0, float (&o)[W]) const {
      const float* q = col + k * kBnTableMax + l0;
      if constexpr (W == 4) {
        const float4 f = *reinterpret_cast<const float4*>(q);
        o[0] = f.x;
        o[1] = f.y;
        o[2] = f.z;
        o[3] = f.w;
      } else {
        o[0] = q[0];
      }
    }
  };
  // Planes: one channel per block iteration, its values uniform scalars held in registers.
  struct ScalarPrm {
    float v[kVecs];
    CNNKERN_HD void get(int k, int, float (&o)[W]) const {
#pragma unroll
      for (int i = 0; i < W; ++i) o[i] = v[k];
    }
  };

  // Items with their loads issued before any is used (kBnUnroll 16-byte loads per tensor in flight). The
  // elements stay packed in T until used, so the registers hold 16 bytes per item and tensor.
  template <class Offsets, class Prm>
  CNNKERN_HD void run_items(const BnParams<T>& p, int step, int lane_step, Offsets offsets, const Prm& prm) {
    for (int base = bx_ * p.per_block; base < p.items; base += p.splits * p.per_block) {
      Vec<T, V> yv[U], gv[U];
      Index ooff[U];
      bool ok[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int i = base + u * step + lane_step;
        ok[u] = i < p.items;
        Index yoff, goff;
        offsets(ok[u] ? i : 0, yoff, goff, ooff[u]);
        yv[u] = Vec<T, V>::zeros();
        gv[u] = Vec<T, V>::zeros();
        if (ok[u]) {
          yv[u] = Vec<T, V>::load(p.y + yoff);
          if constexpr (kGrad) gv[u] = Vec<T, V>::load(p.grad + goff);
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (!ok[u]) continue;
        float ov[V];
        apply_item(yv[u], gv[u], prm, ov);
        if constexpr (kOut) bn_store<T, V>(p.out + ooff[u], ov);
      }
    }
  }

  CNNKERN_HD void run_cl(const BnParams<T>& p, const float* table, int cb) {
    const int cv = cb * p.tc + tc_;
    if (cv >= p.cvecs) return;
    const int c0 = cv * V;
    const TablePrm prm{table + tc_ * V};
    run_items(p, p.tr, tr_, [&](int r, Index& yoff, Index& goff, Index& ooff) {
      uint32_t t, w, n, h;
      p.w_div.divmod(static_cast<uint32_t>(r), t, w);
      p.h_div.divmod(t, n, h);
      const int ni = static_cast<int>(n), hi = static_cast<int>(h), wi = static_cast<int>(w);
      yoff = off(p.ys, ni, c0, hi, wi);
      goff = kGrad ? off(p.gs, ni, c0, hi, wi) : Index(0);
      ooff = kOut ? off(p.os, ni, c0, hi, wi) : Index(0);
    }, prm);
  }

  CNNKERN_HD void run_planes(const BnParams<T>& p, const float* table, int c) {
    ScalarPrm prm;
#pragma unroll
    for (int k = 0; k < kVecs; ++k) prm.v[k] = table[k * kBnTableMax];
    run_items(p, p.threads, tid_, [&](int e, Index& yoff, Index& goff, Index& ooff) {
      uint32_t n, pv, h = 0, w = 0;
      p.img_div.divmod(static_cast<uint32_t>(e), n, pv);
      if constexpr (V == 1) p.w_div.divmod(pv, h, w);
      const int ni = static_cast<int>(n), hi = static_cast<int>(h), wi = static_cast<int>(w);
      const int flat = static_cast<int>(pv) * V;
      yoff = plane_off(p.ys, ni, c, hi, wi, flat);
      goff = kGrad ? plane_off(p.gs, ni, c, hi, wi, flat) : Index(0);
      ooff = kOut ? plane_off(p.os, ni, c, hi, wi, flat) : Index(0);
    }, prm);
  }

  // ---- kReduce: slot k (sum_dz lanes, then sum_dz_xhat lanes) of thread tid at buf[k * threads + tid];
  // the tree runs over the row threads tr_ (row stride tc) of each channel thread.
  static constexpr int kSlots = 2 * kLanes;

  CNNKERN_HD static int tree_rows(const BnParams<T>& p) { return kCL ? p.tr : p.threads; }

  CNNKERN_HD void red_put(const BnParams<T>& p, float* buf) const {
#pragma unroll
    for (int l = 0; l < kLanes; ++l) {
      buf[l * p.threads + tid_] = sdz_[l];
      buf[(kLanes + l) * p.threads + tid_] = sdzx_[l];
    }
  }

  CNNKERN_HD void red_tree(const BnParams<T>& p, float* buf, int s) const {
    if (tr_ >= s || tr_ + s >= tree_rows(p)) return;
    const int partner = tid_ + s * (kCL ? p.tc : 1);
#pragma unroll
    for (int k = 0; k < kSlots; ++k) buf[k * p.threads + tid_] += buf[k * p.threads + partner];
  }

  CNNKERN_HD void red_store(const BnParams<T>& p, const float* buf, int cb) const {
    if (tr_ != 0) return;
    int c0 = cb;
    if constexpr (kCL) {
      const int cv = cb * p.tc + tc_;
      if (cv >= p.cvecs) return;
      c0 = cv * V;
    }
#pragma unroll
    for (int l = 0; l < kLanes; ++l) {
      float* q = p.partials + (static_cast<int64_t>(bx_) * p.c + c0 + l) * 2;
      q[0] = buf[l * p.threads + tid_];
      q[1] = buf[(kLanes + l) * p.threads + tid_];
    }
  }
};

// Shared memory of one block: the table, then (kReduce) the reduction buffer.
template <BnOp K, int V>
constexpr int bn_smem_floats(bool cl) {
  return bn_vec_count(K) * kBnTableMax + (K == BnOp::kReduce ? 2 * (cl ? V : 1) * kBnThreads : 0);
}

// Second pass of kReduce: per channel, the splits' partials added in order.
struct BnFinalizeParams {
  const float* partials;  // (splits, c, 2)
  int splits, c;
  float* sum_dz;
  int64_t sum_dz_stride;
  float* sum_dz_xhat;
  int64_t sum_dz_xhat_stride;
};

CNNKERN_HD void bn_finalize(const BnFinalizeParams& f, int c) {
  float s0 = 0.0f, s1 = 0.0f;
  for (int s = 0; s < f.splits; ++s) {
    const float* q = f.partials + (static_cast<int64_t>(s) * f.c + c) * 2;
    s0 += q[0];
    s1 += q[1];
  }
  f.sum_dz[c * f.sum_dz_stride] = s0;
  f.sum_dz_xhat[c * f.sum_dz_xhat_stride] = s1;
}

#if defined(__CUDACC__)
template <class T, BnOp K, int A, bool kCL, int V, class Index>
__global__ void __launch_bounds__(kBnThreads) bn_kernel(const BnParams<T> p) {
  using Block = BnBlock<T, K, A, kCL, V, Index>;
  __shared__ __align__(16) float smem[bn_smem_floats<K, V>(kCL)];
  float* table = smem;
  float* buf = smem + bn_vec_count(K) * kBnTableMax;
  Block blk;
  blk.init(p, blockIdx.x, threadIdx.x);
  const int its = Block::iterations(p, blockIdx.y);
  for (int it = 0; it < its; ++it) {
    const int cb = Block::channel_block(p, blockIdx.y, it);
    if (it > 0) __syncthreads();  // the previous iteration's table (and buffer) is still being read
    blk.stage(p, table, cb);
    __syncthreads();
    blk.run(p, table, cb);
    if constexpr (K == BnOp::kReduce) {
      blk.red_put(p, buf);
      for (int s = tree_first_step(Block::tree_rows(p)); s > 0; s >>= 1) {
        __syncthreads();
        blk.red_tree(p, buf, s);
      }
      __syncthreads();
      blk.red_store(p, buf, cb);
    }
  }
}

// (A template, instantiated with the launch's element type, so that each instantiation file has its own.)
template <class T>
__global__ void __launch_bounds__(kBnThreads) bn_finalize_kernel(const BnFinalizeParams f) {
  const int c = blockIdx.x * kBnThreads + threadIdx.x;
  if (c < f.c) bn_finalize(f, c);
}
#endif

// ---- planning (host; shared with the emulator) -----------------------------------------------------------

namespace bn_detail {

inline int64_t pixel_step(const Strides4& s, int h, int w) { return w > 1 ? s.w : (h > 1 ? s.h : s.n); }

inline int64_t max_offset(const Strides4& s, int n, int c, int h, int w) {
  return (n - 1) * s.n + (c - 1) * s.c + (h - 1) * s.h + (w - 1) * s.w;
}

}  // namespace bn_detail

// Chooses the iteration (from y's layout), the access width (16 bytes where every tensor allows it and
// allow_vec), the index type and the grid, for the tensors already in p (only those the op uses are read).
template <class T>
inline void bn_plan(BnParams<T>* p, BnOp op, bool allow_vec = true) {
  using namespace bn_detail;
  constexpr int kV = 16 / static_cast<int>(sizeof(T));
  const int n = p->n, c = p->c, h = p->h, w = p->w;
  struct Use {
    const Strides4* s;
    const void* ptr;
  };
  Use use[3];
  int nuse = 0;
  use[nuse++] = Use{&p->ys, p->y};
  if (op != BnOp::kNormalize) use[nuse++] = Use{&p->gs, p->grad};
  if (op != BnOp::kReduce) use[nuse++] = Use{&p->os, p->out};

  p->cl = c > 1 && p->ys.c < pixel_step(p->ys, h, w);
  p->idx64 = false;
  bool vec = allow_vec;
  for (int i = 0; i < nuse; ++i) {
    const Strides4& s = *use[i].s;
    if (max_offset(s, n, c, h, w) >= (int64_t{1} << 31) - 1) p->idx64 = true;
    if (reinterpret_cast<uintptr_t>(use[i].ptr) % 16 != 0) vec = false;
    if (p->cl) {
      vec = vec && (c == 1 || s.c == 1) && (n == 1 || s.n % kV == 0) && (h == 1 || s.h % kV == 0) &&
            (w == 1 || s.w % kV == 0);
    } else {
      vec = vec && (w == 1 || s.w == 1) && (h == 1 || s.h == w) && (n == 1 || s.n % kV == 0) &&
            (c == 1 || s.c % kV == 0);
    }
  }
  vec = vec && (p->cl ? c % kV == 0 : (int64_t{h} * w) % kV == 0);
  p->v = vec ? kV : 1;
  p->threads = kBnThreads;
  if (p->cl) {
    p->cvecs = c / p->v;
    // At most 32 vectors (or 64 scalars) per row, fewer when that leaves less of the last block idle.
    const int cap = p->v > 1 ? 32 : 64;
    const int blocks = (p->cvecs + cap - 1) / cap;
    p->tc = (p->cvecs + blocks - 1) / blocks;
    p->tr = kBnThreads / p->tc;
    p->threads = p->tc * p->tr;
    p->cblocks = (p->cvecs + p->tc - 1) / p->tc;
    p->table = p->tc * p->v;
    p->items = n * h * w;
    p->per_block = p->tr * kBnUnroll;
  } else {
    p->tc = 1;
    p->tr = kBnThreads;
    p->cvecs = 1;
    p->cblocks = c;
    p->table = 1;
    p->items = static_cast<int>(int64_t{n} * h * w / p->v);
    p->per_block = kBnThreads * kBnUnroll;
  }
  const int64_t steps = (int64_t{p->items} + p->per_block - 1) / p->per_block;
  const int64_t want = (kBnTargetBlocks + p->cblocks - 1) / p->cblocks;
  p->splits = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(want, steps)));
  p->grid_y = static_cast<unsigned>(std::min(p->cblocks, 65535));
  p->w_div = FastDivmod(static_cast<uint32_t>(w));
  p->h_div = FastDivmod(static_cast<uint32_t>(h));
  p->img_div = FastDivmod(static_cast<uint32_t>(int64_t{h} * w / p->v));
}

}  // namespace cnnkern
