// Depthwise gather without input staging: a thread owns V consecutive output channels (one 16-byte
// vector for channels-last tensors, V == 1 otherwise) of RP output pixels of one row, and loops over the
// taps reading the source straight from global memory (neighbouring threads and taps hit L1). The
// block's filters sit transposed in shared memory, [j][tap][channel], so a thread reads its V weights
// of a tap as float4s.
//
// Thread t of block b: channel vector cb*tc + t % tc, pixel groups pb*tp*gpt + i*tp + t / tc (i < gpt),
// with cb = b % cblocks fastest so that neighbouring blocks share pixels (channels-last: one line).
// Forward form: the group's pixels are x0 .. x0+RP-1. With KT > 0 (unit stride/dilation) the loop
// runs over the RP+KT-1 source columns of a filter row and loads each once for all RP outputs.
// Residue form (kRes, input-grad with stride > 1): the group's pixels x0 + r*sw share their residue
// mod sw, hence the set of contributing taps, and read consecutive source columns.
//
// MI: channel multiplier folded into a vector (output lane l reads source lane l / MI); the host uses
// V > 1 only with MI == m for the forward op and MI == m == 1 for the input-grad.
//
// Forward epilogues (kEpi): kAct applies act(... * scale + shift) before the store; kStats also emits, per
// pixel block (the set of pixel groups of blockIdx.x / cblocks) and channel, (count, mean, M2) of the stored
// values: pass 1 sums them while storing, pass 2 re-reads the thread's own stores (same thread, so they are
// visible; the values are too many for registers) for the squared deviations from the block's mean; both
// reduce over the block's pixel threads in shared memory after the staged weights.
//
// Phases: init; stage(); barrier; run(); with kStats then stats_put_sums(); [barrier; stats_tree(s)] for
// s = tree_first_step(tp) .. 1; barrier; stats_center(); barrier; stats_put_m2(); [barrier; stats_tree(s)]...;
// barrier; stats_store().
#pragma once

#include "conv/depthwise_conv2d_common.cuh"

namespace cnnkern {

template <class T, int V, int MI, int KT, bool kRes, EpiKind kEpi = EpiKind::kPlain>
struct DwDirectBlock {
  static constexpr int RP = dw_direct_rp(V);
  static constexpr int VI = V / MI;
  static constexpr bool kStats = kEpi == EpiKind::kStats;
  static_assert(V % MI == 0, "multiplier must divide the vector");
  static_assert(KT == 0 || !kRes, "residue form has no window specialisation");
  static_assert(kEpi == EpiKind::kPlain || !kRes, "epilogues are forward-only");

  int tid_, tc_, tp_, cv_, oc0_, oc_base_;
  unsigned pb_;
  bool ok_;
  // Statistics: per-lane sums of the stored values (pass 1), then of their squared deviations (pass 2),
  // the thread's count of valid pixels, and the block means of its lanes.
  float ssum_[kStats ? V : 1];
  float scount_ = 0.0f;
  float smean_[kStats ? V : 1];

  CNNKERN_HD void init(const DwDirectParams<T>& p, unsigned bx, int tid) {
    tid_ = tid;
    tc_ = tid % p.tc;
    tp_ = tid / p.tc;
    uint32_t pb, cb;
    p.cblocks_div.divmod(bx, pb, cb);
    oc_base_ = static_cast<int>(cb) * p.tc * V;
    cv_ = static_cast<int>(cb) * p.tc + tc_;
    ok_ = tp_ < p.tp && cv_ < p.cvecs;
    oc0_ = cv_ * V;
    pb_ = pb;
    scount_ = 0.0f;
#pragma unroll
    for (int l = 0; l < (kStats ? V : 1); ++l) ssum_[l] = smean_[l] = 0.0f;
  }

  CNNKERN_HD void stage(const DwDirectParams<T>& p, float* smem) const {
    if (!p.w_smem) return;
    const DwGather<T>& g = p.g;
    const int taps = g.kh * g.kw;
    const int cbw = p.tc * V;
    const int total = g.nsrc * taps * cbw;
    // Tap-fastest walk: consecutive threads read consecutive weights of one channel.
    for (int e = tid_; e < total; e += p.threads) {
      uint32_t rest, t, j, cl, kh, kw;
      p.taps_div.divmod(static_cast<uint32_t>(e), rest, t);
      p.cbw_div.divmod(rest, j, cl);
      p.kw_div.divmod(t, kh, kw);
      const int oc = oc_base_ + static_cast<int>(cl);
      const int jj = static_cast<int>(j);
      smem[(jj * taps + static_cast<int>(t)) * cbw + static_cast<int>(cl)] =
          oc < g.out_c ? dw_weight(g, oc * g.ch_mul + jj, static_cast<int>(kh), static_cast<int>(kw)) : 0.0f;
    }
  }

