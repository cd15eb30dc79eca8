// The channel permutation behind channel_shuffle, group_pointwise_conv2d and shuffle_cat_pointwise(2), and
// the argument checks those ops share (the C++ side of cnnkern/problem/channel_map.py).
//
// An op's own channel c sits at offset + c of a (possibly concatenated) order of `total` channels, which is
// then shuffled with `shuffle_groups` groups: it is stored at dest(c) = (d % per_group) * shuffle_groups +
// d / per_group, d = offset + c, per_group = total / shuffle_groups.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

namespace cnnkern::ops {

struct ChannelMap {
  c10::SymInt total;
  int64_t shuffle_groups = 1;
  c10::SymInt offset = 0;
};

// dest(c) for c in [0, channels) as an int64 tensor on `device` (computed there: no host-device copy).
at::Tensor dest_index(const ChannelMap& map, const c10::SymInt& channels, c10::Device device);

// F.channel_shuffle's checks and wording; `what` names the channels.
void check_shuffle_groups(const c10::SymInt& channels, int64_t groups, const char* what = "channels");

// A grouped 1x1 conv's operands: F.conv2d's checks (input, weight, bias, groups), a 4-D input and 1x1
// weight, and scale/shift of one element per output channel with the input's dtype (or float32 for
// float16/bfloat16 input: folded BatchNorm parameters).
void check_group_pointwise(const char* op, const at::Tensor& input, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                           const std::optional<at::Tensor>& shift, int64_t groups);

// The backward ops' arguments: grad_output (N, total, H, W) holds this conv's `out_channels` channels at
// ChannelMap(total, shuffle_groups, channel_offset); `output` (the saved forward output, for the ReLU mask)
// matches grad_output; scale has one element per output channel. Returns the map.
ChannelMap check_group_pointwise_backward(const char* op, const at::Tensor& grad_output, const at::Tensor& other,
                                          const char* other_name, const std::optional<at::Tensor>& output,
                                          const std::optional<at::Tensor>& scale, const c10::SymInt& out_channels,
                                          const c10::SymInt& in_channels, int64_t groups, int64_t shuffle_groups,
                                          int64_t channel_offset);

// The message for a scale/shift that requires grad: the fused epilogue is frozen (folded inference BN).
[[noreturn]] void frozen_epilogue_error(const char* name, const char* op);

}  // namespace cnnkern::ops
