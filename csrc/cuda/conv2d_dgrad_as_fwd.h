// The input gradient of a stride-1 conv2d as a forward conv2d: when it may be, and which forward.
// Torch-free (a pure function of the shape), so tests/cpp/conv2d_dgrad_as_fwd_test.cu checks it on the CPU.
//
// For stride 1, groups 1, any dilation d and top/left padding p (per dim):
//   grad_in = conv2d_fwd(grad_out, w', top/left padding p' = d*(K-1) - p, dilation d, stride 1)
//   with w'[c][k][r][s] = w[k][c][R-1-r][S-1-s]   (shape [C_in][C_out][R][S])
// because grad_in[c][ih] = sum_{k,r} grad_out[k][ih + p - d*r] * w[k][c][r]; with r = R-1-r' the row read is
// ih - p' + d*r'. Bottom/right padding is implicit in the extents (conv2d_params.cuh): for stride 1 the op's
// p_hi = OH - H - p + d*(K-1), and the forward's is p'_hi = d*(K-1) - p_hi = H - OH + p, so the forward's
// output extent is exactly H. Both p' and p'_hi must be >= 0 (the forward takes no negative padding).
//
// Why only stride 1: a strided dgrad is a forward over grad_out dilated by the stride (zeros between pixels);
// the step-1 dgrad kernel's stride-phase decomposition handles that, the forward kernel does not.
// Why only 16-bit: the sm_90a forward takes fp16 / bf16 only; fp32 keeps the step-1 kernel either way.
// The rest of the sm_90a forward's gates (channels, layouts, env, build, device) are applied by its own
// conv2d_fwd_sm90_why_not on the transformed problem (csrc/cuda/conv2d.cpp), not repeated here.
#pragma once

#include <cstdint>

#include "conv/conv2d_params.cuh"

namespace cnnkern {

// Coordinates including padding and dilation stay below this in the kernels (host::kCoordLimit in
// csrc/cuda/host_common.h, which includes torch; conv2d.cpp static_asserts the two are equal).
inline constexpr int64_t kDgradAsFwdCoordLimit = int64_t{1} << 30;

struct DgradAsFwd {
  const char* why_not;  // nullptr when the dgrad is the forward below; otherwise why not (for explain())
  Conv2dShape fwd;      // x = grad_out, weight = w' ([C_in][C_out][R][S]), y = grad_in; valid when why_not == nullptr

  bool applies() const { return why_not == nullptr; }
};

// s: the dgrad's shape as make_shape builds it (x = grad_in, y = grad_out); elem_bytes: sizeof the element.
inline DgradAsFwd dgrad_as_fwd(const Conv2dShape& s, int elem_bytes) {
  DgradAsFwd plan{nullptr, Conv2dShape{}};
  if (elem_bytes != 2) {
    plan.why_not = "fp32 keeps the step-1 dgrad kernel";
    return plan;
  }
  if (s.groups != 1) {
    plan.why_not = "grouped convolution";
    return plan;
  }
  if (s.stride_h != 1 || s.stride_w != 1) {
    plan.why_not = "stride > 1 (the step-1 dgrad kernel's stride phases)";
    return plan;
  }
  // int64: d*(K-1) of a legal op can reach ~2^31 (each factor < 2^30 after parse_args).
  const int64_t span_h = int64_t{s.dil_h} * (s.kh - 1), span_w = int64_t{s.dil_w} * (s.kw - 1);
  const int64_t pad_h = span_h - s.pad_h, pad_w = span_w - s.pad_w;                  // p'
  const int64_t pad_h_hi = int64_t{s.h} - s.oh + s.pad_h, pad_w_hi = int64_t{s.w} - s.ow + s.pad_w;  // p'_hi
  if (pad_h < 0 || pad_w < 0) {
    plan.why_not = "padding > dilation * (kernel - 1): the equivalent forward would need negative padding";
    return plan;
  }
  if (pad_h_hi < 0 || pad_w_hi < 0) {
    plan.why_not = "bottom/right padding > dilation * (kernel - 1): the equivalent forward would crop";
    return plan;
  }
  // The forward's coordinate bounds (host::check_geometry with in = OH, out = H): grad_out extent + p' + the
  // dilated kernel, and (H + 1) + p'.
  if (int64_t{s.oh} + pad_h + 1 + span_h >= kDgradAsFwdCoordLimit ||
      int64_t{s.ow} + pad_w + 1 + span_w >= kDgradAsFwdCoordLimit ||
      int64_t{s.h} + 1 + pad_h >= kDgradAsFwdCoordLimit || int64_t{s.w} + 1 + pad_w >= kDgradAsFwdCoordLimit) {
    plan.why_not = "the equivalent forward's coordinates exceed 32 bits";
    return plan;
  }
  // The forward reads grad_out (C_out channels, OH x OW) and writes grad_in (C_in channels, H x W).
  Conv2dShape& f = plan.fwd;
  f.n = s.n;
  f.c_in = f.cg_in = s.c_out;
  f.h = s.oh;
  f.w = s.ow;
  f.c_out = f.cg_out = s.c_in;
  f.oh = s.h;
  f.ow = s.w;
  f.kh = s.kh;
  f.kw = s.kw;
  f.groups = 1;
  f.stride_h = f.stride_w = 1;
  f.pad_h = static_cast<int>(pad_h);
  f.pad_w = static_cast<int>(pad_w);
  f.dil_h = s.dil_h;
  f.dil_w = s.dil_w;
  return plan;
}

}  // namespace cnnkern