  CNNKERN_HD void weights(const DwDirectParams<T>& p, const float* smem, int j, int kh, int kw,
                          float (&wv)[V]) const {
    const DwGather<T>& g = p.g;
    if (p.w_smem) {
      dw_load_smem<V>(smem + ((j * g.kh * g.kw + kh * g.kw + kw) * p.tc + tc_) * V, wv);
    } else {
#pragma unroll
      for (int l = 0; l < V; ++l) wv[l] = dw_weight(g, (oc0_ + l) * g.ch_mul + j, kh, kw);
    }
  }

  CNNKERN_HD void fma(float (&acc)[V], const float (&wv)[V], const float (&sv)[VI]) const {
#pragma unroll
    for (int l = 0; l < V; ++l) acc[l] += wv[l] * sv[l / MI];
  }

  CNNKERN_HD void run(const DwDirectParams<T>& p, const float* smem) {
    if (!ok_) return;
    const DwGather<T>& g = p.g;
    float bias[V];
#pragma unroll
    for (int l = 0; l < V; ++l) bias[l] = g.bias != nullptr ? Num<T>::to_float(g.bias[(oc0_ + l) * g.bias_stride]) : 0.0f;
    // kAct: (acc + bias) * scale + shift as acc * scale + (bias * scale + shift), so that only two values
    // per lane stay live over the gather (the fp32 rounding differs by an ulp at most).
    ChannelAffine::At aff[kEpi == EpiKind::kAct ? V : 1];
    if constexpr (kEpi == EpiKind::kAct) {
#pragma unroll
      for (int l = 0; l < V; ++l) {
        aff[l] = g.aff.template at<T>(oc0_ + l);
        aff[l].shift += bias[l] * aff[l].scale;
        bias[l] = 0.0f;
      }
    }
    const int first = static_cast<int>(pb_) * p.tp * p.gpt + tp_;
    for (int i = 0; i < p.gpt; ++i) {
      const int gi = first + i * p.tp;
      if (gi >= p.groups) break;
      uint32_t rest, xi, n, y;
      p.xg_div.divmod(static_cast<uint32_t>(gi), rest, xi);
      p.oh_div.divmod(rest, n, y);
      int x0, xstep;
      if constexpr (kRes) {
        uint32_t chunk, rho;
        p.sw_div.divmod(xi, chunk, rho);
        x0 = static_cast<int>(rho + chunk * RP * g.sw);
        xstep = g.sw;
      } else {
        x0 = static_cast<int>(xi) * RP;
        xstep = 1;
      }
      float acc[RP][V];
#pragma unroll
      for (int r = 0; r < RP; ++r)
#pragma unroll
        for (int l = 0; l < V; ++l) acc[r][l] = 0.0f;
      for (int j = 0; j < g.nsrc; ++j) {
        const int ci = static_cast<int>(p.ch_div.div(static_cast<uint32_t>(oc0_ * g.ch_mul + j)));
        const T* src = g.src + static_cast<int>(n) * g.ss.n + ci * g.ss.c;
        if constexpr (kRes) {
          gather_residue(p, smem, j, src, static_cast<int>(y), x0, acc);
        } else if constexpr (KT > 0) {
          gather_window(p, smem, j, src, static_cast<int>(y), x0, acc);
        } else {
          gather_forward(p, smem, j, src, static_cast<int>(y), x0, acc);
        }
      }
      T* out = g.out + static_cast<int>(n) * g.os.n + oc0_ * g.os.c + static_cast<int>(y) * g.os.h;
#pragma unroll
      for (int r = 0; r < RP; ++r) {
        const int x = x0 + r * xstep;
        if (x >= g.out_w) break;
        Vec<T, V> v;
#pragma unroll
        for (int l = 0; l < V; ++l) {
          float o = acc[r][l] + bias[l];
          if constexpr (kEpi == EpiKind::kAct) o = g.aff.apply_at(aff[l], o);
          v.v[l] = Num<T>::from_float(o);
          if constexpr (kStats) ssum_[l] += Num<T>::to_float(v.v[l]);
        }
        if constexpr (kStats) scount_ += 1.0f;
        if constexpr (V > 1) {
          *reinterpret_cast<Vec<T, V>*>(out + x * g.os.w) = v;
        } else {
          out[x * g.os.w] = v.v[0];
        }
      }
    }
  }

