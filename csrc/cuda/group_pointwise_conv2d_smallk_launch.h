// Typed launch entry points of the small-K grouped pointwise forward, input and weight gradients (kernels/
// conv/group_pointwise_conv2d_smallk{,_wgrad}.cuh). Defined in group_pointwise_conv2d_smallk_launch.cuh and explicitly
// instantiated per dtype in group_pointwise_conv2d_smallk_{fwd,dgrad,wgrad}_{f32,f16,bf16}.cu (generated).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "conv/group_pointwise_conv2d_params.cuh"

namespace cnnkern {

// Runs the forward (q = gpw_smallk_fwd_problem(...), with or without a fused passthrough) as
// plan_gpw_smallk(q, ...) planned it (plan.use() must hold).
template <class T>
void launch_group_pointwise_conv2d_smallk(const GpwSmallKProblem<T>& q, const GpwSmallKPlan& plan,
                                          cudaStream_t stream);

// Runs the weight gradient as plan_gpw_smallk_wgrad planned it (p.workspace holds plan.splits partials), then
// the fixed-order split reduction into p.dw. 16-bit types only.
template <class T>
void launch_group_pointwise_conv2d_smallk_wgrad(const GpwWgradParams<T>& p, const GpwWgradPlan& plan,
                                                cudaStream_t stream);

// Runs the input gradient (q = gpw_smallk_dgrad_problem(...)) as plan_gpw_smallk(q, ...) planned it.
template <class T>
void launch_group_pointwise_conv2d_smallk_dgrad(const GpwSmallKProblem<T>& q, const GpwSmallKPlan& plan,
                                                cudaStream_t stream);

}  // namespace cnnkern
