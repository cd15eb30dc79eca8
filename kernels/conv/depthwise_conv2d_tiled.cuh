// Depthwise forward-form gather for pixel-contiguous (NCHW-like) tensors, staged through shared memory.
//
// A block covers planes_per_block output planes (n, oc) x a tile of (ty*RH) x (tx*RW) outputs. For
// each source j it stages the source tile plus halo (converted to fp32) and the plane's filter, then
// every thread accumulates RH x RW outputs in registers. With KT > 0 (unit stride and dilation, square
// KT x KT filter) a thread owns RW consecutive columns and RH consecutive rows: each staged input row
// is read once as float4s into a register window and used for every (output row, tap) it feeds.
// With KT == 0 (any geometry) a thread's columns are strided by tx so that lanes read consecutive
// shared-memory words.
//
// Forward epilogues (kEpi): kAct applies act(... * scale + shift) before the store; kStats also emits, per
// (image, spatial tile) and channel, (count, mean, M2) of the stored values. A thread's stored values stay in
// its registers (acc_), so both passes read them there; the sums reduce over the plane's tx*ty threads (a
// power of two, consecutive tids) in the staging buffer, which is free once every thread has computed.
//
// Phases (replayed in this order by the CPU emulator): init(pg0); [vec_stage: issue_tile_async(0, pg0)];
// for each plane group pg of the block: [init(pg)]; for j: stage(j) (weights; the element-wise tile without
// vec_stage); [vec_stage: cp.async wait; barrier; convert_tile(); barrier; issue_tile_async of the next
// (pg, j) step] or barrier; compute(); barrier; then store(); with kStats then barrier; stats_put_sums();
// [barrier; stats_tree(s)] for s = plane threads / 2 .. 1; barrier; stats_center(); barrier;
// stats_put_m2(); [barrier; stats_tree(s)]...; barrier; stats_store(); barrier.
#pragma once

#include "common/cp_async.cuh"
#include "conv/depthwise_conv2d_common.cuh"

namespace cnnkern {

template <class T, int KT, EpiKind kEpi = EpiKind::kPlain>
struct DwTiledBlock {
  static constexpr int RW = kDwTiledRW;
  static constexpr int RH = kDwTiledRH;
  static constexpr bool kWin = KT > 0;
  static constexpr int WN = (RW + (KT > 0 ? KT : 1) - 1 + 3) / 4 * 4;
  static constexpr bool kStats = kEpi == EpiKind::kStats;

  int tid_, tx_, ty_, pl_;
  int oy0_, ox0_;
  int tile_;
  int64_t pg_;
  bool plane_ok_;
  int n_, oc_;
  float acc_[RH][RW];  // the accumulators; with kStats, after store() the values as stored
  float ssum_ = 0.0f, scount_ = 0.0f, smean_ = 0.0f;

  // Block x = spatial tile bx, plane group pg (< p.plane_groups).
  CNNKERN_HD void init(const DwTiledParams<T>& p, unsigned bx, int64_t pg, int tid) {
    tid_ = tid;
    tx_ = tid & ((1 << p.tx_bits) - 1);
    ty_ = (tid >> p.tx_bits) & ((1 << p.ty_bits) - 1);
    pl_ = tid >> (p.tx_bits + p.ty_bits);
    const int tile_y = static_cast<int>(bx) / p.tiles_x;
    const int tile_x = static_cast<int>(bx) - tile_y * p.tiles_x;
    oy0_ = tile_y * (RH << p.ty_bits);
    ox0_ = tile_x * (RW << p.tx_bits);
    tile_ = static_cast<int>(bx);
    ssum_ = scount_ = smean_ = 0.0f;
    pg_ = pg;
    plane_ok_ = plane_of(p, pl_, n_, oc_);
#pragma unroll
    for (int k = 0; k < RH; ++k)
#pragma unroll
      for (int r = 0; r < RW; ++r) acc_[k][r] = 0.0f;
  }

