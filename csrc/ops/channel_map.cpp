#include "ops/channel_map.h"

#include <ATen/ops/arange.h>
#include <c10/util/Exception.h>

#include "ops/checks.h"
#include "ops/conv2d_geometry.h"

namespace cnnkern::ops {

at::Tensor dest_index(const ChannelMap& map, const c10::SymInt& channels, c10::Device device) {
  // arange(total) viewed (per_group, shuffle_groups) and transposed holds dest(d) at position d.
  const c10::SymInt per_group = map.total / map.shuffle_groups;
  return at::arange(c10::Scalar(map.total), at::TensorOptions().dtype(at::kLong).device(device))
      .view_symint({per_group, map.shuffle_groups})
      .t()
      .reshape({-1})
      .narrow_symint(0, map.offset, channels);
}

void check_shuffle_groups(const c10::SymInt& channels, int64_t groups, const char* what) {
  TORCH_CHECK(groups > 0, "Number of groups to divide channels in must be positive. Value of groups:", groups);
  TORCH_CHECK(channels % groups == 0, "Number of channels must be divisible by groups. Got ", channels, " ", what,
              " and ", groups, " groups.");
}

namespace {

bool epilogue_dtype_ok(at::ScalarType vec, at::ScalarType input) {
  return vec == input || (vec == at::kFloat && (input == at::kHalf || input == at::kBFloat16));
}

void check_epilogue_vector(const char* op, const char* name, const std::optional<at::Tensor>& v,
                           const c10::SymInt& channels, const at::Tensor& like, c10::SymIntArrayRef weight) {
  if (!v.has_value() || !v->defined()) return;
  TORCH_CHECK(v->dim() == 1 && v->sym_size(0) == channels, op, ": expected ", name, " to be 1-dimensional with ",
              channels, " elements (one per output channel of weight ", weight, "), but got ", name, " of size ",
              v->sym_sizes());
  TORCH_CHECK(epilogue_dtype_ok(v->scalar_type(), like.scalar_type()) && v->device() == like.device(), op, ": ",
              name, " (", v->scalar_type(), ", ", v->device(), ") must be on the input's device (", like.device(),
              ") and have the input's dtype (", like.scalar_type(), "), or float32 for float16/bfloat16 input");
}

void check_1x1(const char* op, const at::Tensor& weight, c10::SymIntArrayRef input) {
  TORCH_CHECK(weight.dim() == 4 && weight.sym_size(2) == 1 && weight.sym_size(3) == 1, op,
              ": expected a 1x1 weight of size (C_out, C_in/groups, 1, 1), but got weight of size ",
              weight.sym_sizes(), " for input of size ", input);
}

}  // namespace

void check_group_pointwise(const char* op, const at::Tensor& input, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                           const std::optional<at::Tensor>& shift, int64_t groups) {
  check_same_float(op, {{"input", &input}, {"weight", &weight}, {"bias", opt(bias)}});
  check_4d(op, "input", input);
  check_1x1(op, weight, input.sym_sizes());
  const int64_t unit[2] = {1, 1}, no_pad[4] = {0, 0, 0, 0};
  conv2d_output_size(input.sym_sizes(), weight.sym_sizes(), unit, no_pad, unit, groups);
  check_conv_bias(bias, weight.sym_sizes(), weight.sym_size(0), false);
  check_epilogue_vector(op, "scale", scale, weight.sym_size(0), input, weight.sym_sizes());
  check_epilogue_vector(op, "shift", shift, weight.sym_size(0), input, weight.sym_sizes());
}

ChannelMap check_group_pointwise_backward(const char* op, const at::Tensor& grad_output, const at::Tensor& other,
                                          const char* other_name, const std::optional<at::Tensor>& output,
                                          const std::optional<at::Tensor>& scale, const c10::SymInt& out_channels,
                                          const c10::SymInt& in_channels, int64_t groups, int64_t shuffle_groups,
                                          int64_t channel_offset) {
  check_same_float(op, {{"grad_output", &grad_output}, {other_name, &other}, {"output", opt(output)}});
  check_4d(op, "grad_output", grad_output);
  check_4d(op, other_name, other);
  TORCH_CHECK(groups > 0, "non-positive groups is not supported (got groups=", groups, ")");
  TORCH_CHECK(out_channels % groups == 0 && in_channels % groups == 0, op, ": groups=", groups,
              " must divide the ", in_channels, " input and ", out_channels, " output channels");
  const c10::SymInt total = grad_output.sym_size(1);
  check_shuffle_groups(total, shuffle_groups);
  TORCH_CHECK(channel_offset >= 0 && out_channels + channel_offset <= total, op, ": channels [", channel_offset,
              ", ", out_channels + channel_offset, ") do not fit a grad_output of size ", grad_output.sym_sizes());
  if (output.has_value() && output->defined()) {
    TORCH_CHECK(output->sym_sizes() == grad_output.sym_sizes(), op, ": output ", output->sym_sizes(),
                " and grad_output ", grad_output.sym_sizes(), " must have the same size");
  }
  if (scale.has_value() && scale->defined()) {
    TORCH_CHECK(scale->dim() == 1 && scale->sym_size(0) == out_channels, op, ": expected scale of size [",
                out_channels, "], got ", scale->sym_sizes());
    TORCH_CHECK(epilogue_dtype_ok(scale->scalar_type(), grad_output.scalar_type()) &&
                    scale->device() == grad_output.device(),
                op, ": scale (", scale->scalar_type(), ", ", scale->device(), ") must be on grad_output's device (",
                grad_output.device(), ") and have its dtype (", grad_output.scalar_type(),
                "), or float32 for float16/bfloat16");
  }
  return ChannelMap{total, shuffle_groups, channel_offset};
}

void frozen_epilogue_error(const char* name, const char* op) {
  TORCH_CHECK(false, op, ": ", name,
              " requires grad, but the fused scale/shift epilogue is for inference or frozen BatchNorm and has no "
              "gradient for it; pass ", name, ".detach(), or apply a trainable BatchNorm after an unfused "
              "convolution");
}

}  // namespace cnnkern::ops
