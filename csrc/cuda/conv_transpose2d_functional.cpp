// CUDA kernel of the functional conv_transpose2d: the input-grad kernel of the equivalent conv2d with the bias
// fused (conv_transpose2d_fwd), or, for a weight of one output channel per group (depthwise-transposed), the
// depthwise input-grad kernel followed by a bias add, as cnnkern/ops/_cuda.py runs them.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cuda/host_ops.h"
#include "ops/conv_transpose2d.h"

namespace cnnkern::cuda {
namespace {

at::Tensor conv_transpose2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef output_padding, at::IntArrayRef dilation,
                                 int64_t groups) {
  const ops::OutputSpec s =
      ops::conv_transpose2d_spec(input, weight, bias, stride, padding, output_padding, dilation, groups);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor out = s.allocate(input);
  if (s.numel() == 0) return out;
  if (weight.size(1) != 1) {
    conv_transpose2d_fwd(input, weight, bias, out, stride, padding, dilation, groups);
    return out;
  }
  // The depthwise input-grad kernel checks its geometry as a conv2d's: output rows past the reach of every
  // input (output_padding - padding >= stride, possible when dilation > stride) get zeros (+ bias) here.
  const ops::EquivalentConv2d e = ops::equivalent_conv2d(out.size(2), out.size(3), stride, padding, output_padding);
  at::Tensor reached = out;
  if (e.cropped) {
    out.zero_();
    reached = out.narrow(2, 0, e.keep[0].expect_int()).narrow(3, 0, e.keep[1].expect_int());
  }
  depthwise_conv2d_bwd_input(input, weight, reached, stride, padding, dilation);
  if (bias.has_value() && bias->defined()) out.add_(bias->view({1, -1, 1, 1}));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, CUDA, m) { m.impl("conv_transpose2d", &conv_transpose2d_cuda); }

}  // namespace cnnkern::cuda