  // (n, oc) of plane slot pl of this block's plane group (or of group pg); false past the last plane.
  CNNKERN_HD bool plane_of(const DwTiledParams<T>& p, int pl, int& n, int& oc) const {
    return plane_of(p, pg_, pl, n, oc);
  }
  CNNKERN_HD bool plane_of(const DwTiledParams<T>& p, int64_t pg, int pl, int& n, int& oc) const {
    const int64_t plane = pg * p.planes_per_block + pl;
    const bool ok = plane < p.planes;
    uint32_t q, r;
    p.out_c_div.divmod(ok ? static_cast<uint32_t>(plane) : 0u, q, r);
    n = static_cast<int>(q);
    oc = static_cast<int>(r);
    return ok;
  }

  // Source plane j of output plane (n, oc).
  CNNKERN_HD const T* plane_src(const DwTiledParams<T>& p, int n, int oc, int j) const {
    const int cs = static_cast<int>(p.ch_div.div(static_cast<uint32_t>(oc * p.g.ch_mul + j)));
    return p.g.src + n * p.g.ss.n + cs * p.g.ss.c;
  }

  // Element-wise staging (rows that are not whole aligned 16-byte chunks) and the weights, in one phase.
  // With p.vec_stage the tile comes from issue_tile_async + convert_tile instead, and only the weights here.
  CNNKERN_HD void stage(const DwTiledParams<T>& p, float* smem, int j) const {
    if (p.vec_stage) {
      // nothing: the tile was staged by issue_tile_async / convert_tile
    } else if (p.planes_per_block == 1) {
      stage_tile<false>(p, smem, j);
    } else {
      stage_tile<true>(p, smem, j);
    }
    stage_weights(p, smem, j);
  }

  // Staging in aligned 16-byte chunks (p.vec_stage), two phases separated by the cp.async wait and a
  // barrier. Item e = tid + i*threads is chunk e % chunks of staged row (e / chunks) % in_rows of plane slot
  // e / (chunks * in_rows); it covers source columns [cs, cs + kE) with cs = (c0 + k) * kE, c0 =
  // floor(sx0 / kE). The host guarantees src_w % kE == 0 and cs is a multiple of kE, so a chunk is wholly
  // inside the row or wholly outside (rows above/below the image, columns left/right of it, planes past
  // the last): those are zero-filled by cp.async (source size 0; the address is still clamped into the
  // plane). Chunk e lands in raw slot e (16 bytes at p.raw_offset + 16 e): the raw region is
  // chunk-aligned, whereas the fp32 tile starts at column sx0, which is not.
  //   issue_tile_async: every chunk of the tile is in flight at once, no registers held (was 2 chunks per
  //                     thread through registers: LDG.128 + select + 8 STS);
  //   convert_tile:     raw slot e -> tile columns cs - sx0 + i that fall in [0, pitch) (columns >= in_cols
  //                     as 0), converted to fp32 so that compute() is the same for both staging paths.
  // pg: the plane group whose tile is issued (this block's current one, or the next when chained).
  CNNKERN_HD void issue_tile_async(const DwTiledParams<T>& p, float* smem, int j, int64_t pg) const {
    constexpr int kE = 16 / static_cast<int>(sizeof(T));
    const DwGather<T>& g = p.g;
    unsigned char* raw = reinterpret_cast<unsigned char*>(smem) + p.raw_offset;
    const int sy0 = oy0_ * g.sh - g.ph;
    const int sx0 = ox0_ * g.sw - g.pw;
    const int c0 = sx0 >= 0 ? sx0 / kE : -((-sx0 + kE - 1) / kE);
    const int total = p.planes_per_block * p.in_rows * p.chunks;
    // Chunk e of staged row `row` of a plane whose source starts at `base` (in-plane offsets are int32).
    auto copy = [&](int e, int row, uint32_t k, const T* base, bool ok) {
      const int cs = (c0 + static_cast<int>(k)) * kE;
      const int sy = sy0 + row;
      const bool in = ok && dw_in(sy, g.src_h) && dw_in(cs, g.src_w);
      const int csc = cs < 0 ? 0 : (cs >= g.src_w ? g.src_w - kE : cs);
      cp_async16(raw + 16 * e, base + (dw_clamp(sy, g.src_h) * p.ssh + csc), in);
    };
    if (p.planes_per_block == 1) {
      // One plane (every 56- and 112-wide map): its source pointer once, one divmod per chunk (was four).
      int n, oc;  // plane 0 when past the last plane: still a valid address
      const bool ok = plane_of(p, pg, 0, n, oc);
      const T* base = plane_src(p, n, oc, j);
#pragma unroll 1
      for (int e = tid_; e < total; e += p.threads) {
        uint32_t row, k;
        p.chunks_div.divmod(static_cast<uint32_t>(e), row, k);
        copy(e, static_cast<int>(row), k, base, ok);
      }
    } else {
#pragma unroll 1
      for (int e = tid_; e < total; e += p.threads) {
        uint32_t rest, k, pl, row;
        p.chunks_div.divmod(static_cast<uint32_t>(e), rest, k);
        p.rows_div.divmod(rest, pl, row);
        int n, oc;
        const bool ok = plane_of(p, pg, static_cast<int>(pl), n, oc);
        copy(e, static_cast<int>(row), k, plane_src(p, n, oc, j), ok);
      }
    }
    cp_async_commit();
  }

