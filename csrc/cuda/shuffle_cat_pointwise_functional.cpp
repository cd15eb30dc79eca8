// CUDA kernels of the shuffled-concat ops: one output, every branch written straight into its interleaved
// channels (a channel-map copy for the passthrough, the grouped-pointwise kernel's shuffled store for a conv).
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cuda/host_ops.h"
#include "ops/shuffle_cat_pointwise.h"

namespace cnnkern::cuda {
namespace {

at::Tensor shuffle_cat_pointwise_cuda(const at::Tensor& passthrough, const at::Tensor& input,
                                      const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                      const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                      int64_t groups, int64_t shuffle_groups, bool relu) {
  const ops::OutputSpec s =
      ops::shuffle_cat_pointwise_spec(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor out = s.allocate(input);
  // The passthrough rides in the conv's small-K kernel (one pass, whole 16-byte stores) where it can;
  // otherwise it is written first and the conv's words of it are overwritten.
  group_pointwise_conv2d_fwd_cat(passthrough, input, weight, bias, scale, shift, out, groups, shuffle_groups,
                                 passthrough.size(1), relu);
  return out;
}

at::Tensor shuffle_cat_pointwise2_cuda(const at::Tensor& input1, const at::Tensor& weight1,
                                       const std::optional<at::Tensor>& bias1, const std::optional<at::Tensor>& scale1,
                                       const std::optional<at::Tensor>& shift1, const at::Tensor& input2,
                                       const at::Tensor& weight2, const std::optional<at::Tensor>& bias2,
                                       const std::optional<at::Tensor>& scale2,
                                       const std::optional<at::Tensor>& shift2, int64_t groups,
                                       int64_t shuffle_groups, bool relu) {
  const ops::OutputSpec s = ops::shuffle_cat_pointwise2_spec(input1, weight1, bias1, scale1, shift1, input2, weight2,
                                                             bias2, scale2, shift2, groups, shuffle_groups);
  const c10::cuda::CUDAGuard guard(input2.device());
  at::Tensor out = s.allocate(input2);
  group_pointwise_conv2d_fwd(input1, weight1, bias1, scale1, shift1, out, groups, shuffle_groups, 0, relu);
  group_pointwise_conv2d_fwd(input2, weight2, bias2, scale2, shift2, out, groups, shuffle_groups, weight1.size(0),
                             relu);
  return out;
}

at::Tensor shuffle_cat_pointwise_backward_passthrough_cuda(const at::Tensor& grad_output, c10::SymInt channels,
                                                           int64_t shuffle_groups, bool channels_last) {
  const ops::OutputSpec s =
      ops::shuffle_cat_pointwise_backward_passthrough_spec(grad_output, channels, shuffle_groups, channels_last);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  at::Tensor grad = s.allocate(grad_output);
  channel_map(grad_output, grad, shuffle_groups, 0, /*scatter=*/false);
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, CUDA, m) {
  m.impl("shuffle_cat_pointwise", &shuffle_cat_pointwise_cuda);
  m.impl("shuffle_cat_pointwise2", &shuffle_cat_pointwise2_cuda);
  m.impl("shuffle_cat_pointwise_backward_passthrough", &shuffle_cat_pointwise_backward_passthrough_cuda);
}

}  // namespace cnnkern::cuda
