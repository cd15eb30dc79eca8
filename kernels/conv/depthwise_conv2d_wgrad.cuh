// Depthwise weight gradient: dw[co, 0, kh, kw] = sum over (n, oh, ow) of dy[n, co, oh, ow] *
// x[n, co / m, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw].
//
// Block (blockIdx.x = chunk + chunks * channel block, blockIdx.y = pixel split): thread t owns VW
// consecutive channels (channel vector cb*tc + t % tc) and a set of taps (one chunk), and walks the
// split's pixels t / tc, t / tc + tp, ...: per pixel one dy load, then one x load + VW FMAs per tap.
// Channels-last tensors use tc > 1, VW = 4 (lanes along C); pixel-contiguous ones tc = 1, VW = 1
// (lanes along W). KT > 0: square KT x KT filter, a chunk is dw_wgrad_rows(KT, VW) filter rows with
// compile-time offsets; KT == 0: any filter, chunks of 8 taps in row-major order.
//
// The block then reduces its accumulators over the tp pixel threads in a fixed order (shared memory,
// no atomics) and either stores the partial into workspace[split][co][tap] (deterministic; a second
// kernel sums the splits in order) or atomically adds it into workspace[co][tap] (fast).
//
// Phases: init; accumulate(); stash(); barrier; partial(); barrier; finish().
#pragma once

#include "conv/depthwise_conv2d_common.cuh"

namespace cnnkern {

template <class T, int VW, int KT>
struct DwWgradBlock {
  static constexpr int NT = dw_wgrad_taps_per_thread(KT, VW);
  static constexpr int RK = dw_wgrad_rows(KT, VW);
  static constexpr int NA = NT * VW;
  static_assert(NA <= kDwWgradMaxAcc || KT == 0, "too many accumulators");

  int tid_, tc_, tp_, cb_, chunk_, split_, co0_;
  bool ok_;
  int toy_[KT > 0 ? 1 : kDwWgradGenericTaps];  // generic path: tap offsets kh*dh, kw*dw
  int tox_[KT > 0 ? 1 : kDwWgradGenericTaps];
  int ntap_;
  float acc_[NT][VW];

  CNNKERN_HD void init(const DwWgradParams<T>& p, unsigned bx, unsigned by, int tid) {
    tid_ = tid;
    tc_ = tid % p.tc;
    tp_ = tid / p.tc;
    chunk_ = static_cast<int>(bx % static_cast<unsigned>(p.chunks));
    cb_ = static_cast<int>(bx / static_cast<unsigned>(p.chunks));
    split_ = static_cast<int>(by);
    const int cv = cb_ * p.tc + tc_;
    ok_ = cv < p.cvecs;
    co0_ = cv * VW;
    ntap_ = 0;
    if constexpr (KT == 0) {
      const int taps = p.s.kh * p.s.kw;
#pragma unroll
      for (int t = 0; t < kDwWgradGenericTaps; ++t) {
        const int lin = chunk_ * kDwWgradGenericTaps + t;
        const int kh = lin / p.s.kw;
        toy_[t] = kh * p.s.dh;
        tox_[t] = (lin - kh * p.s.kw) * p.s.dw;
        if (lin < taps) ntap_ = t + 1;
      }
    }
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
      for (int l = 0; l < VW; ++l) acc_[t][l] = 0.0f;
  }

  CNNKERN_HD void accumulate(const DwWgradParams<T>& p) {
    if (!ok_) return;
    const DwShape& s = p.s;
    const int ci0 = VW > 1 ? co0_ : static_cast<int>(p.mult_div.div(static_cast<uint32_t>(co0_)));
    const T* dy = p.dy + co0_ * p.dys.c;
    const T* x = p.x + ci0 * p.xs.c;
    const int begin = split_ * p.pix_per_split;
    const int end = begin + p.pix_per_split < p.pix ? begin + p.pix_per_split : p.pix;
    for (int pix = begin + tp_; pix < end; pix += p.tp) {
      uint32_t rest, ow, n, oh;
      p.ow_div.divmod(static_cast<uint32_t>(pix), rest, ow);
      p.oh_div.divmod(rest, n, oh);
      float gv[VW];
      load_as_float<T, VW>(dy + static_cast<int>(n) * p.dys.n + static_cast<int>(oh) * p.dys.h + static_cast<int>(ow) * p.dys.w,
                     gv);
      const int iy0 = static_cast<int>(oh) * s.sh - s.ph;
      const int ix0 = static_cast<int>(ow) * s.sw - s.pw;
      const T* xn = x + static_cast<int>(n) * p.xs.n;
      if constexpr (KT > 0) {
#pragma unroll
        for (int i = 0; i < RK; ++i) {
          const int kh = chunk_ * RK + i;
          if (kh >= KT) break;
          const int iy = iy0 + kh * s.dh;
          if (!dw_in(iy, s.h)) continue;
          const T* xrow = xn + iy * p.xs.h;
#pragma unroll
          for (int kw = 0; kw < KT; ++kw) {
            const int ix = ix0 + kw * s.dw;
            if (!dw_in(ix, s.w)) continue;
            float xv[VW];
            load_as_float<T, VW>(xrow + ix * p.xs.w, xv);
#pragma unroll
            for (int l = 0; l < VW; ++l) acc_[i * KT + kw][l] += gv[l] * xv[l];
          }
        }
      } else {
#pragma unroll
        for (int t = 0; t < kDwWgradGenericTaps; ++t) {
          if (t >= ntap_) break;
          const int iy = iy0 + toy_[t];
          const int ix = ix0 + tox_[t];
          if (!dw_in(iy, s.h) || !dw_in(ix, s.w)) continue;
          float xv[VW];
          load_as_float<T, VW>(xn + iy * p.xs.h + ix * p.xs.w, xv);
#pragma unroll
          for (int l = 0; l < VW; ++l) acc_[t][l] += gv[l] * xv[l];
        }
      }
    }
  }