  CNNKERN_HD void convert_tile(const DwTiledParams<T>& p, float* smem) const {
    constexpr int kE = 16 / static_cast<int>(sizeof(T));
    const DwGather<T>& g = p.g;
    const unsigned char* raw = reinterpret_cast<const unsigned char*>(smem) + p.raw_offset;
    const int sx0 = ox0_ * g.sw - g.pw;
    const int c0 = sx0 >= 0 ? sx0 / kE : -((-sx0 + kE - 1) / kE);
    const int total = p.planes_per_block * p.in_rows * p.chunks;
#pragma unroll 1
    for (int e = tid_; e < total; e += p.threads) {
      uint32_t rest, k;
      p.chunks_div.divmod(static_cast<uint32_t>(e), rest, k);  // rest = plane slot * in_rows + row
      const int col0 = (c0 + static_cast<int>(k)) * kE - sx0;
      if (col0 + kE <= 0 || col0 >= p.pitch) continue;  // the chunk feeds no tile column
      // One LDS.128 (a memcpy from the byte pointer compiled to 16 LDS.U8 + PRMTs).
      const uint4 w = *reinterpret_cast<const uint4*>(raw + 16 * e);
      Vec<T, kE> v;
      std::memcpy(&v, &w, 16);
      float f[kE];
      dw_unpack_or_zero(v, true, f);
      float* dst = smem + static_cast<int>(rest) * p.pitch + col0;
      if (col0 >= 0 && col0 + kE <= p.in_cols) {  // interior chunk (most of them): no per-column test
#pragma unroll
        for (int i = 0; i < kE; ++i) dst[i] = f[i];
      } else {
#pragma unroll
        for (int i = 0; i < kE; ++i) {
          const int col = col0 + i;
          if (col >= 0 && col < p.pitch) dst[i] = col < p.in_cols ? f[i] : 0.0f;
        }
      }
    }
  }

