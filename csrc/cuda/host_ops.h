// The host entry points behind the out-variant ops cnnkern_cuda::*_fwd / *_bwd_* / channel_map: they check
// their arguments, pick a kernel and launch it on the current stream into caller-allocated outputs (any
// strides). The dispatcher registers them as the out-variant ops; the functional ops' CUDA kernels
// (csrc/cuda/*_functional.cpp) allocate the outputs and call them directly, so one eager call crosses the
// dispatcher once. Plain C++ (ATen types only): includable from .cpp files compiled without nvcc.
// padding is (top, left); the bottom/right padding is implied by the output's size.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

namespace cnnkern::cuda {

// csrc/cuda/conv2d.cu: implicit-GEMM conv2d (any groups).
void conv2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                int64_t groups);
void conv2d_bwd_input(const at::Tensor& grad_out, const at::Tensor& w, const at::Tensor& grad_in,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);
void conv2d_bwd_weight(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grad_w,
                       at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

// csrc/cuda/conv_transpose2d.cu: the input-grad kernel of the equivalent conv2d, with the bias fused.
void conv_transpose2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                          const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation, int64_t groups);

// csrc/cuda/depthwise_conv2d.cu: groups == C_in, weight (C_in * multiplier, 1, kH, kW).
void depthwise_conv2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                          const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation);
void depthwise_conv2d_bwd_input(const at::Tensor& grad_out, const at::Tensor& w, const at::Tensor& grad_in,
                                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation);
void depthwise_conv2d_bwd_weight(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grad_w,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 bool deterministic);

// csrc/cuda/group_pointwise_conv2d.cu: grouped 1x1 conv whose output channel c is stored at (or its
// gradient read from) channel dest(c) of a tensor of `total` channels, dest = ChannelMap(total,
// shuffle_groups, channel_offset).
void group_pointwise_conv2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                                const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                const at::Tensor& out, int64_t groups, int64_t shuffle_groups, int64_t channel_offset,
                                bool relu);
void group_pointwise_conv2d_bwd_input(const at::Tensor& grad_out, const at::Tensor& w,
                                      const std::optional<at::Tensor>& output, const std::optional<at::Tensor>& scale,
                                      const at::Tensor& grad_in, int64_t groups, int64_t shuffle_groups,
                                      int64_t channel_offset);
void group_pointwise_conv2d_bwd_weight(const at::Tensor& grad_out, const at::Tensor& x,
                                       const std::optional<at::Tensor>& output,
                                       const std::optional<at::Tensor>& scale, const at::Tensor& grad_w,
                                       int64_t groups, int64_t shuffle_groups, int64_t channel_offset);

// csrc/cuda/channel_map.cu: scatter dst[:, dest(c)] = src[:, c], or gather dst[:, c] = src[:, dest(c)].
void channel_map(const at::Tensor& src, const at::Tensor& dst, int64_t shuffle_groups, int64_t channel_offset,
                 bool scatter);

}  // namespace cnnkern::cuda
