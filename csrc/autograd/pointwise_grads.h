// Gradient formulas shared by the autograd of group_pointwise_conv2d and the shuffled-concat ops (their
// pointwise branches), and by the double backward of the grouped-pointwise backward ops.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <utility>

#include <ATen/core/Tensor.h>

#include "ops/channel_map.h"

namespace cnnkern::autograd {

// The fused scale/shift is folded inference BatchNorm, without a gradient of its own: with grad mode on, a
// scale or shift that requires grad is an error (named), as in the Python ops.
void check_frozen(const char* op,
                  std::initializer_list<std::pair<const char*, const std::optional<at::Tensor>*>> epilogue);

struct PointwiseGrads {
  at::Tensor input, weight, bias;
};

// (grad_input, grad_weight, grad_bias) of one pointwise conv whose channels sit at `map` of `grad`, each
// computed only if asked for. `output` is the saved (whole) output when the epilogue had a ReLU, else absent.
PointwiseGrads pointwise_grads(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight,
                               const std::optional<at::Tensor>& output, const std::optional<at::Tensor>& scale,
                               int64_t groups, const ops::ChannelMap& map, const c10::SymInt& out_channels,
                               bool need_input, bool need_weight, bool need_bias, bool input_channels_last);

// The adjoint of the backward ops' read of grad_output: `t` (the conv's own channels) times scale, zero
// where `output` is not positive, scattered to `map`'s channels of a zero tensor of size `grad_output_size`.
at::Tensor scatter_to_grad_output(const at::Tensor& t, const std::optional<at::Tensor>& output,
                                  const std::optional<at::Tensor>& scale, const ops::ChannelMap& map,
                                  c10::SymIntArrayRef grad_output_size);

}  // namespace cnnkern::autograd
