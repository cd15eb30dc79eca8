// Typed launch entry point of the small-K grouped pointwise forward (kernels/conv/
// group_pointwise_conv2d_smallk.cuh). Defined in group_pointwise_conv2d_smallk_launch.cuh and explicitly
// instantiated per dtype in group_pointwise_conv2d_smallk_fwd_{f32,f16,bf16}.cu (generated).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "conv/group_pointwise_conv2d_params.cuh"

namespace cnnkern {

// Runs the forward as plan_gpw_smallk planned it (plan.use() must hold).
template <class T>
void launch_group_pointwise_conv2d_smallk(const GpwFwdParams<T>& p, const GpwSmallKPlan& plan, cudaStream_t stream);

}  // namespace cnnkern