  // Accumulator a of channel thread c, pixel thread q lives at red[(a * tc + c) * tp + q].
  CNNKERN_HD void stash(const DwWgradParams<T>& p, float* smem) const {
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
      for (int l = 0; l < VW; ++l) smem[((t * VW + l) * p.tc + tc_) * p.tp + tp_] = acc_[t][l];
  }

  CNNKERN_HD void partial(const DwWgradParams<T>& p, float* smem) const {
    const int groups = dw_wgrad_red_groups(p.tc);
    const int len = p.tp / groups;
    float* part = smem + NA * kDwThreads;
    for (int q = tid_; q < NA * p.tc * groups; q += kDwThreads) {
      // (entry, group) = (q / groups, q % groups); a group is every groups-th pixel thread, so that
      // neighbouring threads read neighbouring words.
      const int e = q / groups;
      const float* src = smem + e * p.tp + (q - e * groups);
      float sum = 0.0f;
      for (int i = 0; i < len; ++i) sum += src[i * groups];
      part[q] = sum;
    }
  }

  CNNKERN_HD void finish(const DwWgradParams<T>& p, const float* smem) const {
    const DwShape& s = p.s;
    const int groups = dw_wgrad_red_groups(p.tc);
    const float* part = smem + NA * kDwThreads;
    const int taps = s.kh * s.kw;
    for (int e = tid_; e < NA * p.tc; e += kDwThreads) {
      float sum = 0.0f;
      for (int i = 0; i < groups; ++i) sum += part[e * groups + i];
      const int a = e / p.tc;
      const int c = e - a * p.tc;
      const int t = a / VW;
      const int co = (cb_ * p.tc + c) * VW + (a - t * VW);
      if (co >= s.c_out) continue;
      int lin;
      if constexpr (KT > 0) {
        const int kh = chunk_ * RK + t / KT;
        if (kh >= KT) continue;
        lin = kh * KT + t % KT;
      } else {
        lin = chunk_ * kDwWgradGenericTaps + t;
        if (lin >= taps) continue;
      }
      if (p.deterministic) {
        p.ws[(int64_t{split_} * s.c_out + co) * taps + lin] = sum;
      } else {
        dw_atomic_add(p.ws + int64_t{co} * taps + lin, sum);
      }
    }
  }
};

template <class T>
struct DwWgradFinalize {
  CNNKERN_HD static void run(const DwWgradFinalizeParams<T>& p, int64_t e) {
    const int taps = p.kh * p.kw;
    const int64_t co = e / taps;
    const int t = static_cast<int>(e - co * taps);
    const int64_t plane = int64_t{p.c_out} * taps;
    float sum = 0.0f;
    for (int s = 0; s < p.splits; ++s) sum += p.ws[s * plane + e];
    const int kh = t / p.kw;
    p.dw[co * p.dws.n + kh * p.dws.h + (t - kh * p.kw) * p.dws.w] = Num<T>::from_float(sum);
  }
};

#if defined(__CUDACC__)
template <class T, int VW, int KT>
__global__ void __launch_bounds__(kDwThreads) dw_wgrad_kernel(const DwWgradParams<T> p) {
  float* smem = dw_dynamic_smem();
  DwWgradBlock<T, VW, KT> blk;
  blk.init(p, blockIdx.x, blockIdx.y, threadIdx.x);
  blk.accumulate(p);
  blk.stash(p, smem);
  __syncthreads();
  blk.partial(p, smem);
  __syncthreads();
  blk.finish(p, smem);
}

template <class T>
__global__ void __launch_bounds__(kDwThreads) dw_wgrad_finalize_kernel(const DwWgradFinalizeParams<T> p,
                                                                       int64_t total) {
  for (int64_t e = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    DwWgradFinalize<T>::run(p, e);
  }
}
#endif

}  // namespace cnnkern
