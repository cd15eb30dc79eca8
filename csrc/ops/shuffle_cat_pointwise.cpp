// Schemas of the shuffled-concat ops, their output specs and Meta kernels. The other kernels: CPU in
// csrc/cpu/shuffle_cat_pointwise.cpp, CUDA in csrc/cuda/shuffle_cat_pointwise_functional.cpp, Autograd in
// csrc/autograd/shuffle_cat_pointwise.cpp.
#include "ops/shuffle_cat_pointwise.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "ops/channel_map.h"
#include "ops/checks.h"

namespace cnnkern::ops {

namespace {

void check_same_pixels(const char* op, const at::Tensor& first, const at::Tensor& second) {
  TORCH_CHECK(first.dim() == 4 && second.dim() == 4 && first.sym_size(0) == second.sym_size(0) &&
                  first.sym_size(2) == second.sym_size(2) && first.sym_size(3) == second.sym_size(3),
              op, ": the two branches must have the same batch and spatial size to be concatenated, but got ",
              first.sym_sizes(), " and ", second.sym_sizes());
  TORCH_CHECK(first.scalar_type() == second.scalar_type() && first.device() == second.device(), op,
              ": the two branches must have the same dtype and device, but got ", first.scalar_type(), " on ",
              first.device(), " and ", second.scalar_type(), " on ", second.device());
}

OutputSpec concat_spec(const at::Tensor& input, const c10::SymInt& total, int64_t shuffle_groups,
                       at::MemoryFormat format) {
  check_shuffle_groups(total, shuffle_groups, "channels (both branches together)");
  return {{input.sym_size(0), total, input.sym_size(2), input.sym_size(3)}, format};
}

}  // namespace

OutputSpec shuffle_cat_pointwise_spec(const at::Tensor& passthrough, const at::Tensor& input,
                                      const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                      const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                      int64_t groups, int64_t shuffle_groups) {
  constexpr const char* op = "shuffle_cat_pointwise";
  check_group_pointwise(op, input, weight, bias, scale, shift, groups);
  TORCH_CHECK(passthrough.layout() == at::kStrided, op, ": passthrough must be a strided (dense) tensor");
  check_same_pixels(op, passthrough, input);
  // ATen's layout rule on the conv's operands: the passthrough is usually a channel slice whose strides say
  // nothing about the wanted layout.
  return concat_spec(input, passthrough.sym_size(1) + weight.sym_size(0), shuffle_groups,
                     conv_memory_format(input, weight));
}

OutputSpec shuffle_cat_pointwise2_spec(const at::Tensor& input1, const at::Tensor& weight1,
                                       const std::optional<at::Tensor>& bias1, const std::optional<at::Tensor>& scale1,
                                       const std::optional<at::Tensor>& shift1, const at::Tensor& input2,
                                       const at::Tensor& weight2, const std::optional<at::Tensor>& bias2,
                                       const std::optional<at::Tensor>& scale2,
                                       const std::optional<at::Tensor>& shift2, int64_t groups,
                                       int64_t shuffle_groups) {
  constexpr const char* op = "shuffle_cat_pointwise2";
  check_group_pointwise(op, input1, weight1, bias1, scale1, shift1, groups);
  check_group_pointwise(op, input2, weight2, bias2, scale2, shift2, groups);
  check_same_pixels(op, input1, input2);
  const bool cl = conv_memory_format(input1, weight1) == at::MemoryFormat::ChannelsLast ||
                  conv_memory_format(input2, weight2) == at::MemoryFormat::ChannelsLast;
  return concat_spec(input2, weight1.sym_size(0) + weight2.sym_size(0), shuffle_groups, format_of(cl));
}

OutputSpec shuffle_cat_pointwise_backward_passthrough_spec(const at::Tensor& grad_output,
                                                           const c10::SymInt& channels, int64_t shuffle_groups,
                                                           bool channels_last) {
  constexpr const char* op = "shuffle_cat_pointwise_backward_passthrough";
  check_4d(op, "grad_output", grad_output);
  check_shuffle_groups(grad_output.sym_size(1), shuffle_groups);
  TORCH_CHECK(channels >= 0 && channels <= grad_output.sym_size(1), op, ": channels=", channels,
              " do not fit a grad_output of size ", grad_output.sym_sizes());
  return {{grad_output.sym_size(0), channels, grad_output.sym_size(2), grad_output.sym_size(3)},
          format_of(channels_last)};
}

// ---- calls through the dispatcher ------------------------------------------------------------------

at::Tensor shuffle_cat_pointwise(const at::Tensor& passthrough, const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                                 const std::optional<at::Tensor>& shift, int64_t groups, int64_t shuffle_groups,
                                 bool relu) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cnnkern_cuda::shuffle_cat_pointwise", "").typed<
          at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                     const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, int64_t, int64_t, bool)>();
  return op.call(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups, relu);
}

