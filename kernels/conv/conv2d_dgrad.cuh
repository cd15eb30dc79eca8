// Input gradient (and transposed-convolution forward) as an implicit GEMM in gather form, split into the
// stride phases of dx (sub-pixel decomposition) so that no MMA is spent on structural zeros and no
// zeros are ever inserted; every dx element is produced by exactly one thread, no atomics.
//
// Phase (a, b) holds the dx pixels h = a + sh*i, w = b + sw*j. Tap r reaches them iff
// (a + pad_h - r*dh) is a multiple of sh; those r form the progression r0 + jr*step_h with
// step_h = sh / gcd(sh, dh) and r0 < step_h, and for them dy row p = i + shift_a - jr*(step_h*dh/sh)
// with shift_a = (a + pad_h - r0*dh) / sh exact. Likewise for columns. One blockIdx.z per (group, phase):
//   M = N * ceil(H/sh) * ceil(W/sw) (the phase grid; pixels past H or W are masked), N = Cg_in,
//   K = taps_h(a) * taps_w(b) * Cg_out with k = (jr, js) outer and dy channel j inner.
//   A[m][k] = dy[n, g*Cg_out + j, p, q]  (0 when p or q falls outside dy)
//   B[k][c] = w[g*Cg_out + j, c, r0 + jr*step_h, s0 + js*step_w]
//   dx[n, g*Cg_in + c, h, w] = C[m][c] (+ bias[g*Cg_in + c])
// A phase that no tap reaches has an empty K range and stores 0 (+ bias). With stride 1 there is one
// phase holding every tap: the plain input gradient.
#pragma once

#include "common/implicit_gemm.cuh"
#include "conv/conv2d_index.cuh"
#include "conv/conv2d_params.cuh"
#include "conv/conv2d_weight_operand.cuh"

namespace cnnkern {

// One axis of the phase decomposition; uniform over the launch, filled in by the host.
struct DgradAxis {
  int taps;  // kernel extent (KH)
  int stride, pad, dil;
  int step;      // stride / gcd(stride, dil): tap distance within one phase
  int dil_step;  // step * dil / stride: dy distance between consecutive taps of a phase
  int cells;     // ceil(dx extent / stride): phase grid extent
};

// The taps of one phase along one axis: first + j*step for j < count; dy coordinate i + shift - j*dil_step.
struct PhaseTaps {
  int first;
  int count;
  int shift;
};

// Derived in-kernel, once per thread per block (at most min(taps, step) iterations), rather than
// tabulated per phase on the host: the launch parameters then stay the same size for any stride.
CNNKERN_HD PhaseTaps phase_taps(const DgradAxis& ax, int phase) {
  const int lim = ax.taps < ax.step ? ax.taps : ax.step;
  for (int r = 0; r < lim; ++r) {
    const int t = phase + ax.pad - r * ax.dil;  // |t| < 2^30 (host coordinate limits)
    if (t % ax.stride == 0) return PhaseTaps{r, (ax.taps - 1 - r) / ax.step + 1, t / ax.stride};
  }
  return PhaseTaps{0, 0, 0};
}

// kAFast/kAVec as for the forward input gather; kAVec > 1 requires channel-contiguous, 16-byte
// aligned dy with Cg_out % kAVec == 0. The weight gather is scalar with consecutive threads on
// consecutive input channels.
template <class T, Fast kAFast_, int kAVec_>
struct Conv2dDgradProblem {
  using Element = T;
  static constexpr Fast kAFast = kAFast_;
  static constexpr int kAVec = kAVec_;
  static constexpr Fast kBFast = Fast::kRow;
  static constexpr int kBVec = 1;
  static_assert(kAVec_ == 1 || kAFast_ == Fast::kK, "vector gathers run along channels");

  struct OperandA {
    struct Row {
      int64_t off;
      int p0, q0;  // dy coordinates of the phase's first taps
      bool valid;
    };
    struct Kc {
      int64_t off;
      int dp, dq;
      bool valid;
    };
    const T* dy;
    Strides4 dys;
    int oh, ow, m, k;
    int h, w, sh, sw;  // to mask phase-grid cells past the dx extent
    int phase_h, phase_w, shift_h, shift_w, dil_step_h, dil_step_w;
    PixelIndex pix;       // over (N, cells_h, cells_w)
    TapChannelIndex tap;  // over (taps_h, taps_w, Cg_out) of the phase

