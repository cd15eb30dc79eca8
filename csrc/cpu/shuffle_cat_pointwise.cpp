// CPU kernels of the shuffled-concat ops, on ATen (see cpu/aten_conv.h for why they exist).
#include <torch/library.h>

#include "cpu/group_pointwise.h"
#include "ops/shuffle_cat_pointwise.h"

namespace cnnkern::cpu {
namespace {

at::Tensor shuffle_cat_pointwise_cpu(const at::Tensor& passthrough, const at::Tensor& input,
                                     const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                     const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                     int64_t groups, int64_t shuffle_groups, bool relu) {
  at::Tensor out = ops::shuffle_cat_pointwise_spec(passthrough, input, weight, bias, scale, shift, groups,
                                                   shuffle_groups)
                       .allocate(input);
  const int64_t total = out.size(1), cp = passthrough.size(1);
  channel_map(passthrough, out, ops::ChannelMap{total, shuffle_groups, 0}, /*scatter=*/true);
  group_pointwise_store(input, weight, bias, scale, shift, groups, ops::ChannelMap{total, shuffle_groups, cp}, relu,
                        out);
  return out;
}

at::Tensor shuffle_cat_pointwise2_cpu(const at::Tensor& input1, const at::Tensor& weight1,
                                      const std::optional<at::Tensor>& bias1, const std::optional<at::Tensor>& scale1,
                                      const std::optional<at::Tensor>& shift1, const at::Tensor& input2,
                                      const at::Tensor& weight2, const std::optional<at::Tensor>& bias2,
                                      const std::optional<at::Tensor>& scale2,
                                      const std::optional<at::Tensor>& shift2, int64_t groups,
                                      int64_t shuffle_groups, bool relu) {
  at::Tensor out = ops::shuffle_cat_pointwise2_spec(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2,
                                                    scale2, shift2, groups, shuffle_groups)
                       .allocate(input2);
  const int64_t total = out.size(1), c1 = weight1.size(0);
  group_pointwise_store(input1, weight1, bias1, scale1, shift1, groups, ops::ChannelMap{total, shuffle_groups, 0},
                        relu, out);
  group_pointwise_store(input2, weight2, bias2, scale2, shift2, groups, ops::ChannelMap{total, shuffle_groups, c1},
                        relu, out);
  return out;
}

at::Tensor shuffle_cat_pointwise_backward_passthrough_cpu(const at::Tensor& grad_output, c10::SymInt channels,
                                                          int64_t shuffle_groups, bool channels_last) {
  at::Tensor grad = ops::shuffle_cat_pointwise_backward_passthrough_spec(grad_output, channels, shuffle_groups,
                                                                         channels_last)
                        .allocate(grad_output);
  channel_map(grad_output, grad, ops::ChannelMap{grad_output.size(1), shuffle_groups, 0}, /*scatter=*/false);
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, CPU, m) {
  m.impl("shuffle_cat_pointwise", &shuffle_cat_pointwise_cpu);
  m.impl("shuffle_cat_pointwise2", &shuffle_cat_pointwise2_cpu);
  m.impl("shuffle_cat_pointwise_backward_passthrough", &shuffle_cat_pointwise_backward_passthrough_cpu);
}

}  // namespace cnnkern::cpu