  // Element e = tid + i*threads of the [pp][in_rows][pitch] tile: consecutive threads take
  // consecutive columns (coalesced loads). Loads are issued in batches of kBatch before any is
  // stored, so that each thread keeps several in flight (one at a time would leave the kernel
  // latency-bound far below DRAM bandwidth). Offsets within a source plane are int32 (host-checked).
  template <bool kMulti>
  CNNKERN_HD void stage_tile(const DwTiledParams<T>& p, float* smem, int j) const {
    const DwGather<T>& g = p.g;
    const int sy0 = oy0_ * g.sh - g.ph;
    const int sx0 = ox0_ * g.sw - g.pw;
    constexpr int kBatch = 8;
    const int total = p.planes_per_block * p.in_rows * p.pitch;
    int cur = 0;
    int n0, oc0;
    bool ok = plane_of(p, 0, n0, oc0);
    const T* base = plane_src(p, n0, oc0, j);
    for (int e0 = tid_; e0 < total; e0 += kBatch * p.threads) {
      T raw[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int e = e0 + b * p.threads;
        raw[b] = Num<T>::zero();
        if (e >= total) continue;
        uint32_t row, col;
        p.pitch_div.divmod(static_cast<uint32_t>(e), row, col);
        if constexpr (kMulti) {
          uint32_t pl;
          p.rows_div.divmod(row, pl, row);
          if (static_cast<int>(pl) != cur) {
            cur = static_cast<int>(pl);
            int n, oc;
            ok = plane_of(p, cur, n, oc);
            base = plane_src(p, n, oc, j);
          }
        }
        const int sy = sy0 + static_cast<int>(row);
        const int sx = sx0 + static_cast<int>(col);
        if (ok && static_cast<int>(col) < p.in_cols && dw_in(sy, g.src_h) && dw_in(sx, g.src_w)) {
          raw[b] = base[sy * p.ssh + sx * p.ssw];
        }
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int e = e0 + b * p.threads;
        if (e < total) smem[e] = Num<T>::to_float(raw[b]);
      }
    }
  }

  CNNKERN_HD void stage_weights(const DwTiledParams<T>& p, float* smem, int j) const {
    const DwGather<T>& g = p.g;
    const int pp = p.planes_per_block;
    const int taps = g.kh * g.kw;
    float* wsm = smem + pp * p.in_rows * p.pitch;
    for (int e = tid_; e < pp * taps; e += p.threads) {
      const int q = e / taps;
      const int t = e - q * taps;
      int n, oc;
      const bool wok = plane_of(p, q, n, oc);
      const int kh = t / g.kw;
      wsm[e] = wok ? dw_weight(g, oc * g.ch_mul + j, kh, t - kh * g.kw) : 0.0f;
    }
  }

  CNNKERN_HD void compute(const DwTiledParams<T>& p, const float* smem) {
    const DwGather<T>& g = p.g;
    const float* tile = smem + pl_ * p.in_rows * p.pitch;
    const float* wsm = smem + p.planes_per_block * p.in_rows * p.pitch + pl_ * g.kh * g.kw;
    if constexpr (kWin) {
      float w[KT][KT];
#pragma unroll
      for (int kh = 0; kh < KT; ++kh)
#pragma unroll
        for (int kw = 0; kw < KT; ++kw) w[kh][kw] = wsm[kh * KT + kw];
#pragma unroll
      for (int i = 0; i < RH + KT - 1; ++i) {
        float win[WN];
        dw_load_smem<WN>(tile + (ty_ * RH + i) * p.pitch + tx_ * RW, win);
#pragma unroll
        for (int k = 0; k < RH; ++k) {
          const int kh = i - k;
          if (kh < 0 || kh >= KT) continue;
#pragma unroll
          for (int kw = 0; kw < KT; ++kw)
#pragma unroll
            for (int r = 0; r < RW; ++r) acc_[k][r] += w[kh][kw] * win[r + kw];
        }
      }
    } else {
#pragma unroll
      for (int k = 0; k < RH; ++k) {
        const int yl = ty_ * RH + k;
        for (int kh = 0; kh < g.kh; ++kh) {
          const float* row = tile + (yl * g.sh + kh * g.dh) * p.pitch + tx_ * g.sw;
          for (int kw = 0; kw < g.kw; ++kw) {
            const float wv = wsm[kh * g.kw + kw];
            const float* q = row + kw * g.dw;
#pragma unroll
            for (int r = 0; r < RW; ++r) acc_[k][r] += wv * q[(r << p.tx_bits) * g.sw];
          }
        }
      }
    }
  }

  // Output column of the thread's r-th value in a row.
  CNNKERN_HD int out_x(const DwTiledParams<T>& p, int r) const {
    return kWin ? ox0_ + tx_ * RW + r : ox0_ + tx_ + (r << p.tx_bits);
  }

