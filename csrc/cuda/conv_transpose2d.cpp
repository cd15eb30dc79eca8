// Host side of cnnkern_cuda::conv_transpose2d_fwd. A transposed conv is the input gradient of its
// "equivalent conv2d" (input = out, output = x, same weight, stride, dilation, groups and top/left
// padding), so it runs the stride-phase dgrad kernel (kernels/conv/conv2d_dgrad.cuh) with the bias
// added in its epilogue: one launch, every output element written once, no zeros inserted. With
// CNNKERN_SM90_WGMMA=1 on sm_90 it runs as the sm_90a forward kernel instead, one launch per stride phase
// (csrc/cuda/conv2d_dgrad_sm90.h), where that kernel's gates hold.
// Checks and messages are in the transposed conv's own terms (x, weight, out).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>

#include <ATen/core/Tensor.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include "cuda/conv2d_dgrad_sm90.h"
#include "cuda/conv2d_launch.h"
#include "cuda/host_common.h"
#include "cuda/host_ops.h"

namespace cnnkern {
namespace {

using namespace host;

constexpr const char* kOp = "cnnkern conv_transpose2d_fwd";
// GEMM indices are int32 in the kernels (with up to a tile of overshoot).
constexpr int64_t kIndexLimit = std::numeric_limits<int32_t>::max() - 4096;
constexpr int64_t kGridZLimit = 65535;

// x (N, C_in, H, W), weight (C_in, C_out/groups, KH, KW), out (N, C_out, H_out, W_out). Any H_out works
// for the gather (rows past the reach of x get the bias alone), so out's extent stands for
// output_padding; returns the equivalent conv2d's shape.
Conv2dShape make_shape(const at::Tensor& x, const at::Tensor& w, const at::Tensor& out, const ConvArgs& a) {
  const int64_t n = x.size(0), c_in = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t w_in = w.size(0), cg_out = w.size(1), kh = w.size(2), kw = w.size(3);
  const int64_t g = a.groups, c_out = out.size(1), oh = out.size(2), ow = out.size(3);
  TORCH_CHECK(kh > 0 && kw > 0, kOp, ": kernel size must be positive, got weight shape ", w.sizes());
  TORCH_CHECK(w_in == c_in, kOp, ": weight shape ", w.sizes(), " (C_in, C_out/groups, kH, kW) expects ", w_in,
              " input channels but x shape ", x.sizes(), " has ", c_in);
  TORCH_CHECK(c_in % g == 0, kOp, ": x has ", c_in, " channels, not divisible by groups=", g);
  TORCH_CHECK(out.size(0) == n && c_out == cg_out * g, kOp, ": out shape ", out.sizes(), " must be (N=", n,
              ", C_out=", cg_out * g, ", H_out, W_out) for x shape ", x.sizes(), ", weight shape ", w.sizes(),
              " and groups=", g, " (", cg_out, " output channels per group)");
  const int64_t k[2] = {kh, kw}, in[2] = {h, wd}, out_hw[2] = {oh, ow};
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(out_hw[i] + a.pad[i] + 1 + a.dil[i] * (k[i] - 1) < kCoordLimit &&
                    (in[i] + 1) * a.stride[i] + a.pad[i] < kCoordLimit,
                kOp, ": x shape ", x.sizes(), " / out shape ", out.sizes(), " too large for 32-bit coordinates");
  }
  TORCH_CHECK(n * oh * ow <= kIndexLimit && n * h * wd <= kIndexLimit, kOp, ": N*H*W = ", n * h * wd,
              " / N*H_out*W_out = ", n * oh * ow, " exceed the 32-bit pixel index limit; split the batch");
  TORCH_CHECK(c_in <= kIndexLimit && c_out <= kIndexLimit && kh * kw * std::max(c_in / g, cg_out) <= kIndexLimit &&
                  c_in * kh * kw * cg_out <= kIndexLimit,
              kOp, ": filter too large for 32-bit indexing, weight shape ", w.sizes());
  TORCH_CHECK((cg_out + 63) / 64 <= kGridZLimit, kOp, ": too many output channels per group, weight shape ",
              w.sizes());
  TORCH_CHECK(g * a.stride[0] * a.stride[1] <= kGridZLimit, kOp, ": groups=", g, " times the stride phases ",
              a.stride[0], "x", a.stride[1], " exceeds the grid limit ", kGridZLimit);

  auto i = [](int64_t v) { return static_cast<int>(v); };
  return Conv2dShape{i(n),    i(c_out),       i(oh),          i(ow),       i(c_in),     i(h),
                     i(wd),   i(kh),          i(kw),          i(g),        i(cg_out),   i(c_in / g),
                     i(a.stride[0]), i(a.stride[1]), i(a.pad[0]), i(a.pad[1]), i(a.dil[0]), i(a.dil[1])};
}

}  // namespace

// ---- op (declared in cuda/host_ops.h) ------------------------------------------------------------

namespace cuda {

using namespace host;

void conv_transpose2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                          const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation, int64_t groups) {
  const ConvArgs a = parse_args(kOp, stride, padding, dilation, groups);
  check_tensor(kOp, "x", x, "x", x);
  check_tensor(kOp, "weight", w, "x", x);
  check_tensor(kOp, "out", out, "x", x);
  check_dtype_tensor_cores(kOp, x);
  const bool has_bias = check_bias(kOp, bias, out.size(1), x);
  const Conv2dShape s = make_shape(x, w, out, a);
  check_output(kOp, "out", out, {x, w, has_bias ? *bias : at::Tensor()});

  c10::cuda::CUDAGuard guard(x.device());
  if (out.numel() == 0) return;
  if (x.numel() == 0 || w.numel() == 0) {  // no input channels
    fill_bias_or_zero(out, bias);
    return;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch("cnnkern conv_transpose2d", x.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    // The sm_90a forward kernel, one launch per stride phase (off by default: CNNKERN_SM90_WGMMA=1).
    if (dgrad_on_sm90_fwd<T>(x, w, out, s, bias, stream)) return;
    constexpr int64_t V = 16 / sizeof(T);
    GatherMap map = GatherMap::kPixelFast;
    if (channels_fast(x)) {
      map = (s.cg_out % V == 0 && vec_ok(x, V)) ? GatherMap::kChannelVec : GatherMap::kChannelFast;
    }
    const Conv2dDgradParams<T> p{s,
                                 in_ptr<T>(x),
                                 strides_of(x),
                                 in_ptr<T>(w),
                                 strides_of(w),
                                 out_ptr<T>(out),
                                 strides_of(out),
                                 has_bias ? in_ptr<T>(*bias) : nullptr,
                                 has_bias ? bias->stride(0) : 0};
    launch_conv2d_dgrad<T>(p, map, !channels_fast(out), stream);
  });
}

}  // namespace cuda

// The out-variant op: out preallocated by the caller (any strides), padding (top, left) of the
// equivalent conv2d; out's size stands for output_padding.
TORCH_LIBRARY_FRAGMENT(cnnkern_cuda, m) {
  m.def(
      "conv_transpose2d_fwd(Tensor x, Tensor w, Tensor? bias, Tensor(a!) out, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups) -> ()");
}

TORCH_LIBRARY_IMPL(cnnkern_cuda, CUDA, m) { m.impl("conv_transpose2d_fwd", &cuda::conv_transpose2d_fwd); }

}  // namespace cnnkern
