// Schemas of the functional grouped-pointwise ops, their output specs and Meta kernels. The other kernels:
// CPU in csrc/cpu/group_pointwise_conv2d.cpp, CUDA in csrc/cuda/group_pointwise_conv2d_functional.cpp,
// Autograd in csrc/autograd/group_pointwise_conv2d.cpp.
#include "ops/group_pointwise_conv2d.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "ops/checks.h"

namespace cnnkern::ops {

OutputSpec group_pointwise_conv2d_spec(const at::Tensor& input, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                                       const std::optional<at::Tensor>& shift, int64_t groups,
                                       int64_t shuffle_groups) {
  check_group_pointwise("group_pointwise_conv2d", input, weight, bias, scale, shift, groups);
  check_shuffle_groups(weight.sym_size(0), shuffle_groups);
  return {{input.sym_size(0), weight.sym_size(0), input.sym_size(2), input.sym_size(3)},
          conv_memory_format(input, weight)};
}

OutputSpec group_pointwise_conv2d_backward_input_spec(const at::Tensor& grad_output, const at::Tensor& weight,
                                                      const std::optional<at::Tensor>& output,
                                                      const std::optional<at::Tensor>& scale, int64_t groups,
                                                      int64_t shuffle_groups, int64_t channel_offset,
                                                      bool channels_last) {
  constexpr const char* op = "group_pointwise_conv2d_backward_input";
  check_group_pointwise_backward(op, grad_output, weight, "weight", output, scale, weight.sym_size(0),
                                 weight.sym_size(1) * groups, groups, shuffle_groups, channel_offset);
  TORCH_CHECK(weight.sym_size(2) == 1 && weight.sym_size(3) == 1, op,
              ": expected a 1x1 weight of size (C_out, C_in/groups, 1, 1), but got weight of size ",
              weight.sym_sizes());
  return {{grad_output.sym_size(0), weight.sym_size(1) * groups, grad_output.sym_size(2), grad_output.sym_size(3)},
          format_of(channels_last)};
}

OutputSpec group_pointwise_conv2d_backward_weight_spec(const at::Tensor& grad_output, const at::Tensor& input,
                                                       const std::optional<at::Tensor>& output,
                                                       const std::optional<at::Tensor>& scale, int64_t groups,
                                                       int64_t shuffle_groups, int64_t channel_offset,
                                                       const c10::SymInt& out_channels) {
  constexpr const char* op = "group_pointwise_conv2d_backward_weight";
  TORCH_CHECK(out_channels >= 0, op, ": out_channels must be non-negative, got ", out_channels);
  check_group_pointwise_backward(op, grad_output, input, "input", output, scale, out_channels, input.sym_size(1),
                                 groups, shuffle_groups, channel_offset);
  TORCH_CHECK(grad_output.sym_size(0) == input.sym_size(0) && grad_output.sym_size(2) == input.sym_size(2) &&
                  grad_output.sym_size(3) == input.sym_size(3),
              op, ": grad_output of size ", grad_output.sym_sizes(), " and input of size ", input.sym_sizes(),
              " must have the same batch and spatial size");
  return {{out_channels, input.sym_size(1) / groups, 1, 1}, at::MemoryFormat::Contiguous};
}

// ---- calls through the dispatcher ------------------------------------------------------------------

at::Tensor group_pointwise_conv2d(const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                                  const std::optional<at::Tensor>& shift, int64_t groups, int64_t shuffle_groups,
                                  bool relu) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cnnkern_cuda::group_pointwise_conv2d", "").typed<
          at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                     const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, int64_t, int64_t, bool)>();
  return op.call(input, weight, bias, scale, shift, groups, shuffle_groups, relu);
}

at::Tensor group_pointwise_conv2d_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                                 const std::optional<at::Tensor>& output,
                                                 const std::optional<at::Tensor>& scale, int64_t groups,
                                                 int64_t shuffle_groups, int64_t channel_offset, bool channels_last) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("cnnkern_cuda::group_pointwise_conv2d_backward_input", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            const std::optional<at::Tensor>&, int64_t, int64_t, int64_t, bool)>();
  return op.call(grad_output, weight, output, scale, groups, shuffle_groups, channel_offset, channels_last);
}

at::Tensor group_pointwise_conv2d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                                  const std::optional<at::Tensor>& output,
                                                  const std::optional<at::Tensor>& scale, int64_t groups,
                                                  int64_t shuffle_groups, int64_t channel_offset,
                                                  c10::SymInt out_channels) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("cnnkern_cuda::group_pointwise_conv2d_backward_weight", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            const std::optional<at::Tensor>&, int64_t, int64_t, int64_t, c10::SymInt)>();
  return op.call(grad_output, input, output, scale, groups, shuffle_groups, channel_offset, std::move(out_channels));
}

namespace {

at::Tensor group_pointwise_conv2d_meta(const at::Tensor& input, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                                       const std::optional<at::Tensor>& shift, int64_t groups,
                                       int64_t shuffle_groups, bool /*relu*/) {
  return group_pointwise_conv2d_spec(input, weight, bias, scale, shift, groups, shuffle_groups).allocate(input);
}

at::Tensor group_pointwise_conv2d_backward_input_meta(const at::Tensor& grad_output, const at::Tensor& weight,
                                                      const std::optional<at::Tensor>& output,
                                                      const std::optional<at::Tensor>& scale, int64_t groups,
                                                      int64_t shuffle_groups, int64_t channel_offset,
                                                      bool channels_last) {
  return group_pointwise_conv2d_backward_input_spec(grad_output, weight, output, scale, groups, shuffle_groups,
                                                    channel_offset, channels_last)
      .allocate(grad_output);
}

at::Tensor group_pointwise_conv2d_backward_weight_meta(const at::Tensor& grad_output, const at::Tensor& input,
                                                       const std::optional<at::Tensor>& output,
                                                       const std::optional<at::Tensor>& scale, int64_t groups,
                                                       int64_t shuffle_groups, int64_t channel_offset,
                                                       c10::SymInt out_channels) {
  return group_pointwise_conv2d_backward_weight_spec(grad_output, input, output, scale, groups, shuffle_groups,
                                                     channel_offset, out_channels)
      .allocate(input);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(cnnkern_cuda, m) {
  m.def(
      "group_pointwise_conv2d(Tensor input, Tensor weight, Tensor? bias, Tensor? scale, Tensor? shift, "
      "int groups, int shuffle_groups, bool relu) -> Tensor");
  // output: the saved forward output when the epilogue had a ReLU (its mask), else None.
  m.def(
      "group_pointwise_conv2d_backward_input(Tensor grad_output, Tensor weight, Tensor? output, Tensor? scale, "
      "int groups, int shuffle_groups, int channel_offset, bool channels_last) -> Tensor");
  m.def(
      "group_pointwise_conv2d_backward_weight(Tensor grad_output, Tensor input, Tensor? output, Tensor? scale, "
      "int groups, int shuffle_groups, int channel_offset, SymInt out_channels) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnkern_cuda, Meta, m) {
  m.impl("group_pointwise_conv2d", &group_pointwise_conv2d_meta);
  m.impl("group_pointwise_conv2d_backward_input", &group_pointwise_conv2d_backward_input_meta);
  m.impl("group_pointwise_conv2d_backward_weight", &group_pointwise_conv2d_backward_weight_meta);
}

}  // namespace cnnkern::ops
