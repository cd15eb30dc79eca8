// Weight gradient as an implicit GEMM with deterministic split-K:
//   M = Cg_out, N = KH*KW*Cg_in with n = (r, s) outer and c inner, K = N_img*OH*OW output pixels.
//   blockIdx.z = g + groups * split; split covers K range [split*kps, min(K, (split+1)*kps)).
//   A[j][kk] = dy[n, g*Cg_out + j, p, q]                                  kk = (n, p, q)
//   B[kk][t] = x[n, g*Cg_in + c, p*sh - ph + r*dh, q*sw - pw + s*dw]       t = (r, s, c)
//   workspace[split][g*Cg_out + j][t] = partial C[j][t]   (fp32, every element written once)
// A second kernel sums the splits in a fixed order and casts into dw through its strides, so results
// are bitwise reproducible (no atomics).
#pragma once

#include "common/implicit_gemm.cuh"
#include "conv/conv2d_index.cuh"
#include "conv/conv2d_params.cuh"

namespace cnnkern {

// kFast::kK  = pixel-fast gathers (NCHW-like dy/x);  kFast::kRow = channel-fast (NHWC-like).
template <class T, Fast kFast>
struct Conv2dWgradProblem {
  using Element = T;
  static constexpr Fast kAFast = kFast;
  static constexpr int kAVec = 1;
  static constexpr Fast kBFast = kFast;
  static constexpr int kBVec = 1;

  struct OperandA {
    struct Row {
      int64_t off;
      bool valid;
    };
    struct Kc {
      int64_t off;
      bool valid;
    };
    const T* dy;
    Strides4 dys;
    int rows, k;
    PixelIndex pix;  // over (N, OH, OW)

    CNNKERN_HD Row row(int j) const {
      Row r;
      r.valid = j < rows;
      r.off = r.valid ? j * dys.c : 0;
      return r;
    }
    CNNKERN_HD Kc kc(int kk) const {
      Kc c;
      c.valid = kk < k;
      int n, p, q;
      pix.split(c.valid ? kk : 0, n, p, q);
      c.off = n * dys.n + p * dys.h + q * dys.w;
      return c;
    }
    template <int V>
    CNNKERN_HD Vec<T, V> load(const Row& r, const Kc& c) const {
      if (r.valid && c.valid) return Vec<T, V>::load(dy + r.off + c.off);
      return Vec<T, V>::zeros();
    }
  };

  struct OperandB {
    struct Row {
      int64_t off;
      int dr, ds;
      bool valid;
    };
    struct Kc {
      int64_t off;
      int ih0, iw0;
      bool valid;
    };
    const T* x;
    Strides4 xs;
    int h, w, rows, k;
    int sh, sw, ph, pw, dh, dw;
    TapChannelIndex tap;  // over (KH, KW, Cg_in)
    PixelIndex pix;       // over (N, OH, OW)

    CNNKERN_HD Row row(int t) const {
      Row r;
      r.valid = t < rows;
      int rr, ss, ci;
      tap.split(r.valid ? t : 0, rr, ss, ci);
      r.off = ci * xs.c;
      r.dr = rr * dh;
      r.ds = ss * dw;
      return r;
    }
    CNNKERN_HD Kc kc(int kk) const {
      Kc c;
      c.valid = kk < k;
      int n, p, q;
      pix.split(c.valid ? kk : 0, n, p, q);
      c.off = n * xs.n;
      c.ih0 = p * sh - ph;
      c.iw0 = q * sw - pw;
      return c;
    }
    template <int V>
    CNNKERN_HD Vec<T, V> load(const Row& r, const Kc& c) const {
      const int ih = c.ih0 + r.dr;
      const int iw = c.iw0 + r.ds;
      if (r.valid && c.valid && static_cast<unsigned>(ih) < static_cast<unsigned>(h) &&
          static_cast<unsigned>(iw) < static_cast<unsigned>(w)) {
        return Vec<T, V>::load(x + r.off + c.off + ih * xs.h + iw * xs.w);
      }
      return Vec<T, V>::zeros();
    }
    // The source of one vector at (filter column row r, pixel c) and whether it is inside the image and the
    // GEMM (the sm_90a weight gradient's cp.async gather, which zero-fills where it is not).
    CNNKERN_HD const T* addr(const Row& r, const Kc& c, bool& valid) const {
      return gather_addr(x, xs, h, w, r.off + c.off, c.ih0 + r.dr, c.iw0 + r.ds, r.valid && c.valid, valid);
    }
  };

  struct Epilogue {
    float* part;  // workspace slice of this (split, group), row pitch ld
    int64_t ld;

