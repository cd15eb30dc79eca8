#include "cpu/aten_conv.h"

#include <array>
#include <tuple>

#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/zeros.h>

#include "ops/conv2d_geometry.h"

namespace cnnkern::cpu {

namespace {

constexpr int64_t kNoOutputPadding[2] = {0, 0};

// (top, left) when the padding is symmetric; else the input is padded explicitly and ATen gets 0.
std::array<int64_t, 2> aten_padding(at::IntArrayRef padding) {
  if (ops::symmetric(padding)) return {padding[0], padding[2]};
  return {0, 0};
}

at::Tensor pad_input(const at::Tensor& input, at::IntArrayRef padding) {
  if (ops::symmetric(padding)) return input;
  return at::constant_pad_nd(input, {padding[2], padding[3], padding[0], padding[1]});
}

}  // namespace

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return at::convolution(pad_input(input, padding), weight, bias, stride, aten_padding(padding), dilation, false,
                         kNoOutputPadding, groups);
}

at::Tensor conv2d_input_grad(const at::Tensor& grad_output, const at::Tensor& weight, at::IntArrayRef input_size,
                             at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                             int64_t groups) {
  if (grad_output.numel() == 0 || weight.numel() == 0) return at::zeros(input_size, grad_output.options());
  const bool sym = ops::symmetric(padding);
  const int64_t top = padding[0], left = padding[2];
  std::array<int64_t, 4> padded{input_size[0], input_size[1], input_size[2], input_size[3]};
  if (!sym) {
    padded[2] += padding[0] + padding[1];
    padded[3] += padding[2] + padding[3];
  }
  // Only the input's size is read (torch.nn.grad.conv2d_input does the same).
  const at::Tensor input_like = grad_output.new_empty({1}).expand(padded);
  at::Tensor grad = std::get<0>(at::convolution_backward(grad_output, input_like, weight, std::nullopt, stride,
                                                         aten_padding(padding), dilation, false, kNoOutputPadding,
                                                         groups, {true, false, false}));
  if (!sym) grad = grad.slice(2, top, top + input_size[2]).slice(3, left, left + input_size[3]);
  return grad;
}

at::Tensor conv2d_weight_grad(const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef weight_size,
                              at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                              int64_t groups) {
  if (grad_output.numel() == 0 || input.numel() == 0) return at::zeros(weight_size, input.options());
  // Only the weight's size is read.
  const at::Tensor weight_like = input.new_empty({1}).expand(weight_size);
  return std::get<1>(at::convolution_backward(grad_output, pad_input(input, padding), weight_like, std::nullopt,
                                              stride, aten_padding(padding), dilation, false, kNoOutputPadding,
                                              groups, {false, true, false}));
}

}  // namespace cnnkern::cpu
