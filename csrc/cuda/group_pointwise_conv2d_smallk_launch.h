// Typed launch entry points of the small-K grouped pointwise forward and input gradient (kernels/conv/
// group_pointwise_conv2d_smallk.cuh). Defined in group_pointwise_conv2d_smallk_launch.cuh and explicitly
// instantiated per dtype in group_pointwise_conv2d_smallk_{fwd,dgrad}_{f32,f16,bf16}.cu (generated).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "conv/group_pointwise_conv2d_params.cuh"

namespace cnnkern {

// Runs the forward as plan_gpw_smallk planned it (plan.use() must hold).
template <class T>
void launch_group_pointwise_conv2d_smallk(const GpwFwdParams<T>& p, const GpwSmallKPlan& plan, cudaStream_t stream);

// Runs the input gradient (q = gpw_smallk_dgrad_problem(...)) as plan_gpw_smallk(q, ...) planned it.
template <class T>
void launch_group_pointwise_conv2d_smallk_dgrad(const GpwSmallKProblem<T>& q, const GpwSmallKPlan& plan,
                                                cudaStream_t stream);

}  // namespace cnnkern
