// CUDA kernels of the functional grouped-pointwise ops: allocate what the op's spec describes and run the
// out-variant host code on it (current stream).
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cuda/host_ops.h"
#include "ops/group_pointwise_conv2d.h"

namespace cnnkern::cuda {
namespace {

at::Tensor group_pointwise_conv2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                                       const std::optional<at::Tensor>& shift, int64_t groups,
                                       int64_t shuffle_groups, bool relu) {
  const ops::OutputSpec s =
      ops::group_pointwise_conv2d_spec(input, weight, bias, scale, shift, groups, shuffle_groups);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor out = s.allocate(input);
  group_pointwise_conv2d_fwd(input, weight, bias, scale, shift, out, groups, shuffle_groups, 0, relu);
  return out;
}

at::Tensor group_pointwise_conv2d_backward_input_cuda(const at::Tensor& grad_output, const at::Tensor& weight,
                                                      const std::optional<at::Tensor>& output,
                                                      const std::optional<at::Tensor>& scale, int64_t groups,
                                                      int64_t shuffle_groups, int64_t channel_offset,
                                                      bool channels_last) {
  const ops::OutputSpec s = ops::group_pointwise_conv2d_backward_input_spec(
      grad_output, weight, output, scale, groups, shuffle_groups, channel_offset, channels_last);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  at::Tensor grad_in = s.allocate(grad_output);
  group_pointwise_conv2d_bwd_input(grad_output, weight, output, scale, grad_in, groups, shuffle_groups,
                                   channel_offset);
  return grad_in;
}

at::Tensor group_pointwise_conv2d_backward_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                                       const std::optional<at::Tensor>& output,
                                                       const std::optional<at::Tensor>& scale, int64_t groups,
                                                       int64_t shuffle_groups, int64_t channel_offset,
                                                       c10::SymInt out_channels) {
  const ops::OutputSpec s = ops::group_pointwise_conv2d_backward_weight_spec(
      grad_output, input, output, scale, groups, shuffle_groups, channel_offset, out_channels);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor grad_w = s.allocate(input);
  group_pointwise_conv2d_bwd_weight(grad_output, input, output, scale, grad_w, groups, shuffle_groups,
                                    channel_offset);
  return grad_w;
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, CUDA, m) {
  m.impl("group_pointwise_conv2d", &group_pointwise_conv2d_cuda);
  m.impl("group_pointwise_conv2d_backward_input", &group_pointwise_conv2d_backward_input_cuda);
  m.impl("group_pointwise_conv2d_backward_weight", &group_pointwise_conv2d_backward_weight_cuda);
}

}  // namespace cnnkern::cuda
