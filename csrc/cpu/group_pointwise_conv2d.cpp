// CPU kernels of the functional grouped-pointwise ops, on ATen (see cpu/aten_conv.h for why they exist).
#include <torch/library.h>

#include "cpu/aten_conv.h"
#include "cpu/group_pointwise.h"
#include "ops/group_pointwise_conv2d.h"

namespace cnnkern::cpu {
namespace {

constexpr int64_t kOne[2] = {1, 1};
constexpr int64_t kNoPad[4] = {0, 0, 0, 0};

at::Tensor group_pointwise_conv2d_cpu(const at::Tensor& input, const at::Tensor& weight,
                                      const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                                      const std::optional<at::Tensor>& shift, int64_t groups, int64_t shuffle_groups,
                                      bool relu) {
  const ops::OutputSpec s =
      ops::group_pointwise_conv2d_spec(input, weight, bias, scale, shift, groups, shuffle_groups);
  at::Tensor out = s.allocate(input);
  group_pointwise_store(input, weight, bias, scale, shift, groups, ops::ChannelMap{weight.size(0), shuffle_groups},
                        relu, out);
  return out;
}

at::Tensor group_pointwise_conv2d_backward_input_cpu(const at::Tensor& grad_output, const at::Tensor& weight,
                                                     const std::optional<at::Tensor>& output,
                                                     const std::optional<at::Tensor>& scale, int64_t groups,
                                                     int64_t shuffle_groups, int64_t channel_offset,
                                                     bool channels_last) {
  const ops::OutputSpec s = ops::group_pointwise_conv2d_backward_input_spec(
      grad_output, weight, output, scale, groups, shuffle_groups, channel_offset, channels_last);
  if (s.numel() == 0) return s.allocate(grad_output);
  const ops::ChannelMap map{grad_output.size(1), shuffle_groups, channel_offset};
  const at::Tensor g = group_pointwise_grad_z(grad_output, output, scale, weight.size(0), map);
  return conv2d_input_grad(g, weight, C10_AS_INTARRAYREF_SLOW(ops::ref(s.size)), kOne, kNoPad, kOne, groups)
      .contiguous(s.format);
}

at::Tensor group_pointwise_conv2d_backward_weight_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                                      const std::optional<at::Tensor>& output,
                                                      const std::optional<at::Tensor>& scale, int64_t groups,
                                                      int64_t shuffle_groups, int64_t channel_offset,
                                                      c10::SymInt out_channels) {
  const ops::OutputSpec s = ops::group_pointwise_conv2d_backward_weight_spec(
      grad_output, input, output, scale, groups, shuffle_groups, channel_offset, out_channels);
  if (s.numel() == 0) return s.allocate(input);
  const ops::ChannelMap map{grad_output.size(1), shuffle_groups, channel_offset};
  const at::Tensor g = group_pointwise_grad_z(grad_output, output, scale, out_channels.expect_int(), map);
  return conv2d_weight_grad(g, input, C10_AS_INTARRAYREF_SLOW(ops::ref(s.size)), kOne, kNoPad, kOne, groups)
      .contiguous(s.format);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, CPU, m) {
  m.impl("group_pointwise_conv2d", &group_pointwise_conv2d_cpu);
  m.impl("group_pointwise_conv2d_backward_input", &group_pointwise_conv2d_backward_input_cpu);
  m.impl("group_pointwise_conv2d_backward_weight", &group_pointwise_conv2d_backward_weight_cpu);
}

}  // namespace cnnkern::cpu
