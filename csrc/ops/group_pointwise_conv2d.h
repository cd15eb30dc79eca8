// The functional grouped 1x1 conv ops with the fused epilogue and shuffled store
// (cnnkern_cuda::group_pointwise_conv2d and its backward ops): calls through the dispatcher and checked
// output specs. Semantics: those of torch.ops.cnnkern.group_pointwise_conv2d* (cnnkern/ops/
// group_pointwise_conv2d.py): z = conv(x, w) + bias; z = z * scale + shift; relu(z); channel c stored at
// ChannelMap(C_out, shuffle_groups).dest(c). The backward ops read the gradient of the conv's channels at
// ChannelMap(grad_output.size(1), shuffle_groups, channel_offset), masked where `output` (given when the
// epilogue had a ReLU) is not positive, and multiplied by `scale`.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

#include "ops/channel_map.h"
#include "ops/output_spec.h"

namespace cnnkern::ops {

at::Tensor group_pointwise_conv2d(const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                                  const std::optional<at::Tensor>& shift, int64_t groups, int64_t shuffle_groups,
                                  bool relu);
at::Tensor group_pointwise_conv2d_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                                 const std::optional<at::Tensor>& output,
                                                 const std::optional<at::Tensor>& scale, int64_t groups,
                                                 int64_t shuffle_groups, int64_t channel_offset, bool channels_last);
at::Tensor group_pointwise_conv2d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                                  const std::optional<at::Tensor>& output,
                                                  const std::optional<at::Tensor>& scale, int64_t groups,
                                                  int64_t shuffle_groups, int64_t channel_offset,
                                                  c10::SymInt out_channels);

OutputSpec group_pointwise_conv2d_spec(const at::Tensor& input, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                                       const std::optional<at::Tensor>& shift, int64_t groups,
                                       int64_t shuffle_groups);
OutputSpec group_pointwise_conv2d_backward_input_spec(const at::Tensor& grad_output, const at::Tensor& weight,
                                                      const std::optional<at::Tensor>& output,
                                                      const std::optional<at::Tensor>& scale, int64_t groups,
                                                      int64_t shuffle_groups, int64_t channel_offset,
                                                      bool channels_last);
OutputSpec group_pointwise_conv2d_backward_weight_spec(const at::Tensor& grad_output, const at::Tensor& input,
                                                       const std::optional<at::Tensor>& output,
                                                       const std::optional<at::Tensor>& scale, int64_t groups,
                                                       int64_t shuffle_groups, int64_t channel_offset,
                                                       const c10::SymInt& out_channels);

}  // namespace cnnkern::ops
