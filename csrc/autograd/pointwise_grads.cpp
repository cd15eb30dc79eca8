#include "autograd/pointwise_grads.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include "ops/group_pointwise_conv2d.h"

namespace cnnkern::autograd {

namespace {

// scale is fp32 with fp16/bf16 gradients (folded BatchNorm): multiply in fp32 and round once.
at::Tensor times_scale(const at::Tensor& t, const at::Tensor& scale, bool per_channel_4d) {
  const at::ScalarType acc = t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor s = per_channel_4d ? scale.to(acc).view({1, -1, 1, 1}) : scale.to(acc);
  return (t.to(acc) * s).to(t.scalar_type());
}

}  // namespace

void check_frozen(const char* op,
                  std::initializer_list<std::pair<const char*, const std::optional<at::Tensor>*>> epilogue) {
  if (!at::GradMode::is_enabled()) return;
  for (const auto& [name, t] : epilogue) {
    if (t->has_value() && (*t)->defined() && (*t)->requires_grad()) ops::frozen_epilogue_error(name, op);
  }
}

PointwiseGrads pointwise_grads(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight,
                               const std::optional<at::Tensor>& output, const std::optional<at::Tensor>& scale,
                               int64_t groups, const ops::ChannelMap& map, const c10::SymInt& out_channels,
                               bool need_input, bool need_weight, bool need_bias, bool input_channels_last) {
  PointwiseGrads g;
  const int64_t offset = map.offset.guard_int(__FILE__, __LINE__);
  if (need_input) {
    g.input = ops::group_pointwise_conv2d_backward_input(grad, weight, output, scale, groups, map.shuffle_groups,
                                                         offset, input_channels_last);
  }
  if (need_weight) {
    g.weight = ops::group_pointwise_conv2d_backward_weight(grad, input, output, scale, groups, map.shuffle_groups,
                                                           offset, out_channels);
  }
  if (need_bias) {
    const bool relu = output.has_value() && output->defined();
    const at::Tensor masked = relu ? at::where(*output > 0, grad, 0) : grad;
    g.bias = masked.sum({0, 2, 3}).index_select(0, ops::dest_index(map, out_channels, grad.device()));
    if (scale.has_value() && scale->defined()) g.bias = times_scale(g.bias, *scale, false);
  }
  return g;
}

at::Tensor scatter_to_grad_output(const at::Tensor& t, const std::optional<at::Tensor>& output,
                                  const std::optional<at::Tensor>& scale, const ops::ChannelMap& map,
                                  c10::SymIntArrayRef grad_output_size) {
  const at::Tensor dest = ops::dest_index(map, t.sym_size(1), t.device());
  at::Tensor g = scale.has_value() && scale->defined() ? times_scale(t, *scale, true) : t;
  if (output.has_value() && output->defined()) g = at::where(output->index_select(1, dest) > 0, g, 0);
  return at::zeros_symint(grad_output_size, t.options()).index_copy(1, dest, g);
}

}  // namespace cnnkern::autograd
