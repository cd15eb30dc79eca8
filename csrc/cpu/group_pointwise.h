// The grouped-pointwise ops' math on ATen, as cnnkern/reference/group_pointwise_conv2d.py spells it, for the
// CPU kernels of group_pointwise_conv2d and the shuffled-concat ops (see cpu/aten_conv.h for why they exist).
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

#include "ops/channel_map.h"

namespace cnnkern::cpu {

// out[:, dest(c)] = epilogue(conv(input, weight) + bias)[:, c]: scale, shift and ReLU applied on an fp32
// accumulator (fp64 for fp64 input) and rounded once, as the kernels do.
void group_pointwise_store(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                           int64_t groups, const ops::ChannelMap& map, bool relu, const at::Tensor& out);

// The gradient with respect to the conv's own output (before the epilogue), in its channel order: grad_output
// at dest(c), zero where `output` (if given) is not positive, times scale (if given).
at::Tensor group_pointwise_grad_z(const at::Tensor& grad_output, const std::optional<at::Tensor>& output,
                                  const std::optional<at::Tensor>& scale, int64_t out_channels,
                                  const ops::ChannelMap& map);

// scatter: dst[:, dest(c)] = src[:, c]; gather: dst[:, c] = src[:, dest(c)].
void channel_map(const at::Tensor& src, const at::Tensor& dst, const ops::ChannelMap& map, bool scatter);

}  // namespace cnnkern::cpu