at::Tensor shuffle_cat_pointwise2(const at::Tensor& input1, const at::Tensor& weight1,
                                  const std::optional<at::Tensor>& bias1, const std::optional<at::Tensor>& scale1,
                                  const std::optional<at::Tensor>& shift1, const at::Tensor& input2,
                                  const at::Tensor& weight2, const std::optional<at::Tensor>& bias2,
                                  const std::optional<at::Tensor>& scale2, const std::optional<at::Tensor>& shift2,
                                  int64_t groups, int64_t shuffle_groups, bool relu) {
  using Opt = const std::optional<at::Tensor>&;
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cnnkern_cuda::shuffle_cat_pointwise2", "").typed<
          at::Tensor(const at::Tensor&, const at::Tensor&, Opt, Opt, Opt, const at::Tensor&, const at::Tensor&, Opt,
                     Opt, Opt, int64_t, int64_t, bool)>();
  return op.call(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2, groups,
                 shuffle_groups, relu);
}

at::Tensor shuffle_cat_pointwise_backward_passthrough(const at::Tensor& grad_output, c10::SymInt channels,
                                                      int64_t shuffle_groups, bool channels_last) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("cnnkern_cuda::shuffle_cat_pointwise_backward_passthrough", "")
          .typed<at::Tensor(const at::Tensor&, c10::SymInt, int64_t, bool)>();
  return op.call(grad_output, std::move(channels), shuffle_groups, channels_last);
}

namespace {

at::Tensor shuffle_cat_pointwise_meta(const at::Tensor& passthrough, const at::Tensor& input,
                                      const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                      const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                      int64_t groups, int64_t shuffle_groups, bool /*relu*/) {
  return shuffle_cat_pointwise_spec(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups)
      .allocate(input);
}

at::Tensor shuffle_cat_pointwise2_meta(const at::Tensor& input1, const at::Tensor& weight1,
                                       const std::optional<at::Tensor>& bias1, const std::optional<at::Tensor>& scale1,
                                       const std::optional<at::Tensor>& shift1, const at::Tensor& input2,
                                       const at::Tensor& weight2, const std::optional<at::Tensor>& bias2,
                                       const std::optional<at::Tensor>& scale2,
                                       const std::optional<at::Tensor>& shift2, int64_t groups,
                                       int64_t shuffle_groups, bool /*relu*/) {
  return shuffle_cat_pointwise2_spec(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2,
                                     groups, shuffle_groups)
      .allocate(input2);
}

at::Tensor shuffle_cat_pointwise_backward_passthrough_meta(const at::Tensor& grad_output, c10::SymInt channels,
                                                           int64_t shuffle_groups, bool channels_last) {
  return shuffle_cat_pointwise_backward_passthrough_spec(grad_output, channels, shuffle_groups, channels_last)
      .allocate(grad_output);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(cnnkern_cuda, m) {
  m.def(
      "shuffle_cat_pointwise(Tensor passthrough, Tensor input, Tensor weight, Tensor? bias, Tensor? scale, "
      "Tensor? shift, int groups, int shuffle_groups, bool relu) -> Tensor");
  m.def(
      "shuffle_cat_pointwise2(Tensor input1, Tensor weight1, Tensor? bias1, Tensor? scale1, Tensor? shift1, "
      "Tensor input2, Tensor weight2, Tensor? bias2, Tensor? scale2, Tensor? shift2, int groups, "
      "int shuffle_groups, bool relu) -> Tensor");
  m.def(
      "shuffle_cat_pointwise_backward_passthrough(Tensor grad_output, SymInt channels, int shuffle_groups, "
      "bool channels_last) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnkern_cuda, Meta, m) {
  m.impl("shuffle_cat_pointwise", &shuffle_cat_pointwise_meta);
  m.impl("shuffle_cat_pointwise2", &shuffle_cat_pointwise2_meta);
  m.impl("shuffle_cat_pointwise_backward_passthrough", &shuffle_cat_pointwise_backward_passthrough_meta);
}

}  // namespace cnnkern::ops
