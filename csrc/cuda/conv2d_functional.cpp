// CUDA kernels of the functional conv2d ops: allocate the output the op's spec describes and run the out-variant
// host code on it (current stream). groups == C_in with one input channel per group runs the depthwise kernels
// (the Python layer's kernel_family), anything else the implicit-GEMM ones.
#include <ATen/Context.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cuda/host_ops.h"
#include "ops/conv2d.h"

namespace cnnkern::cuda {
namespace {

at::Tensor conv2d_cuda(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const ops::OutputSpec s = ops::conv2d_spec(input, weight, bias, stride, padding, dilation, groups);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor out = s.allocate(input);
  if (s.numel() == 0) return out;  // also no input channels: (N, 0, H_out, W_out)
  const int64_t pad_tl[2] = {padding[0], padding[2]};  // the output's size implies the bottom/right padding
  if (ops::is_depthwise(input.sym_size(1), weight.sym_sizes(), groups)) {
    depthwise_conv2d_fwd(input, weight, bias, out, stride, pad_tl, dilation);
  } else {
    conv2d_fwd(input, weight, bias, out, stride, pad_tl, dilation, groups);
  }
  return out;
}

at::Tensor conv2d_backward_input_cuda(const at::Tensor& grad_output, const at::Tensor& weight,
                                      c10::SymIntArrayRef input_size, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                      bool channels_last) {
  const ops::OutputSpec s = ops::conv2d_backward_input_spec(grad_output, weight, input_size, stride, padding,
                                                            dilation, groups, channels_last);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  at::Tensor grad_in = s.allocate(grad_output);
  if (s.numel() == 0) return grad_in;
  const int64_t pad_tl[2] = {padding[0], padding[2]};
  if (ops::is_depthwise(input_size[1], weight.sym_sizes(), groups)) {
    depthwise_conv2d_bwd_input(grad_output, weight, grad_in, stride, pad_tl, dilation);
  } else {
    conv2d_bwd_input(grad_output, weight, grad_in, stride, pad_tl, dilation, groups);
  }
  return grad_in;
}

at::Tensor conv2d_backward_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                       c10::SymIntArrayRef weight_size, at::IntArrayRef stride,
                                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                       bool channels_last) {
  const ops::OutputSpec s = ops::conv2d_backward_weight_spec(grad_output, input, weight_size, stride, padding,
                                                             dilation, groups, channels_last);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor grad_w = s.allocate(input);
  if (s.numel() == 0) return grad_w;
  const int64_t pad_tl[2] = {padding[0], padding[2]};
  if (ops::is_depthwise(input.sym_size(1), weight_size, groups)) {
    depthwise_conv2d_bwd_weight(grad_output, input, grad_w, stride, pad_tl, dilation,
                                at::globalContext().deterministicAlgorithms());
  } else {
    conv2d_bwd_weight(grad_output, input, grad_w, stride, pad_tl, dilation, groups);
  }
  return grad_w;
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, CUDA, m) {
  m.impl("conv2d", &conv2d_cuda);
  m.impl("conv2d_backward_input", &conv2d_backward_input_cuda);
  m.impl("conv2d_backward_weight", &conv2d_backward_weight_cuda);
}

}  // namespace cnnkern::cuda