  // The epilogue on acc_ (bias, then kAct's affine + activation), rounded to T; with kStats acc_ keeps the
  // values as stored, and their sum and count are kept for the statistics.
  CNNKERN_HD T finish(const DwTiledParams<T>& p, float b, const ChannelAffine::At& aff, int k, int r) {
    float v = acc_[k][r] + b;
    if constexpr (kEpi == EpiKind::kAct) v = p.g.aff.apply_at(aff, v);
    const T o = Num<T>::from_float(v);
    if constexpr (kStats) {
      acc_[k][r] = Num<T>::to_float(o);
      ssum_ += acc_[k][r];
      scount_ += 1.0f;
    }
    return o;
  }

  CNNKERN_HD void store(const DwTiledParams<T>& p) {
    if (!plane_ok_) return;
    const DwGather<T>& g = p.g;
    const float b = g.bias != nullptr ? Num<T>::to_float(g.bias[oc_ * g.bias_stride]) : 0.0f;
    const ChannelAffine::At aff = kEpi == EpiKind::kAct ? g.aff.template at<T>(oc_) : ChannelAffine::At{1.0f, 0.0f};
    T* base = g.out + n_ * g.os.n + oc_ * g.os.c;
#pragma unroll
    for (int k = 0; k < RH; ++k) {
      const int y = oy0_ + ty_ * RH + k;
      if (y >= g.out_h) break;
      T* row = base + y * g.os.h;
      if constexpr (kWin) {
        const int x0 = ox0_ + tx_ * RW;
        using V = Vec<T, RW>;
        if (p.vec_store && x0 + RW <= g.out_w && reinterpret_cast<uintptr_t>(row + x0) % sizeof(V) == 0) {
          V v;
#pragma unroll
          for (int r = 0; r < RW; ++r) v.v[r] = finish(p, b, aff, k, r);
          *reinterpret_cast<V*>(row + x0) = v;
        } else {
#pragma unroll
          for (int r = 0; r < RW; ++r) {
            if (x0 + r < g.out_w) row[(x0 + r) * g.os.w] = finish(p, b, aff, k, r);
          }
        }
      } else {
#pragma unroll
        for (int r = 0; r < RW; ++r) {
          const int x = out_x(p, r);
          if (x < g.out_w) row[x * g.os.w] = finish(p, b, aff, k, r);
        }
      }
    }
  }

  // ---- statistics epilogue (kStats): slot k of thread tid at buf[k * threads + tid] (k = 0 sum, 1 count).
  CNNKERN_HD int plane_threads(const DwTiledParams<T>& p) const { return 1 << (p.tx_bits + p.ty_bits); }

  CNNKERN_HD void stats_put_sums(const DwTiledParams<T>& p, float* buf) const {
    buf[tid_] = ssum_;
    buf[p.threads + tid_] = scount_;
  }

  CNNKERN_HD void stats_tree(const DwTiledParams<T>& p, float* buf, int s, int slots) const {
    if ((tid_ & (plane_threads(p) - 1)) >= s) return;
    for (int k = 0; k < slots; ++k) buf[k * p.threads + tid_] += buf[k * p.threads + tid_ + s];
  }

  // The plane tile's mean (row 0 of the tree: the plane's first thread), then pass 2 over acc_.
  CNNKERN_HD void stats_center(const DwTiledParams<T>& p, const float* buf) {
    const int first = pl_ * plane_threads(p);
    smean_ = buf[first] / buf[p.threads + first];
    ssum_ = 0.0f;
    if (!plane_ok_) return;
#pragma unroll
    for (int k = 0; k < RH; ++k) {
      if (oy0_ + ty_ * RH + k >= p.g.out_h) break;
#pragma unroll
      for (int r = 0; r < RW; ++r) {
        if (out_x(p, r) >= p.g.out_w) continue;
        const float d = acc_[k][r] - smean_;
        ssum_ += d * d;
      }
    }
  }

