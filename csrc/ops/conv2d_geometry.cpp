#include "ops/conv2d_geometry.h"

#include <c10/util/Exception.h>

namespace cnnkern::ops {

void check_conv_params(const char* op, at::IntArrayRef stride, at::IntArrayRef padding, int64_t n_pad,
                       at::IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK(stride.size() == 2 && dilation.size() == 2 && static_cast<int64_t>(padding.size()) == n_pad, op,
              ": expected stride and dilation of 2 values and padding of ", n_pad, ", but got stride=", stride,
              ", padding=", padding, ", dilation=", dilation);
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0, "non-positive stride is not supported (got stride=", stride, ")");
  for (int64_t p : padding) {
    TORCH_CHECK(p >= 0, "negative padding is not supported (got padding=", padding, ")");
  }
  TORCH_CHECK(dilation[0] > 0 && dilation[1] > 0, "dilation should be greater than zero (got dilation=", dilation,
              ")");
  TORCH_CHECK(groups > 0, "non-positive groups is not supported (got groups=", groups, ")");
}

namespace {

void check_ranks(const char* op, c10::SymIntArrayRef input, c10::SymIntArrayRef weight, const char* layout) {
  TORCH_CHECK(input.size() == 4, op, ": expected a 4-D (N, C, H, W) input, but got input of size ", input);
  TORCH_CHECK(weight.size() == 4, op, ": expected a 4-D weight ", layout, ", but got weight of size ", weight);
}

// ATen's checks on weight dim 0, shared by conv2d and the transposed conv.
void check_weight_groups(const char* op, c10::SymIntArrayRef weight, int64_t groups) {
  TORCH_CHECK(weight[0] >= groups, "Given groups=", groups, ", expected weight to be at least ", groups,
              " at dimension 0, but got weight of size ", weight, " instead");
  TORCH_CHECK(weight[0] % groups == 0, "Given groups=", groups, ", expected weight to be divisible by ", groups,
              " at dimension 0, but got weight of size ", weight, " instead");
  TORCH_CHECK(weight[2] > 0 && weight[3] > 0, op, ": kernel size must be positive, but got weight of size ",
              weight);
}

}  // namespace

Size4 conv2d_output_size(c10::SymIntArrayRef input, c10::SymIntArrayRef weight, at::IntArrayRef stride,
                         at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  constexpr const char* op = "conv2d";
  check_ranks(op, input, weight, "(C_out, C_in/groups, kH, kW)");
  check_conv_params(op, stride, padding, 4, dilation, groups);
  check_weight_groups(op, weight, groups);
  TORCH_CHECK(input[1] == weight[1] * groups, "Given groups=", groups, ", weight of size ", weight,
              ", expected input", input, " to have ", weight[1] * groups, " channels, but got ", input[1],
              " channels instead");
  const c10::SymInt padded_h = input[2] + padding[0] + padding[1];
  const c10::SymInt padded_w = input[3] + padding[2] + padding[3];
  const c10::SymInt kh = (weight[2] - 1) * dilation[0] + 1;
  const c10::SymInt kw = (weight[3] - 1) * dilation[1] + 1;
  TORCH_CHECK(padded_h >= kh && padded_w >= kw, "Calculated padded input size per channel: (", padded_h, " x ",
              padded_w, "). Kernel size: (", kh, " x ", kw, "). Kernel size can't be greater than actual input size");
  return {input[0], weight[0], (padded_h - kh) / stride[0] + 1, (padded_w - kw) / stride[1] + 1};
}

Size4 conv_transpose2d_output_size(c10::SymIntArrayRef input, c10::SymIntArrayRef weight, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef output_padding,
                                   at::IntArrayRef dilation, int64_t groups) {
  constexpr const char* op = "conv_transpose2d";
  check_ranks(op, input, weight, "(C_in, C_out/groups, kH, kW)");
  check_conv_params(op, stride, padding, 2, dilation, groups);
  TORCH_CHECK(output_padding.size() == 2, op, ": expected output_padding of 2 values, but got ", output_padding);
  TORCH_CHECK(output_padding[0] >= 0 && output_padding[1] >= 0,
              "negative output_padding is not supported (got output_padding=", output_padding, ")");
  check_weight_groups(op, weight, groups);
  TORCH_CHECK(input[1] == weight[0], "Given transposed=1, weight of size ", weight, ", expected input", input,
              " to have ", weight[0], " channels, but got ", input[1], " channels instead");
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(output_padding[i] < stride[i] || output_padding[i] < dilation[i],
                "output padding must be smaller than either stride or dilation, but got output_padding_height: ",
                output_padding[0], " output_padding_width: ", output_padding[1], " stride_height: ", stride[0],
                " stride_width: ", stride[1], " dilation_height: ", dilation[0], " dilation_width: ", dilation[1]);
  }
  const c10::SymInt oh =
      (input[2] - 1) * stride[0] - 2 * padding[0] + (weight[2] - 1) * dilation[0] + output_padding[0] + 1;
  const c10::SymInt ow =
      (input[3] - 1) * stride[1] - 2 * padding[1] + (weight[3] - 1) * dilation[1] + output_padding[1] + 1;
  TORCH_CHECK(oh > 0 && ow > 0, "Given input size per channel: (", input[2], " x ", input[3],
              "). Calculated output size per channel: (", oh, " x ", ow, "). Output size is too small");
  return {input[0], weight[1] * groups, oh, ow};
}

void check_conv_bias(const std::optional<at::Tensor>& bias, c10::SymIntArrayRef weight, const c10::SymInt& channels,
                     bool transposed) {
  if (!bias.has_value() || !bias->defined()) return;
  TORCH_CHECK(bias->dim() == 1 && bias->sym_size(0) == channels, transposed ? "Given transposed=1, " : "Given ",
              "weight of size ", weight, ", expected bias to be 1-dimensional with ", channels,
              " elements, but got bias of size ", bias->sym_sizes(), " instead");
}

void check_input_not_empty_except_batch_or_channels(const at::Tensor& input) {
  if (input.sym_size(0) == 0 || input.sym_size(1) == 0) return;
  TORCH_CHECK(input.sym_numel() != 0, "Only zero batch or zero channel inputs are supported, but got input shape: ",
              input.sym_sizes());
}

}  // namespace cnnkern::ops
