// CPU kernels of the functional conv2d ops, on ATen (see cpu/aten_conv.h for why they exist).
#include <torch/library.h>

#include "cpu/aten_conv.h"
#include "ops/conv2d.h"

namespace cnnkern::cpu {
namespace {

at::Tensor conv2d_cpu(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const ops::OutputSpec s = ops::conv2d_spec(input, weight, bias, stride, padding, dilation, groups);
  if (s.numel() == 0) return s.allocate(input);
  return conv2d(input, weight, bias, stride, padding, dilation, groups).contiguous(s.format);
}

at::Tensor conv2d_backward_input_cpu(const at::Tensor& grad_output, const at::Tensor& weight,
                                     c10::SymIntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                     at::IntArrayRef dilation, int64_t groups, bool channels_last) {
  const ops::OutputSpec s = ops::conv2d_backward_input_spec(grad_output, weight, input_size, stride, padding,
                                                            dilation, groups, channels_last);
  if (s.numel() == 0) return s.allocate(grad_output);
  return conv2d_input_grad(grad_output, weight, C10_AS_INTARRAYREF_SLOW(input_size), stride, padding, dilation,
                           groups)
      .contiguous(s.format);
}

at::Tensor conv2d_backward_weight_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                      c10::SymIntArrayRef weight_size, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                      bool channels_last) {
  const ops::OutputSpec s = ops::conv2d_backward_weight_spec(grad_output, input, weight_size, stride, padding,
                                                             dilation, groups, channels_last);
  if (s.numel() == 0) return s.allocate(input);
  return conv2d_weight_grad(grad_output, input, C10_AS_INTARRAYREF_SLOW(weight_size), stride, padding, dilation,
                            groups)
      .contiguous(s.format);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, CPU, m) {
  m.impl("conv2d", &conv2d_cpu);
  m.impl("conv2d_backward_input", &conv2d_backward_input_cpu);
  m.impl("conv2d_backward_weight", &conv2d_backward_weight_cpu);
}

}  // namespace cnnkern::cpu