  CNNKERN_HD void stats_put_m2(const DwTiledParams<T>& p, float* buf) const { buf[tid_] = ssum_; }

  CNNKERN_HD void stats_store(const DwTiledParams<T>& p, const float* buf) const {
    if (!plane_ok_ || (tid_ & (plane_threads(p) - 1)) != 0) return;
    const int64_t tile = int64_t{n_} * p.tiles_x * p.tiles_y + tile_;
    p.g.stats.put(static_cast<int>(tile), oc_, buf[p.threads + tid_], smean_, buf[tid_]);
  }
};

#if defined(__CUDACC__)
// The statistics epilogue of one plane group (after store()). The staging buffer (>= 8 floats per thread:
// each thread owns RH x RW outputs of the staged tile) becomes the reduction buffer once every thread is
// past compute().
template <class T, int KT, EpiKind kEpi>
__device__ __forceinline__ void dw_tiled_stats(const DwTiledParams<T>& p, DwTiledBlock<T, KT, kEpi>& blk, float* smem) {
  const int first = tree_first_step(blk.plane_threads(p));
  __syncthreads();
  blk.stats_put_sums(p, smem);
  for (int s = first; s > 0; s >>= 1) {
    __syncthreads();
    blk.stats_tree(p, smem, s, 2);
  }
  __syncthreads();
  blk.stats_center(p, smem);
  __syncthreads();
  blk.stats_put_m2(p, smem);
  for (int s = first; s > 0; s >>= 1) {
    __syncthreads();
    blk.stats_tree(p, smem, s, 1);
  }
  __syncthreads();
  blk.stats_store(p, smem);
}

template <class T, int KT, EpiKind kEpi = EpiKind::kPlain>
__global__ void __launch_bounds__(kDwThreads) dw_tiled_kernel(const DwTiledParams<T> p) {
  const int64_t bg = int64_t{blockIdx.z} * p.grid_y + blockIdx.y;
  if (bg >= p.block_groups) return;  // whole block: grid_y * grid_z overshoots block_groups
  float* smem = dw_dynamic_smem();
  DwTiledBlock<T, KT, kEpi> blk;
  // Plane groups pg0 .. pg_end - 1 (groups_per_block > 1 only with vec_stage and nsrc == 1), sources j.
  // With vec_stage the chunks of the next (group, source) step are issued into the raw region as soon as
  // the current step's are converted, so they are in flight during this step's FMAs and stores.
  const int64_t pg0 = bg * p.groups_per_block;
  const int64_t pg_end = pg0 + p.groups_per_block < p.plane_groups ? pg0 + p.groups_per_block : p.plane_groups;
  blk.init(p, blockIdx.x, pg0, threadIdx.x);
  if (p.vec_stage) blk.issue_tile_async(p, smem, 0, pg0);
  for (int64_t pg = pg0; pg < pg_end; ++pg) {
    if (pg > pg0) blk.init(p, blockIdx.x, pg, threadIdx.x);
    for (int j = 0; j < p.g.nsrc; ++j) {
      blk.stage(p, smem, j);  // element-wise tile (without vec_stage) and the weights
      if (p.vec_stage) {
        cp_async_wait<0>();
        __syncthreads();  // every thread's chunks have landed
        blk.convert_tile(p, smem);
        __syncthreads();  // the tile is complete and the raw region free
        if (j + 1 < p.g.nsrc) {
          blk.issue_tile_async(p, smem, j + 1, pg);
        } else if (pg + 1 < pg_end) {
          blk.issue_tile_async(p, smem, 0, pg + 1);
        }
      } else {
        __syncthreads();
      }
      blk.compute(p, smem);
      __syncthreads();  // the tile and the weights are read until here
    }
    blk.store(p);
    if constexpr (kEpi == EpiKind::kStats) {
      dw_tiled_stats(p, blk, smem);
      __syncthreads();  // the reduction buffer (the tile) is read until here
    }
  }
}
#endif

}  // namespace cnnkern