    CNNKERN_HD bool m_fast() const { return false; }
    CNNKERN_HD void store(int j, int t, float v) const { part[j * ld + t] = v; }
    struct Row {
      float* p;
    };
    CNNKERN_HD Row row(int j) const { return Row{part + j * ld}; }
    CNNKERN_HD void store_run(const Row& r, int t0, int count, float (&v)[kEpiRun]) const {
      store_run_to(r.p + t0, 1, count, v);
    }
  };

  OperandA a;
  OperandB b;
  Epilogue epi;
  int m, n, k, groups, splits, k_per_split;
  int64_t dy_group_off, x_group_off, ws_group_off, ws_split_off;

  CNNKERN_HD int gemm_m() const { return m; }
  CNNKERN_HD int gemm_n() const { return n; }
  CNNKERN_HD int grid_z() const { return groups * splits; }
  CNNKERN_HD KRange k_range(int z) const {
    const int split = z / groups;
    const int begin = split * k_per_split;
    const int end = k - begin < k_per_split ? k : begin + k_per_split;
    return KRange{begin, end};
  }
  CNNKERN_HD OperandA operand_a(int z) const {
    OperandA o = a;
    o.dy += (z % groups) * dy_group_off;
    return o;
  }
  CNNKERN_HD OperandB operand_b(int z) const {
    OperandB o = b;
    o.x += (z % groups) * x_group_off;
    return o;
  }
  CNNKERN_HD Epilogue epilogue(int z) const {
    Epilogue e = epi;
    e.part += (z % groups) * ws_group_off + (z / groups) * ws_split_off;
    return e;
  }

  __host__ static Conv2dWgradProblem make(const Conv2dWgradParams<T>& p) {
    const Conv2dShape& s = p.s;
    Conv2dWgradProblem pr;
    pr.m = s.cg_out;
    pr.n = s.kh * s.kw * s.cg_in;
    pr.k = s.n * s.oh * s.ow;
    pr.groups = s.groups;
    pr.splits = p.splits;
    pr.k_per_split = p.k_per_split;
    pr.a = OperandA{p.dy, p.dys, s.cg_out, pr.k, PixelIndex(s.oh, s.ow)};
    pr.b = OperandB{p.x,       p.xs,      s.h,       s.w,       pr.n,
                    pr.k,      s.stride_h, s.stride_w, s.pad_h,   s.pad_w,
                    s.dil_h,   s.dil_w,   TapChannelIndex(s.cg_in, s.kw), PixelIndex(s.oh, s.ow)};
    pr.epi = Epilogue{p.workspace, pr.n};
    pr.dy_group_off = static_cast<int64_t>(s.cg_out) * p.dys.c;
    pr.x_group_off = static_cast<int64_t>(s.cg_in) * p.xs.c;
    pr.ws_group_off = static_cast<int64_t>(s.cg_out) * pr.n;
    pr.ws_split_off = static_cast<int64_t>(s.c_out) * pr.n;
    return pr;
  }
};

// Fixed-order sum over the split-K partials of one dw element, cast to T, stored through dw strides.
template <class T>
struct Conv2dWgradReduce {
  const float* workspace;
  int splits;
  int64_t split_stride;  // c_out * KH*KW*Cg_in
  int total;             // == split_stride
  FastDivmod div_row;    // by KH*KW*Cg_in
  TapChannelIndex tap;   // over (KH, KW, Cg_in)
  T* dw;
  Strides4 dws;

  CNNKERN_HD void run(int e) const {
    float acc = 0.0f;
    for (int sp = 0; sp < splits; ++sp) acc += workspace[sp * split_stride + e];
    uint32_t o, t;
    div_row.divmod(static_cast<uint32_t>(e), o, t);
    int r, s, c;
    tap.split(static_cast<int>(t), r, s, c);
    dw[static_cast<int64_t>(o) * dws.n + c * dws.c + r * dws.h + s * dws.w] = Num<T>::from_float(acc);
  }

  __host__ static Conv2dWgradReduce make(const Conv2dWgradParams<T>& p) {
    const Conv2dShape& s = p.s;
    const int row = s.kh * s.kw * s.cg_in;
    Conv2dWgradReduce r;
    r.workspace = p.workspace;
    r.splits = p.splits;
    r.split_stride = static_cast<int64_t>(s.c_out) * row;
    r.total = s.c_out * row;
    r.div_row = FastDivmod(static_cast<uint32_t>(row));
    r.tap = TapChannelIndex(s.cg_in, s.kw);
    r.dw = p.dw;
    r.dws = p.dws;
    return r;
  }
};

template <class T>
__global__ void __launch_bounds__(256) conv2d_wgrad_reduce_kernel(const Conv2dWgradReduce<T> p) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < p.total; e += step) {
    p.run(static_cast<int>(e));
  }
}

}  // namespace cnnkern
