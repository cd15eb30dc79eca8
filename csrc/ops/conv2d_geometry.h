// Shape rules of conv2d (explicit 4-sided padding) and conv_transpose2d, checked as ATen's
// check_shape_forward checks them and shared by every kernel of the functional ops (see ops/checks.h).
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

namespace cnnkern::ops {

using Size4 = std::array<c10::SymInt, 4>;

inline c10::SymIntArrayRef ref(const Size4& s) { return c10::SymIntArrayRef(s.data(), s.size()); }

// stride, dilation: 2 positive values; padding: `n_pad` non-negative values; groups positive.
void check_conv_params(const char* op, at::IntArrayRef stride, at::IntArrayRef padding, int64_t n_pad,
                       at::IntArrayRef dilation, int64_t groups);

// conv2d of an input of size `input` (N, C_in, H, W) with a weight of size `weight` (C_out, C_in/groups,
// kH, kW), padding (top, bottom, left, right): checks channels, groups and kernel against the padded input
// and returns the output size (N, C_out, H_out, W_out).
Size4 conv2d_output_size(c10::SymIntArrayRef input, c10::SymIntArrayRef weight, at::IntArrayRef stride,
                         at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

// conv_transpose2d of an input (N, C_in, H, W) with a weight (C_in, C_out/groups, kH, kW), symmetric
// padding (h, w): returns (N, C_out, H_out, W_out).
Size4 conv_transpose2d_output_size(c10::SymIntArrayRef input, c10::SymIntArrayRef weight, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef output_padding,
                                   at::IntArrayRef dilation, int64_t groups);

// A bias of `channels` elements (the weight's dim 0 for conv2d, dim 1 * groups for transposed).
void check_conv_bias(const std::optional<at::Tensor>& bias, c10::SymIntArrayRef weight, const c10::SymInt& channels,
                     bool transposed);

// ATen runs a forward convolution on an input with a zero batch or zero channels, and rejects any other
// input without elements (e.g. zero height, even if padding would make room).
void check_input_not_empty_except_batch_or_channels(const at::Tensor& input);

// groups == C_in with one input channel per group: the depthwise kernels' problem (any channel multiplier).
inline bool is_depthwise(const c10::SymInt& input_channels, c10::SymIntArrayRef weight, int64_t groups) {
  return input_channels == groups && weight[1] == 1;
}

inline bool symmetric(at::IntArrayRef padding) { return padding[0] == padding[1] && padding[2] == padding[3]; }

}  // namespace cnnkern::ops
