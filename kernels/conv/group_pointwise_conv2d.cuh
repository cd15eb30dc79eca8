// Grouped 1x1 convolution with the channel shuffle fused into its store, as three problem policies of
// the shared implicit GEMM (implicit_gemm.cuh; one launch for all groups, blockIdx.z = group):
//
//   forward      M = N*H*W pixels, N = Cg_out, K = Cg_in    A = x, B = w;  PointwiseEpilogue stores
//                channel c (bias, scale, shift, ReLU applied) at map.dest(c) of y
//   input grad   M = N*H*W pixels, N = Cg_in,  K = Cg_out   A = dy read at map.dest(c), ReLU-masked by
//                the saved output at the same position;  B = w * scale
//   weight grad  M = Cg_out, N = Cg_in, K = N*H*W pixels    A = masked dy (as above), B = x; split-K
//                partials * scale, reduced in a fixed order by Conv2dWgradReduce (deterministic)
#pragma once

#include "common/implicit_gemm.cuh"
#include "conv/conv2d_wgrad.cuh"
#include "conv/group_pointwise_conv2d_operands.cuh"
#include "conv/group_pointwise_conv2d_params.cuh"

namespace cnnkern {

// What the forward and input-gradient policies share: GEMM rows are the pixels, blockIdx.z the group,
// which offsets the gathered channels of A by g * k, the stored ones by g * n and the filter by
// g * w_group_off.
template <class T>
struct GpwPixelProblem {
  using Element = T;
  using OperandA = ActOperand<T, true>;
  using OperandB = WeightOperand<T>;
  using Epilogue = PointwiseEpilogue<T>;

  OperandA a;
  OperandB b;
  Epilogue epi;
  int m, n, k, groups;
  int64_t w_group_off;

  CNNKERN_HD int gemm_m() const { return m; }
  CNNKERN_HD int gemm_n() const { return n; }
  CNNKERN_HD int grid_z() const { return groups; }
  CNNKERN_HD KRange k_range(int) const { return KRange{0, k}; }
  CNNKERN_HD OperandA operand_a(int g) const {
    OperandA o = a;
    o.c0 = g * k;
    return o;
  }
  CNNKERN_HD OperandB operand_b(int g) const {
    OperandB o = b;
    o.w += g * w_group_off;
    return o;
  }
  CNNKERN_HD Epilogue epilogue(int g) const {
    Epilogue e = epi;
    e.c0 = g * n;
    return e;
  }
};

// kAFast: pixels-fast gathers for NCHW-like x, channels-fast for NHWC-like. kVec > 1 (16-byte vectors
// along channels) requires unit channel stride and 16-byte alignment of x and w and Cg_in % kVec == 0
// (host-checked).
template <class T, Fast kAFast_, int kVec>
struct GpwFwdProblem : GpwPixelProblem<T> {
  static constexpr Fast kAFast = kAFast_;
  static constexpr int kAVec = kVec;
  static constexpr Fast kBFast = Fast::kK;
  static constexpr int kBVec = kVec;
  static_assert(kVec == 1 || kAFast_ == Fast::kK, "vector gathers run along channels");
  using Base = GpwPixelProblem<T>;
  using typename Base::Epilogue;
  using typename Base::OperandA;
  using typename Base::OperandB;

  __host__ static GpwFwdProblem make(const GpwFwdParams<T>& p, bool out_m_fast) {
    const GpwShape& s = p.s;
    GpwFwdProblem pr;
    pr.m = s.pixels();
    pr.n = s.cg_out;
    pr.k = s.cg_in;
    pr.groups = s.groups;
    const PixelIndex pix(s.h, s.w);
    pr.a = OperandA{p.x, p.xs, nullptr, Strides4{0, 0, 0, 0}, pr.m, s.cg_in, 0, pix, ShuffleMap(s.c_in, 1, 0)};
    pr.b = OperandB{p.w, p.ws.n, p.ws.c, s.cg_out, s.cg_in, ChannelVec{}, 0};
    pr.epi = Epilogue{p.y, p.ys, pix, s.map(), 0, p.bias, p.bias_stride, p.scale, p.shift, p.relu, out_m_fast};
    pr.w_group_off = static_cast<int64_t>(s.cg_out) * p.ws.n;
    return pr;
  }
};

// kAFast: how dy is gathered (pixels-fast for NCHW-like, channels-fast for NHWC-like; scalar, since
// shuffled channels are not contiguous). The filter is read with its input channels (the GEMM columns)
// fast, which is its contiguous dimension.
template <class T, Fast kAFast_>
struct GpwDgradProblem : GpwPixelProblem<T> {
  static constexpr Fast kAFast = kAFast_;
  static constexpr int kAVec = 1;
  static constexpr Fast kBFast = Fast::kRow;
  static constexpr int kBVec = 1;
  using Base = GpwPixelProblem<T>;
  using typename Base::Epilogue;
  using typename Base::OperandA;
  using typename Base::OperandB;