  // ---- statistics epilogue (kStats). Buffer slot k (lanes 0..V-1, then the count) of thread tid at
  // buf[k * threads + tid]; the tree runs over the pixel threads tp_ of each channel thread tc_.
  CNNKERN_HD void stats_put_sums(const DwDirectParams<T>& p, float* buf) const {
#pragma unroll
    for (int l = 0; l < V; ++l) buf[l * p.threads + tid_] = ssum_[l];
    buf[V * p.threads + tid_] = scount_;
  }

  CNNKERN_HD void stats_tree(const DwDirectParams<T>& p, float* buf, int s, int slots) const {
    if (tp_ >= s || tp_ + s >= p.tp) return;
    for (int k = 0; k < slots; ++k) buf[k * p.threads + tid_] += buf[k * p.threads + tid_ + s * p.tc];
  }

  // Means from the tree's row 0 (thread tc_), then pass 2 over the thread's own stored outputs.
  CNNKERN_HD void stats_center(const DwDirectParams<T>& p, const float* buf) {
    const float count = buf[V * p.threads + tc_];
#pragma unroll
    for (int l = 0; l < V; ++l) {
      smean_[l] = buf[l * p.threads + tc_] / count;
      ssum_[l] = 0.0f;
    }
    if (!ok_) return;
    const DwGather<T>& g = p.g;
    const int first = static_cast<int>(pb_) * p.tp * p.gpt + tp_;
    for (int i = 0; i < p.gpt; ++i) {
      const int gi = first + i * p.tp;
      if (gi >= p.groups) break;
      uint32_t rest, xi, n, y;
      p.xg_div.divmod(static_cast<uint32_t>(gi), rest, xi);
      p.oh_div.divmod(rest, n, y);
      const int x0 = static_cast<int>(xi) * RP;
      const T* out = g.out + static_cast<int>(n) * g.os.n + oc0_ * g.os.c + static_cast<int>(y) * g.os.h;
#pragma unroll
      for (int r = 0; r < RP; ++r) {
        const int x = x0 + r;
        if (x >= g.out_w) break;
        float sv[V];
        dw_load<T, V>(out + x * g.os.w, sv);
#pragma unroll
        for (int l = 0; l < V; ++l) {
          const float d = sv[l] - smean_[l];
          ssum_[l] += d * d;
        }
      }
    }
  }

  CNNKERN_HD void stats_put_m2(const DwDirectParams<T>& p, float* buf) const {
#pragma unroll
    for (int l = 0; l < V; ++l) buf[l * p.threads + tid_] = ssum_[l];
  }

  CNNKERN_HD void stats_store(const DwDirectParams<T>& p, const float* buf) const {
    if (tp_ != 0 || !ok_) return;
    const float count = buf[V * p.threads + tc_];  // not overwritten by pass 2
#pragma unroll
    for (int l = 0; l < V; ++l) p.g.stats.put(static_cast<int>(pb_), oc0_ + l, count, smean_[l], buf[l * p.threads + tc_]);
  }

  CNNKERN_HD void gather_forward(const DwDirectParams<T>& p, const float* smem, int j, const T* src, int y, int x0,
                                 float (&acc)[RP][V]) const {
    const DwGather<T>& g = p.g;
    for (int kh = 0; kh < g.kh; ++kh) {
      const int sy = y * g.sh - g.ph + kh * g.dh;
      if (!dw_in(sy, g.src_h)) continue;
      const T* srow = src + sy * g.ss.h;
      for (int kw = 0; kw < g.kw; ++kw) {
        float wv[V];
        weights(p, smem, j, kh, kw, wv);
        const int sx0 = x0 * g.sw - g.pw + kw * g.dw;
#pragma unroll
        for (int r = 0; r < RP; ++r) {
          const int sx = sx0 + r * g.sw;
          if (!dw_in(sx, g.src_w)) continue;
          float sv[VI];
          dw_load<T, VI>(srow + sx * g.ss.w, sv);
          fma(acc[r], wv, sv);
        }
      }
    }
  }

