// Forward convolution as an implicit GEMM (no im2col buffer):
//   M = N*OH*OW output pixels, N = Cg_out, K = KH*KW*Cg_in with k = (r, s) outer and c inner;
//   one group per blockIdx.z.
//   A[m][k] = x[n, g*Cg_in + c, p*sh - ph + r*dh, q*sw - pw + s*dw]   (zero outside the input)
//   B[k][j] = w[g*Cg_out + j, c, r, s]
//   y[n, g*Cg_out + j, p, q] = C[m][j] + bias[g*Cg_out + j]
// The epilogue kind (common/epilogue.cuh) adds act(... * scale + shift) before the store (kAct), or the
// per-pixel-tile channel statistics of the stored values (kStats, partials (ceil(M / kBM), C_out, 3)).
#pragma once

#include "common/implicit_gemm.cuh"
#include "conv/conv2d_index.cuh"
#include "conv/conv2d_params.cuh"
#include "conv/conv2d_weight_operand.cuh"

namespace cnnkern {

// kAFast picks the input gather mapping (pixels-fast for NCHW-like x, channels-fast for NHWC-like).
// kVec > 1 (16-byte vectors along channels) requires channel-contiguous, 16-byte aligned x and w with
// Cg_in % kVec == 0; the host checks this.
template <class T, Fast kAFast_, int kVec, EpiKind kEpi = EpiKind::kPlain>
struct Conv2dFwdProblem {
  using Element = T;
  static constexpr bool kStats = kEpi == EpiKind::kStats;
  static constexpr Fast kAFast = kAFast_;
  static constexpr int kAVec = kVec;
  static constexpr Fast kBFast = Fast::kK;
  static constexpr int kBVec = kVec;
  static_assert(kVec == 1 || kAFast_ == Fast::kK, "vector gathers run along channels");

  struct OperandA {
    struct Row {
      int64_t off;
      int ih0, iw0;
      bool valid;
    };
    struct Kc {
      int64_t off;
      int dr, ds;
      bool valid;
    };
    const T* x;
    Strides4 xs;
    int h, w, m, k;
    int sh, sw, ph, pw, dh, dw;
    PixelIndex pix;       // over (N, OH, OW)
    TapChannelIndex tap;  // over (KH, KW, Cg_in)

    CNNKERN_HD Row row(int mi) const {
      Row r;
      r.valid = mi < m;
      int n, p, q;
      pix.split(r.valid ? mi : 0, n, p, q);
      r.off = n * xs.n;
      r.ih0 = p * sh - ph;
      r.iw0 = q * sw - pw;
      return r;
    }
    CNNKERN_HD Kc kc(int ki) const {
      Kc c;
      c.valid = ki < k;
      int r, s, ci;
      tap.split(c.valid ? ki : 0, r, s, ci);
      c.off = ci * xs.c;
      c.dr = r * dh;
      c.ds = s * dw;
      return c;
    }
    template <int V>
    CNNKERN_HD Vec<T, V> load(const Row& r, const Kc& c) const {
      const int ih = r.ih0 + c.dr;
      const int iw = r.iw0 + c.ds;
      if (r.valid && c.valid && static_cast<unsigned>(ih) < static_cast<unsigned>(h) &&
          static_cast<unsigned>(iw) < static_cast<unsigned>(w)) {
        return Vec<T, V>::load(x + r.off + c.off + ih * xs.h + iw * xs.w);
      }
      return Vec<T, V>::zeros();
    }
    CNNKERN_HD const T* addr(const Row& r, const Kc& c, bool& valid) const {
      return gather_addr(x, xs, h, w, r.off + c.off, r.ih0 + c.dr, r.iw0 + c.ds, r.valid && c.valid, valid);
    }
  };

  using OperandB = ConvWeightOperand<T>;

  struct Epilogue {
    T* y;
    Strides4 ys;
    const T* bias;  // already offset to the group; nullptr when absent
    int64_t bias_stride;
    PixelIndex pix;
    bool m_fast_;
    ChannelAffine aff;  // kAct; indexed by the output channel c0 + j
    StatsOut stats;     // kStats
    int c0;             // the group's first output channel

    CNNKERN_HD bool m_fast() const { return m_fast_; }
    // Returns the value as stored (the statistics epilogue reads it back).
    CNNKERN_HD float store(int mi, int j, float v) const {
      int n, p, q;
      pix.split(mi, n, p, q);
      if (bias != nullptr) v += Num<T>::to_float(bias[j * bias_stride]);
      if constexpr (kEpi == EpiKind::kAct) v = aff.apply<T>(c0 + j, v);
      const T o = Num<T>::from_float(v);
      y[n * ys.n + j * ys.c + p * ys.h + q * ys.w] = o;
      return Num<T>::to_float(o);
    }
    // The mainloop's run store: the pixel split once per thread, 8 channels per call.
    struct Row {
      int64_t off;
    };
    CNNKERN_HD Row row(int mi) const {
      int n, p, q;
      pix.split(mi, n, p, q);
      return Row{n * ys.n + p * ys.h + q * ys.w};
    }
    CNNKERN_HD void store_run(const Row& r, int j0, int count, float (&v)[kEpiRun]) const {
      T o[kEpiRun];
#pragma unroll
      for (int jj = 0; jj < kEpiRun; ++jj) {
        o[jj] = Num<T>::zero();
        if (jj < count) {
          const int j = j0 + jj;
          float x = v[jj];
          if (bias != nullptr) x += Num<T>::to_float(bias[j * bias_stride]);
          if constexpr (kEpi == EpiKind::kAct) x = aff.apply<T>(c0 + j, x);
          o[jj] = Num<T>::from_float(x);
          v[jj] = Num<T>::to_float(o[jj]);
        }
      }
      store_run_to(y + r.off + j0 * ys.c, ys.c, count, o);
    }
    CNNKERN_HD void put_stats(int tile, int j, float count, float mean, float m2) const {
      stats.put(tile, c0 + j, count, mean, m2);
    }
  };