    CNNKERN_HD Row row(int mi) const {
      Row r;
      int n, i, j;
      pix.split(mi < m ? mi : 0, n, i, j);
      r.valid = mi < m && phase_h + i * sh < h && phase_w + j * sw < w;
      r.off = n * dys.n;
      r.p0 = i + shift_h;
      r.q0 = j + shift_w;
      return r;
    }
    CNNKERN_HD Kc kc(int ki) const {
      Kc c;
      c.valid = ki < k;
      int jr, js, j;
      tap.split(c.valid ? ki : 0, jr, js, j);
      c.off = j * dys.c;
      c.dp = jr * dil_step_h;
      c.dq = js * dil_step_w;
      return c;
    }
    template <int V>
    CNNKERN_HD Vec<T, V> load(const Row& r, const Kc& c) const {
      const int p = r.p0 - c.dp;
      const int q = r.q0 - c.dq;
      if (r.valid && c.valid && static_cast<unsigned>(p) < static_cast<unsigned>(oh) &&
          static_cast<unsigned>(q) < static_cast<unsigned>(ow)) {
        return Vec<T, V>::load(dy + r.off + c.off + p * dys.h + q * dys.w);
      }
      return Vec<T, V>::zeros();
    }
    CNNKERN_HD const T* addr(const Row& r, const Kc& c, bool& valid) const {
      const int p = r.p0 - c.dp;
      const int q = r.q0 - c.dq;
      valid = r.valid && c.valid && static_cast<unsigned>(p) < static_cast<unsigned>(oh) &&
              static_cast<unsigned>(q) < static_cast<unsigned>(ow);
      return valid ? dy + r.off + c.off + p * dys.h + q * dys.w : dy;
    }
  };

  using OperandB = ConvWeightOperand<T>;

  struct Epilogue {
    T* dx;
    Strides4 dxs;
    const T* bias;  // already offset to the group; nullptr when absent
    int64_t bias_stride;
    int h, w, sh, sw, phase_h, phase_w;
    PixelIndex pix;
    bool m_fast_;

    CNNKERN_HD bool m_fast() const { return m_fast_; }
    CNNKERN_HD void store(int mi, int ci, float v) const {
      int n, i, j;
      pix.split(mi, n, i, j);
      const int y = phase_h + i * sh, x = phase_w + j * sw;
      if (y >= h || x >= w) return;
      if (bias != nullptr) v += Num<T>::to_float(bias[ci * bias_stride]);
      dx[n * dxs.n + ci * dxs.c + y * dxs.h + x * dxs.w] = Num<T>::from_float(v);
    }
    // The mainloop's run store: the phase-grid split once per thread, 8 channels per call.
    struct Row {
      int64_t off;
      bool valid;  // the phase cell lies inside dx
    };
    CNNKERN_HD Row row(int mi) const {
      int n, i, j;
      pix.split(mi, n, i, j);
      const int y = phase_h + i * sh, x = phase_w + j * sw;
      return Row{n * dxs.n + y * dxs.h + x * dxs.w, y < h && x < w};
    }
    CNNKERN_HD void store_run(const Row& r, int c0, int count, float (&v)[kEpiRun]) const {
      if (!r.valid) return;
      T o[kEpiRun];
#pragma unroll
      for (int jj = 0; jj < kEpiRun; ++jj) {
        float x = v[jj];
        if (bias != nullptr && jj < count) x += Num<T>::to_float(bias[(c0 + jj) * bias_stride]);
        o[jj] = Num<T>::from_float(x);
      }
      store_run_to(dx + r.off + c0 * dxs.c, dxs.c, count, o);
    }
  };

  struct Phase {
    int g, a, b;
    PhaseTaps th, tw;
  };

  OperandA a;
  OperandB b;
  Epilogue epi;
  DgradAxis ax_h, ax_w;
  int m, n, cg_out, groups;
  // The per-phase tap count along W is q or q+1 (q = KW / step_w), so two divisors cover every phase.
  int taps_w_hi;
  FastDivmod div_taps_w_lo, div_taps_w_hi;
  int64_t dy_group_off, w_group_off, dx_group_off, bias_group_off;

  CNNKERN_HD Phase phase(int z) const {
    Phase ph;
    ph.g = z % groups;
    const int pi = z / groups;
    ph.a = pi / ax_w.stride;
    ph.b = pi % ax_w.stride;
    ph.th = phase_taps(ax_h, ph.a);
    ph.tw = phase_taps(ax_w, ph.b);
    return ph;
  }
  CNNKERN_HD TapChannelIndex phase_tap_index(const Phase& ph) const {
    TapChannelIndex t = a.tap;
    t.div_kw = ph.tw.count == taps_w_hi ? div_taps_w_hi : div_taps_w_lo;
    return t;
  }

