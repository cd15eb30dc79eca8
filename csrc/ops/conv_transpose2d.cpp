// Schema of the functional conv_transpose2d, its output spec and Meta kernel. The other kernels: CPU in
// csrc/cpu/conv_transpose2d.cpp, CUDA in csrc/cuda/conv_transpose2d_functional.cpp, Autograd in
// csrc/autograd/conv_transpose2d.cpp.
#include "ops/conv_transpose2d.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "ops/checks.h"
#include "ops/conv2d_geometry.h"

namespace cnnkern::ops {

OutputSpec conv_transpose2d_spec(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef output_padding, at::IntArrayRef dilation,
                                 int64_t groups) {
  check_same_float("conv_transpose2d", {{"input", &input}, {"weight", &weight}, {"bias", opt(bias)}});
  const Size4 size = conv_transpose2d_output_size(input.sym_sizes(), weight.sym_sizes(), stride, padding,
                                                  output_padding, dilation, groups);
  check_conv_bias(bias, weight.sym_sizes(), size[1], true);
  check_input_not_empty_except_batch_or_channels(input);
  return {size, conv_memory_format(input, weight)};
}

EquivalentConv2d equivalent_conv2d(const c10::SymInt& out_h, const c10::SymInt& out_w, at::IntArrayRef stride,
                                   at::IntArrayRef padding, at::IntArrayRef output_padding) {
  EquivalentConv2d e{{0, 0, 0, 0}, {out_h, out_w}, false};
  for (int i = 0; i < 2; ++i) {
    const int64_t bottom = padding[i] - output_padding[i];
    e.padding[2 * i] = padding[i];
    e.padding[2 * i + 1] = bottom > 0 ? bottom : 0;
    if (bottom + stride[i] - 1 < 0) {
      e.keep[i] = e.keep[i] + bottom;
      e.cropped = true;
    }
  }
  return e;
}

at::Tensor conv_transpose2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
                            at::IntArrayRef dilation, int64_t groups) {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("cnnkern_cuda::conv_transpose2d", "").typed<
      at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, at::IntArrayRef,
                 at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t)>();
  return op.call(input, weight, bias, stride, padding, output_padding, dilation, groups);
}

namespace {

at::Tensor conv_transpose2d_meta(const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef output_padding, at::IntArrayRef dilation,
                                 int64_t groups) {
  return conv_transpose2d_spec(input, weight, bias, stride, padding, output_padding, dilation, groups)
      .allocate(input);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(cnnkern_cuda, m) {
  m.def(
      "conv_transpose2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
      "int[2] output_padding, int[2] dilation, int groups) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnkern_cuda, Meta, m) { m.impl("conv_transpose2d", &conv_transpose2d_meta); }

}  // namespace cnnkern::ops