  // The weight scale is indexed by output channel, which is this GEMM's k.
  CNNKERN_HD OperandB operand_b(int g) const {
    OperandB o = Base::operand_b(g);
    o.scale_c0 = g * this->k;
    return o;
  }

  __host__ static GpwDgradProblem make(const GpwDgradParams<T>& p, bool out_m_fast) {
    const GpwShape& s = p.s;
    GpwDgradProblem pr;
    pr.m = s.pixels();
    pr.n = s.cg_in;
    pr.k = s.cg_out;
    pr.groups = s.groups;
    const PixelIndex pix(s.h, s.w);
    const Strides4 os = p.out != nullptr ? p.outs : Strides4{0, 0, 0, 0};
    pr.a = OperandA{p.dy, p.dys, p.out, os, pr.m, s.cg_out, 0, pix, s.map()};
    pr.b = OperandB{p.w, p.ws.c, p.ws.n, s.cg_in, s.cg_out, p.scale, 0};
    pr.epi = Epilogue{p.dx,        p.dxs,       pix,   ShuffleMap(s.c_in, 1, 0), 0, nullptr, 0, ChannelVec{},
                      ChannelVec{}, false,      out_m_fast};
    pr.w_group_off = static_cast<int64_t>(s.cg_out) * p.ws.n;
    return pr;
  }
};

// kFast::kK = pixel-fast gathers (NCHW-like dy/x); kFast::kRow = channel-fast (NHWC-like).
// blockIdx.z = g + groups * split.
template <class T, Fast kFast>
struct GpwWgradProblem {
  using Element = T;
  static constexpr Fast kAFast = kFast;
  static constexpr int kAVec = 1;
  static constexpr Fast kBFast = kFast;
  static constexpr int kBVec = 1;
  using OperandA = ActOperand<T, false>;
  using OperandB = ActOperand<T, false>;
  using Epilogue = GpwWgradEpilogue<T>;

  OperandA a;
  OperandB b;
  Epilogue epi;
  int m, n, k, groups, splits, k_per_split;
  int64_t ws_split_off;

  CNNKERN_HD int gemm_m() const { return m; }
  CNNKERN_HD int gemm_n() const { return n; }
  CNNKERN_HD int grid_z() const { return groups * splits; }
  CNNKERN_HD KRange k_range(int z) const {
    const int begin = (z / groups) * k_per_split;
    const int end = k - begin < k_per_split ? k : begin + k_per_split;
    return KRange{begin, end};
  }
  CNNKERN_HD OperandA operand_a(int z) const {
    OperandA o = a;
    o.c0 = (z % groups) * m;
    return o;
  }
  CNNKERN_HD OperandB operand_b(int z) const {
    OperandB o = b;
    o.c0 = (z % groups) * n;
    return o;
  }
  CNNKERN_HD Epilogue epilogue(int z) const {
    Epilogue e = epi;
    e.c0 = (z % groups) * m;
    e.part += e.c0 * e.ld + (z / groups) * ws_split_off;
    return e;
  }

  __host__ static GpwWgradProblem make(const GpwWgradParams<T>& p) {
    const GpwShape& s = p.s;
    GpwWgradProblem pr;
    pr.m = s.cg_out;
    pr.n = s.cg_in;
    pr.k = s.pixels();
    pr.groups = s.groups;
    pr.splits = p.splits;
    pr.k_per_split = p.k_per_split;
    const PixelIndex pix(s.h, s.w);
    const Strides4 none{0, 0, 0, 0};
    const Strides4 os = p.out != nullptr ? p.outs : none;
    pr.a = OperandA{p.dy, p.dys, p.out, os, pr.k, s.cg_out, 0, pix, s.map()};
    pr.b = OperandB{p.x, p.xs, nullptr, none, pr.k, s.cg_in, 0, pix, ShuffleMap(s.c_in, 1, 0)};
    pr.epi = GpwWgradEpilogue<T>{p.workspace, s.cg_in, p.scale, 0};
    pr.ws_split_off = static_cast<int64_t>(s.c_out) * s.cg_in;
    return pr;
  }
};

// The fixed-order split sum of conv2d's weight gradient, for a 1x1 filter.
template <class T>
__host__ Conv2dWgradReduce<T> gpw_wgrad_reduce(const GpwWgradParams<T>& p) {
  Conv2dWgradParams<T> cp{};
  cp.s.c_out = p.s.c_out;
  cp.s.cg_in = p.s.cg_in;
  cp.s.kh = 1;
  cp.s.kw = 1;
  cp.workspace = p.workspace;
  cp.splits = p.splits;
  cp.dw = p.dw;
  cp.dws = p.dws;
  return Conv2dWgradReduce<T>::make(cp);
}

}  // namespace cnnkern