  CNNKERN_HD int gemm_m() const { return m; }
  CNNKERN_HD int gemm_n() const { return n; }
  CNNKERN_HD int grid_z() const { return groups * ax_h.stride * ax_w.stride; }
  CNNKERN_HD KRange k_range(int z) const {
    const Phase ph = phase(z);
    return KRange{0, ph.th.count * ph.tw.count * cg_out};
  }
  CNNKERN_HD OperandA operand_a(int z) const {
    const Phase ph = phase(z);
    OperandA o = a;
    o.dy += ph.g * dy_group_off;
    o.k = ph.th.count * ph.tw.count * cg_out;
    o.phase_h = ph.a;
    o.phase_w = ph.b;
    o.shift_h = ph.th.shift;
    o.shift_w = ph.tw.shift;
    o.tap = phase_tap_index(ph);
    return o;
  }
  CNNKERN_HD OperandB operand_b(int z) const {
    const Phase ph = phase(z);
    OperandB o = b;
    o.w += ph.g * w_group_off + ph.th.first * b.h_stride + ph.tw.first * b.w_stride;
    o.h_stride = b.h_stride * ax_h.step;
    o.w_stride = b.w_stride * ax_w.step;
    o.k = ph.th.count * ph.tw.count * cg_out;
    o.tap = phase_tap_index(ph);
    return o;
  }
  CNNKERN_HD Epilogue epilogue(int z) const {
    const Phase ph = phase(z);
    Epilogue e = epi;
    e.dx += ph.g * dx_group_off;
    if (e.bias != nullptr) e.bias += ph.g * bias_group_off;
    e.phase_h = ph.a;
    e.phase_w = ph.b;
    return e;
  }

  __host__ static int gcd(int x, int y) {
    while (y != 0) {
      const int t = x % y;
      x = y;
      y = t;
    }
    return x;
  }
  __host__ static DgradAxis make_axis(int extent, int taps, int stride, int pad, int dil) {
    const int step = stride / gcd(stride, dil);
    return DgradAxis{taps, stride, pad, dil, step, step * dil / stride, (extent + stride - 1) / stride};
  }

  __host__ static Conv2dDgradProblem make(const Conv2dDgradParams<T>& p, bool out_m_fast) {
    const Conv2dShape& s = p.s;
    Conv2dDgradProblem pr;
    pr.ax_h = make_axis(s.h, s.kh, s.stride_h, s.pad_h, s.dil_h);
    pr.ax_w = make_axis(s.w, s.kw, s.stride_w, s.pad_w, s.dil_w);
    const int q = s.kw / pr.ax_w.step;
    pr.taps_w_hi = q + 1;
    pr.div_taps_w_lo = FastDivmod(static_cast<uint32_t>(q > 0 ? q : 1));
    pr.div_taps_w_hi = FastDivmod(static_cast<uint32_t>(q + 1));
    pr.m = s.n * pr.ax_h.cells * pr.ax_w.cells;
    pr.n = s.cg_in;
    pr.cg_out = s.cg_out;
    pr.groups = s.groups;
    const PixelIndex cells(pr.ax_h.cells, pr.ax_w.cells);
    const TapChannelIndex tap(s.cg_out, 1);  // div_kw is set per phase
    pr.a = OperandA{p.dy,   p.dys,  s.oh, s.ow, pr.m, 0, s.h, s.w, s.stride_h, s.stride_w, 0, 0, 0, 0,
                    pr.ax_h.dil_step, pr.ax_w.dil_step, cells, tap};
    pr.b = OperandB{p.w, p.ws.c, p.ws.n, p.ws.h, p.ws.w, s.cg_in, 0, tap};
    pr.epi = Epilogue{p.dx, p.dxs, p.bias, p.bias_stride, s.h, s.w, s.stride_h, s.stride_w, 0, 0, cells, out_m_fast};
    pr.dy_group_off = static_cast<int64_t>(s.cg_out) * p.dys.c;
    pr.w_group_off = static_cast<int64_t>(s.cg_out) * p.ws.n;
    pr.dx_group_off = static_cast<int64_t>(s.cg_in) * p.dxs.c;
    pr.bias_group_off = static_cast<int64_t>(s.cg_in) * p.bias_stride;
    return pr;
  }
};

}  // namespace cnnkern
