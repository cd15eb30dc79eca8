// Typed launch entry points for the grouped pointwise conv kernels. Defined in
// group_pointwise_conv2d_launch.cuh and explicitly instantiated per op and dtype in
// group_pointwise_conv2d_{fwd,dgrad,wgrad}_{f32,f16,bf16}.cu, so the template instantiations compile in
// parallel and group_pointwise_conv2d.cu stays light.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "conv/group_pointwise_conv2d_params.cuh"
#include "cuda/conv2d_launch.h"  // GatherMap

namespace cnnkern {

template <class T>
void launch_group_pointwise_conv2d_fwd(const GpwFwdParams<T>& p, GatherMap map, bool out_pixel_fast,
                                       cudaStream_t stream);

// channel_fast: how dy is gathered (channels-fast for NHWC-like dy).
template <class T>
void launch_group_pointwise_conv2d_dgrad(const GpwDgradParams<T>& p, bool channel_fast, bool out_pixel_fast,
                                         cudaStream_t stream);

// Runs the split-K GEMM into p.workspace and the fixed-order reduction into p.dw.
template <class T>
void launch_group_pointwise_conv2d_wgrad(const GpwWgradParams<T>& p, bool channel_fast, cudaStream_t stream);

}  // namespace cnnkern
