// The functional conv2d ops (cnnkern_cuda::conv2d, conv2d_backward_input, conv2d_backward_weight): calls
// through the dispatcher (what the autograd formulas use, so that they are differentiable themselves) and
// each op's checked output spec (what every kernel of the op allocates). Semantics: those of
// torch.ops.cnnkern.conv2d and its backward ops, padding as 4 explicit sides (top, bottom, left, right).
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

#include "ops/output_spec.h"

namespace cnnkern::ops {

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);
at::Tensor conv2d_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                 c10::SymIntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                 at::IntArrayRef dilation, int64_t groups, bool channels_last);
at::Tensor conv2d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                  c10::SymIntArrayRef weight_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                  at::IntArrayRef dilation, int64_t groups, bool channels_last);

// Output specs. A conv2d with no input channels returns (N, 0, H_out, W_out), as ATen does.
OutputSpec conv2d_spec(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);
OutputSpec conv2d_backward_input_spec(const at::Tensor& grad_output, const at::Tensor& weight,
                                      c10::SymIntArrayRef input_size, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                      bool channels_last);
OutputSpec conv2d_backward_weight_spec(const at::Tensor& grad_output, const at::Tensor& input,
                                       c10::SymIntArrayRef weight_size, at::IntArrayRef stride,
                                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                       bool channels_last);

}  // namespace cnnkern::ops
