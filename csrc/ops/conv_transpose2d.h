// The functional cnnkern_cuda::conv_transpose2d (F.conv_transpose2d's semantics, weight (C_in, C_out/groups,
// kH, kW)): the call through the dispatcher and its checked output spec. Its gradients are conv2d ops.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

#include "ops/output_spec.h"

namespace cnnkern::ops {

at::Tensor conv_transpose2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
                            at::IntArrayRef dilation, int64_t groups);

OutputSpec conv_transpose2d_spec(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef output_padding, at::IntArrayRef dilation,
                                 int64_t groups);

// The equivalent conv2d (input = the transposed conv's output y, output = its input x) has top/left padding
// `padding` and bottom/right padding padding - output_padding, which may be negative. conv2d takes no
// negative padding; any bottom padding in [p - op, p - op + stride - 1] gives the same conv2d output size,
// so a non-negative one is used where it exists, else y's rows past the reach of every input are cropped.
struct EquivalentConv2d {
  int64_t padding[4];       // (top, bottom, left, right), all >= 0
  c10::SymInt keep[2];      // the rows / columns of y the equivalent conv2d reads
  bool cropped;             // keep is smaller than y's extent
};
EquivalentConv2d equivalent_conv2d(const c10::SymInt& out_h, const c10::SymInt& out_w, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef output_padding);

}  // namespace cnnkern::ops
