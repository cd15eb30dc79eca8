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

// csrc/cuda/conv2d.cpp: implicit-GEMM conv2d (any groups).
void conv2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                int64_t groups);
// Fused conv + BatchNorm epilogues (contract: cnnkern/problem/conv_bn.py; activation 0 none, 1 relu, 2 relu6,
// 3 silu): act((conv + bias) * scale + shift), or the plain output and its statistics partials (tiles, C_out,
// 3) fp32, tiles from conv2d_fwd_stats_tiles.
void conv2d_fwd_act(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                    const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                    const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                    int64_t groups, int64_t activation);
void conv2d_fwd_stats(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                      const at::Tensor& out, const at::Tensor& partials, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);
int64_t conv2d_fwd_stats_tiles(const at::Tensor& x, const at::Tensor& w, const at::Tensor& out);
void conv2d_bwd_input(const at::Tensor& grad_out, const at::Tensor& w, const at::Tensor& grad_in,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);
void conv2d_bwd_weight(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grad_w,
                       at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

// csrc/cuda/conv_transpose2d.cpp: the input-grad kernel of the equivalent conv2d, with the bias fused.
void conv_transpose2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                          const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation, int64_t groups);

// csrc/cuda/depthwise_conv2d.cpp: groups == C_in, weight (C_in * multiplier, 1, kH, kW).
void depthwise_conv2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                          const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation);
void depthwise_conv2d_fwd_act(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                              const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                              const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding,
                              at::IntArrayRef dilation, int64_t activation);
void depthwise_conv2d_fwd_stats(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                                const at::Tensor& out, const at::Tensor& partials, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation);
int64_t depthwise_conv2d_fwd_stats_tiles(const at::Tensor& x, const at::Tensor& w, const at::Tensor& out,
                                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation);
void depthwise_conv2d_bwd_input(const at::Tensor& grad_out, const at::Tensor& w, const at::Tensor& grad_in,
                                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation);
void depthwise_conv2d_bwd_weight(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grad_w,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 bool deterministic);

// csrc/cuda/group_pointwise_conv2d.cpp: grouped 1x1 conv whose output channel c is stored at (or its
// gradient read from) channel dest(c) of a tensor of `total` channels, dest = ChannelMap(total,
// shuffle_groups, channel_offset).
void group_pointwise_conv2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                                const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                const at::Tensor& out, int64_t groups, int64_t shuffle_groups, int64_t channel_offset,
                                bool relu);
// The same with the channels [0, channel_offset) of the concatenated order taken from `passthrough`
// (shuffle_cat_pointwise): written into out too, fused into the small-K kernel's store where its plan
// allows, else by channel_map_scatter_fill before the conv.
void group_pointwise_conv2d_fwd_cat(const at::Tensor& passthrough, const at::Tensor& x, const at::Tensor& w,
                                    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                                    const std::optional<at::Tensor>& shift, const at::Tensor& out, int64_t groups,
                                    int64_t shuffle_groups, int64_t channel_offset, bool relu);
void group_pointwise_conv2d_bwd_input(const at::Tensor& grad_out, const at::Tensor& w,
                                      const std::optional<at::Tensor>& output, const std::optional<at::Tensor>& scale,
                                      const at::Tensor& grad_in, int64_t groups, int64_t shuffle_groups,
                                      int64_t channel_offset);
void group_pointwise_conv2d_bwd_weight(const at::Tensor& grad_out, const at::Tensor& x,
                                       const std::optional<at::Tensor>& output,
                                       const std::optional<at::Tensor>& scale, const at::Tensor& grad_w,
                                       int64_t groups, int64_t shuffle_groups, int64_t channel_offset);

// csrc/cuda/conv_bn_relu.cpp: BatchNorm + activation around a conv output y, any layouts (contract:
// cnnkern/problem/conv_bn.py). Per-channel vectors fp32 (C); activation as above.
void conv_bn_relu_normalize(const at::Tensor& y, const at::Tensor& a, const at::Tensor& b, const at::Tensor& out,
                            int64_t activation);
void conv_bn_relu_bwd_reduce(const at::Tensor& grad, const at::Tensor& y, const at::Tensor& a, const at::Tensor& b,
                             const at::Tensor& mean, const at::Tensor& invstd, const at::Tensor& sum_dz,
                             const at::Tensor& sum_dz_xhat, int64_t activation);
void conv_bn_relu_bwd_apply(const at::Tensor& grad, const at::Tensor& y, const at::Tensor& a, const at::Tensor& b,
                            const at::Tensor& mean, const at::Tensor& invstd, const at::Tensor& k_dz,
                            const at::Tensor& k_one, const at::Tensor& k_xhat, const at::Tensor& out,
                            int64_t activation);

// csrc/cuda/channel_map.cu: scatter dst[:, dest(c)] = src[:, c], or gather dst[:, c] = src[:, dest(c)].
void channel_map(const at::Tensor& src, const at::Tensor& dst, int64_t shuffle_groups, int64_t channel_offset,
                 bool scatter);
// The same scatter for a shuffle-cat half (src's channels < dst's) whose other channels a later kernel on
// the same stream writes in full (shuffle_cat_pointwise's conv branch): their words may be overwritten, so
// dst is stored in whole 16-byte vectors where its layout allows (ChannelShufflePlan::fill).
void channel_map_scatter_fill(const at::Tensor& src, const at::Tensor& dst, int64_t shuffle_groups,
                              int64_t channel_offset);

}  // namespace cnnkern::cuda