  // Unit stride and dilation, KT x KT filter: source column u feeds output r through tap u - r.
  CNNKERN_HD void gather_window(const DwDirectParams<T>& p, const float* smem, int j, const T* src, int y, int x0,
                                float (&acc)[RP][V]) const {
    const DwGather<T>& g = p.g;
    const float* wj = smem + (j * KT * KT * p.tc + tc_) * V;
#pragma unroll
    for (int kh = 0; kh < KT; ++kh) {
      const int sy = y - g.ph + kh;
      if (!dw_in(sy, g.src_h)) continue;
      const T* srow = src + sy * g.ss.h;
#pragma unroll
      for (int u = 0; u < RP + KT - 1; ++u) {
        const int sx = x0 - g.pw + u;
        if (!dw_in(sx, g.src_w)) continue;
        float sv[VI];
        dw_load<T, VI>(srow + sx * g.ss.w, sv);
#pragma unroll
        for (int r = 0; r < RP; ++r) {
          const int kw = u - r;
          if (kw < 0 || kw >= KT) continue;
          float wv[V];
          dw_load_smem<V>(wj + (kh * KT + kw) * p.tc * V, wv);
          fma(acc[r], wv, sv);
        }
      }
    }
  }

  CNNKERN_HD void gather_residue(const DwDirectParams<T>& p, const float* smem, int j, const T* src, int y, int x0,
                                 float (&acc)[RP][V]) const {
    const DwGather<T>& g = p.g;
    const int ay = y + g.ph;
    const int ax = x0 + g.pw;
    const int kh0 = dw_first_tap(ay, p.sh_div, p.dh_mod, g.kh, g.kh_step);
    const int kw0 = dw_first_tap(ax, p.sw_div, p.dw_mod, g.kw, g.kw_step);
    if (kh0 >= g.kh || kw0 >= g.kw) return;
    // Source row/column of the first contributing tap; each further one is dsy/dsx closer to 0.
    const int sy0 = dw_exact_div(ay - kh0 * g.dh, p.sh_div);
    const int sxs = dw_exact_div(ax - kw0 * g.dw, p.sw_div);
    for (int kh = kh0, sy = sy0; kh < g.kh && sy >= 0; kh += g.kh_step, sy -= p.dsy) {
      if (sy >= g.src_h) continue;
      const T* srow = src + sy * g.ss.h;
      for (int kw = kw0, sx0 = sxs; kw < g.kw && sx0 + RP - 1 >= 0; kw += g.kw_step, sx0 -= p.dsx) {
        float wv[V];
        weights(p, smem, j, kh, kw, wv);
#pragma unroll
        for (int r = 0; r < RP; ++r) {
          const int sx = sx0 + r;
          if (!dw_in(sx, g.src_w)) continue;
          float sv[VI];
          dw_load<T, VI>(srow + sx * g.ss.w, sv);
          fma(acc[r], wv, sv);
        }
      }
    }
  }
};

#if defined(__CUDACC__)
template <class T, int V, int MI, int KT, bool kRes, EpiKind kEpi = EpiKind::kPlain>
__global__ void __launch_bounds__(kDwThreads) dw_direct_kernel(const DwDirectParams<T> p) {
  float* smem = dw_dynamic_smem();
  DwDirectBlock<T, V, MI, KT, kRes, kEpi> blk;
  blk.init(p, blockIdx.x, threadIdx.x);
  blk.stage(p, smem);
  __syncthreads();
  blk.run(p, smem);
  if constexpr (kEpi == EpiKind::kStats) {
    float* buf = smem + p.stats_off;  // disjoint from the weights run() may still be reading
    const int first = tree_first_step(p.tp);
    blk.stats_put_sums(p, buf);
    for (int s = first; s > 0; s >>= 1) {
      __syncthreads();
      blk.stats_tree(p, buf, s, V + 1);
    }
    __syncthreads();
    blk.stats_center(p, buf);
    __syncthreads();
    blk.stats_put_m2(p, buf);
    for (int s = first; s > 0; s >>= 1) {
      __syncthreads();
      blk.stats_tree(p, buf, s, V);
    }
    __syncthreads();
    blk.stats_store(p, buf);
  }
}
#endif

}  // namespace cnnkern
