// Convolutions on ATen for the CPU kernels of the functional ops, with padding as 4 explicit sides: ATen
// takes symmetric padding only, so asymmetric padding is applied explicitly (padded input, or a padded
// gradient that is cropped). Results come in whatever layout ATen picks; callers set the op's own.
//
// The CPU kernels exist so that the C++ ops and their C++ autograd formulas can be tested (opcheck,
// gradcheck, gradgradcheck) on machines without a GPU, as CI is; they are not a fast CPU path.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

namespace cnnkern::cpu {

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

// The gradient of conv2d with respect to an input of size `input_size`; zeros when nothing reaches it.
at::Tensor conv2d_input_grad(const at::Tensor& grad_output, const at::Tensor& weight, at::IntArrayRef input_size,
                             at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                             int64_t groups);

// The gradient of conv2d with respect to a weight of size `weight_size`; zeros for an empty reduction.
at::Tensor conv2d_weight_grad(const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef weight_size,
                              at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                              int64_t groups);

}  // namespace cnnkern::cpu