  OperandA a;
  OperandB b;
  Epilogue epi;
  int m, n, k, groups;
  int64_t x_group_off, w_group_off, y_group_off, bias_group_off;

  CNNKERN_HD int gemm_m() const { return m; }
  CNNKERN_HD int gemm_n() const { return n; }
  CNNKERN_HD int grid_z() const { return groups; }
  CNNKERN_HD KRange k_range(int) const { return KRange{0, k}; }
  CNNKERN_HD OperandA operand_a(int g) const {
    OperandA o = a;
    o.x += g * x_group_off;
    return o;
  }
  CNNKERN_HD OperandB operand_b(int g) const {
    OperandB o = b;
    o.w += g * w_group_off;
    return o;
  }
  CNNKERN_HD Epilogue epilogue(int g) const {
    Epilogue e = epi;
    e.y += g * y_group_off;
    if (e.bias != nullptr) e.bias += g * bias_group_off;
    e.c0 = g * n;
    return e;
  }

  __host__ static Conv2dFwdProblem make(const Conv2dFwdParams<T>& p, bool out_m_fast) {
    const Conv2dShape& s = p.s;
    Conv2dFwdProblem pr;
    pr.m = s.n * s.oh * s.ow;
    pr.n = s.cg_out;
    pr.k = s.kh * s.kw * s.cg_in;
    pr.groups = s.groups;
    pr.a = OperandA{p.x, p.xs, s.h, s.w, pr.m, pr.k, s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.dil_h,
                    s.dil_w, PixelIndex(s.oh, s.ow), TapChannelIndex(s.cg_in, s.kw)};
    pr.b = OperandB{p.w, p.ws.n, p.ws.c, p.ws.h, p.ws.w, s.cg_out, pr.k, TapChannelIndex(s.cg_in, s.kw)};
    pr.epi = Epilogue{p.y, p.ys, p.bias, p.bias_stride, PixelIndex(s.oh, s.ow), out_m_fast, p.aff, p.stats, 0};
    pr.x_group_off = static_cast<int64_t>(s.cg_in) * p.xs.c;
    pr.w_group_off = static_cast<int64_t>(s.cg_out) * p.ws.n;
    pr.y_group_off = static_cast<int64_t>(s.cg_out) * p.ys.c;
    pr.bias_group_off = static_cast<int64_t>(s.cg_out) * p.bias_stride;
    return pr;
  }
};

// Which tile configuration the forward runs (host plan; csrc/cuda/conv2d_launch.cuh launches what it says
// and the emulator replays it). GemmTileBig (128x128x64, 2 CTAs/SM) for 16-bit channels-last 16-byte
// gathers (both operands cp.async) without the statistics epilogue (its four threads per column need
// kBN = 64), when the group's output channels fill whole 128-wide tiles and the grid fills its last wave
// of 2 CTAs per SM to >= 85% (ResNet-50 N=256: 128@28 and 256@14 yes; 512@7, 392 CTAs = 1.48 waves, and
// the 64-channel layers no), on a device whose shared memory per SM holds two of its 97 KiB CTAs: sm_90's
// 228 KiB does, sm_80's 164 KiB and sm_86/sm_89's 100 KiB do not. Model: kernels/common/implicit_gemm.md.
enum class FwdTile { kDefault, kBig };

__host__ inline FwdTile conv2d_fwd_tile_plan(const Conv2dShape& s, int elem_bytes, bool vec16, EpiKind e,
                                             int sm_count, int smem_per_sm) {
  constexpr int kBigCtaSmem = GemmTileBig<__half>::kSmemBytes + 1024;  // + the 1 KiB the driver reserves
  if (elem_bytes != 2 || !vec16 || e == EpiKind::kStats || s.cg_out % 128 != 0 || sm_count <= 0 ||
      smem_per_sm < 2 * kBigCtaSmem)
    return FwdTile::kDefault;
  const int64_t m = int64_t{s.n} * s.oh * s.ow;
  const int64_t ctas = (m + 127) / 128 * (s.cg_out / 128) * s.groups;
  const int64_t slots = 2 * int64_t{sm_count};
  const int64_t waves = (ctas + slots - 1) / slots;
  return ctas * 100 >= waves * slots * 85 ? FwdTile::kBig : FwdTile::kDefault;
}

}  // namespace cnnkern
