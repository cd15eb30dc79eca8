// Input gradient as an implicit GEMM in gather form (every dx element is produced by exactly one
// thread; no scatter, no atomics):
//   M = N*H*W input pixels, N = Cg_in, K = KH*KW*Cg_out with k = (r, s) outer and j inner;
//   one group per blockIdx.z.
//   A[m][k] = dy[n, g*Cg_out + j, p, q] where p = (h + ph - r*dh) / sh when that divides exactly and
//             0 <= p < OH (same for q), else 0
//   B[k][c] = w[g*Cg_out + j, c, r, s]
//   dx[n, g*Cg_in + c, h, w] = C[m][c]   (pixels no output reaches get exactly 0)
#pragma once

#include "common/implicit_gemm.cuh"
#include "conv/conv2d_index.cuh"
#include "conv/conv2d_params.cuh"
#include "conv/conv2d_weight_operand.cuh"

namespace cnnkern {

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
      int hp, wp;  // h + pad_h, w + pad_w
      bool valid;
    };
    struct Kc {
      int64_t off;
      int dr, ds;
      bool valid;
    };
    const T* dy;
    Strides4 dys;
    int oh, ow, m, k;
    int ph, pw, dh, dw;
    FastDivmod div_sh, div_sw;
    PixelIndex pix;       // over (N, H, W)
    TapChannelIndex tap;  // over (KH, KW, Cg_out)

    CNNKERN_HD Row row(int mi) const {
      Row r;
      r.valid = mi < m;
      int n, h, w;
      pix.split(r.valid ? mi : 0, n, h, w);
      r.off = n * dys.n;
      r.hp = h + ph;
      r.wp = w + pw;
      return r;
    }
    CNNKERN_HD Kc kc(int ki) const {
      Kc c;
      c.valid = ki < k;
      int r, s, j;
      tap.split(c.valid ? ki : 0, r, s, j);
      c.off = j * dys.c;
      c.dr = r * dh;
      c.ds = s * dw;
      return c;
    }
    template <int V>
    CNNKERN_HD Vec<T, V> load(const Row& r, const Kc& c) const {
      if (r.valid && c.valid) {
        const int p = source_coord(r.hp, c.dr, div_sh, oh);
        const int q = source_coord(r.wp, c.ds, div_sw, ow);
        if (p >= 0 && q >= 0) return Vec<T, V>::load(dy + r.off + c.off + p * dys.h + q * dys.w);
      }
      return Vec<T, V>::zeros();
    }
  };

  using OperandB = ConvWeightOperand<T>;

  struct Epilogue {
    T* dx;
    Strides4 dxs;
    PixelIndex pix;
    bool m_fast_;

    CNNKERN_HD bool m_fast() const { return m_fast_; }
    CNNKERN_HD void store(int mi, int ci, float v) const {
      int n, h, w;
      pix.split(mi, n, h, w);
      dx[n * dxs.n + ci * dxs.c + h * dxs.h + w * dxs.w] = Num<T>::from_float(v);
    }
  };

  OperandA a;
  OperandB b;
  Epilogue epi;
  int m, n, k, groups;
  int64_t dy_group_off, w_group_off, dx_group_off;

  CNNKERN_HD int gemm_m() const { return m; }
  CNNKERN_HD int gemm_n() const { return n; }
  CNNKERN_HD int grid_z() const { return groups; }
  CNNKERN_HD KRange k_range(int) const { return KRange{0, k}; }
  CNNKERN_HD OperandA operand_a(int g) const {
    OperandA o = a;
    o.dy += g * dy_group_off;
    return o;
  }
  CNNKERN_HD OperandB operand_b(int g) const {
    OperandB o = b;
    o.w += g * w_group_off;
    return o;
  }
  CNNKERN_HD Epilogue epilogue(int g) const {
    Epilogue e = epi;
    e.dx += g * dx_group_off;
    return e;
  }

  __host__ static Conv2dDgradProblem make(const Conv2dDgradParams<T>& p, bool out_m_fast) {
    const Conv2dShape& s = p.s;
    Conv2dDgradProblem pr;
    pr.m = s.n * s.h * s.w;
    pr.n = s.cg_in;
    pr.k = s.kh * s.kw * s.cg_out;
    pr.groups = s.groups;
    pr.a = OperandA{p.dy,
                    p.dys,
                    s.oh,
                    s.ow,
                    pr.m,
                    pr.k,
                    s.pad_h,
                    s.pad_w,
                    s.dil_h,
                    s.dil_w,
                    FastDivmod(static_cast<uint32_t>(s.stride_h)),
                    FastDivmod(static_cast<uint32_t>(s.stride_w)),
                    PixelIndex(s.h, s.w),
                    TapChannelIndex(s.cg_out, s.kw)};
    pr.b = OperandB{p.w, p.ws.c, p.ws.n, p.ws.h, p.ws.w, s.cg_in, pr.k, TapChannelIndex(s.cg_out, s.kw)};
    pr.epi = Epilogue{p.dx, p.dxs, PixelIndex(s.h, s.w), out_m_fast};
    pr.dy_group_off = static_cast<int64_t>(s.cg_out) * p.dys.c;
    pr.w_group_off = static_cast<int64_t>(s.cg_out) * p.ws.n;
    pr.dx_group_off = static_cast<int64_t>(s.cg_in) * p.dxs.c;
    return pr;
  }
};

}  // namespace cnnkern
