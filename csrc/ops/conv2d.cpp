// Schemas of the functional conv2d ops, their output specs and Meta kernels. The other kernels: CPU in
// csrc/cpu/conv2d.cpp, CUDA in csrc/cuda/conv2d_functional.cpp, Autograd in csrc/autograd/conv2d.cpp.
#include "ops/conv2d.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "ops/checks.h"
#include "ops/conv2d_geometry.h"

namespace cnnkern::ops {

namespace {

void check_grad_output(const char* op, const at::Tensor& grad_output, const Size4& expected) {
  TORCH_CHECK(grad_output.sym_sizes() == ref(expected), op, ": expected grad_output of size ", ref(expected),
              ", but got grad_output of size ", grad_output.sym_sizes());
}

void check_size4(const char* op, const char* name, c10::SymIntArrayRef size) {
  TORCH_CHECK(size.size() == 4, op, ": expected ", name, " of 4 values, but got ", size);
}

}  // namespace

OutputSpec conv2d_spec(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  check_same_float("conv2d", {{"input", &input}, {"weight", &weight}, {"bias", opt(bias)}});
  Size4 size = conv2d_output_size(input.sym_sizes(), weight.sym_sizes(), stride, padding, dilation, groups);
  check_conv_bias(bias, weight.sym_sizes(), weight.sym_size(0), false);
  check_input_not_empty_except_batch_or_channels(input);
  if (input.sym_size(1) == 0) {  // ATen: nothing is convolved, the output has no channels either
    size[1] = 0;
    return {size, at::MemoryFormat::Contiguous};
  }
  return {size, conv_memory_format(input, weight)};
}

OutputSpec conv2d_backward_input_spec(const at::Tensor& grad_output, const at::Tensor& weight,
                                      c10::SymIntArrayRef input_size, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                      bool channels_last) {
  constexpr const char* op = "conv2d_backward_input";
  check_same_float(op, {{"grad_output", &grad_output}, {"weight", &weight}});
  check_4d(op, "grad_output", grad_output);
  check_size4(op, "input_size", input_size);
  check_grad_output(op, grad_output, conv2d_output_size(input_size, weight.sym_sizes(), stride, padding, dilation,
                                                        groups));
  return {{input_size[0], input_size[1], input_size[2], input_size[3]}, format_of(channels_last)};
}

OutputSpec conv2d_backward_weight_spec(const at::Tensor& grad_output, const at::Tensor& input,
                                       c10::SymIntArrayRef weight_size, at::IntArrayRef stride,
                                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                       bool channels_last) {
  constexpr const char* op = "conv2d_backward_weight";
  check_same_float(op, {{"grad_output", &grad_output}, {"input", &input}});
  check_4d(op, "grad_output", grad_output);
  check_size4(op, "weight_size", weight_size);
  check_grad_output(op, grad_output, conv2d_output_size(input.sym_sizes(), weight_size, stride, padding, dilation,
                                                        groups));
  return {{weight_size[0], weight_size[1], weight_size[2], weight_size[3]}, format_of(channels_last)};
}

// ---- calls through the dispatcher ------------------------------------------------------------------

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cnnkern_cuda::conv2d", "").typed<
      at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, at::IntArrayRef,
                 at::IntArrayRef, at::IntArrayRef, int64_t)>();
  return op.call(input, weight, bias, stride, padding, dilation, groups);
}

at::Tensor conv2d_backward_input(const at::Tensor& grad_output, const at::Tensor& weight,
                                 c10::SymIntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                 at::IntArrayRef dilation, int64_t groups, bool channels_last) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cnnkern_cuda::conv2d_backward_input", "").typed<
          at::Tensor(const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef, at::IntArrayRef, at::IntArrayRef,
                     at::IntArrayRef, int64_t, bool)>();
  return op.call(grad_output, weight, input_size, stride, padding, dilation, groups, channels_last);
}

at::Tensor conv2d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                  c10::SymIntArrayRef weight_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                  at::IntArrayRef dilation, int64_t groups, bool channels_last) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("cnnkern_cuda::conv2d_backward_weight", "").typed<
          at::Tensor(const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef, at::IntArrayRef, at::IntArrayRef,
                     at::IntArrayRef, int64_t, bool)>();
  return op.call(grad_output, input, weight_size, stride, padding, dilation, groups, channels_last);
}

namespace {

// ---- Meta kernels: the output spec alone (fake tensors, torch.compile, opcheck) ------------------------

at::Tensor conv2d_meta(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return conv2d_spec(input, weight, bias, stride, padding, dilation, groups).allocate(input);
}

at::Tensor conv2d_backward_input_meta(const at::Tensor& grad_output, const at::Tensor& weight,
                                      c10::SymIntArrayRef input_size, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                      bool channels_last) {
  return conv2d_backward_input_spec(grad_output, weight, input_size, stride, padding, dilation, groups,
                                    channels_last)
      .allocate(grad_output);
}

at::Tensor conv2d_backward_weight_meta(const at::Tensor& grad_output, const at::Tensor& input,
                                       c10::SymIntArrayRef weight_size, at::IntArrayRef stride,
                                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                       bool channels_last) {
  return conv2d_backward_weight_spec(grad_output, input, weight_size, stride, padding, dilation, groups,
                                     channels_last)
      .allocate(input);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(cnnkern_cuda, m) {
  m.def(
      "conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[4] padding, int[2] dilation, "
      "int groups) -> Tensor");
  // channels_last: the memory format of the gradient (the input's).
  m.def(
      "conv2d_backward_input(Tensor grad_output, Tensor weight, SymInt[4] input_size, int[2] stride, "
      "int[4] padding, int[2] dilation, int groups, bool channels_last) -> Tensor");
  // channels_last: the memory format of the gradient (the weight's, as ATen gives it).
  m.def(
      "conv2d_backward_weight(Tensor grad_output, Tensor input, SymInt[4] weight_size, int[2] stride, "
      "int[4] padding, int[2] dilation, int groups, bool channels_last=False) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnkern_cuda, Meta, m) {
  m.impl("conv2d", &conv2d_meta);
  m.impl("conv2d_backward_input", &conv2d_backward_input_meta);
  m.impl("conv2d_backward_weight", &conv2d_backward_weight_meta);
}

}  // namespace cnnkern::ops
