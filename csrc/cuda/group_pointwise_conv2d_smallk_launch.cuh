// Definition of launch_group_pointwise_conv2d_smallk (see group_pointwise_conv2d_smallk_launch.h). Only
// included by the per-dtype instantiation files.
#pragma once

#include <algorithm>
#include <cstdint>

#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>

#include "conv/conv2d_wgrad.cuh"
#include "conv/group_pointwise_conv2d.cuh"
#include "conv/group_pointwise_conv2d_smallk.cuh"
#include "conv/group_pointwise_conv2d_smallk_wgrad.cuh"
#include "cuda/group_pointwise_conv2d_smallk_launch.h"
#include "cuda/wgrad_reduce_launch.cuh"

namespace cnnkern {

namespace detail {

template <class T, int RC, bool kDgrad>
void launch_gpw_smallk(const GpwSmallKProblem<T>& q, const GpwSmallKPlan& plan, cudaStream_t stream) {
  // Above 48 KB of dynamic shared memory a kernel must opt in; the attribute is per function, set every
  // launch (cheap) rather than cached per device.
  C10_CUDA_CHECK(cudaFuncSetAttribute(gpw_smallk_kernel<T, RC, kDgrad>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      plan.smem_bytes));
  gpw_smallk_kernel<T, RC, kDgrad><<<plan.grid, kGpwSmallKThreads, plan.smem_bytes, stream>>>(
      GpwSmallK<T, RC, kDgrad>::make(q, plan));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// One dispatch by compute width for both directions.
template <class T, bool kDgrad>
void launch_gpw_smallk_rc(const GpwSmallKProblem<T>& q, const GpwSmallKPlan& plan, cudaStream_t stream) {
  // (16-bit input gradients always plan mma: their FMA instantiations would be dead code)
  if (plan.rc == kGpwMma) {
    if constexpr (sizeof(T) == 2) {
      launch_gpw_smallk<T, kGpwMma, kDgrad>(q, plan, stream);
      return;
    }
  } else if constexpr (!(kDgrad && sizeof(T) == 2)) {
    if (plan.rc == 4) {
      launch_gpw_smallk<T, 4, kDgrad>(q, plan, stream);
      return;
    }
    if (plan.rc == 8) {
      launch_gpw_smallk<T, 8, kDgrad>(q, plan, stream);
      return;
    }
  }
  TORCH_CHECK(false, "cnnkern group_pointwise_conv2d: small-K ", kDgrad ? "input-grad" : "forward",
              " plan with compute width ", plan.rc, " for a ", sizeof(T), "-byte type");
}

}  // namespace detail

template <class T>
void launch_group_pointwise_conv2d_smallk(const GpwSmallKProblem<T>& q, const GpwSmallKPlan& plan,
                                          cudaStream_t stream) {
  TORCH_CHECK(!q.dgrad, "cnnkern group_pointwise_conv2d: the small-K forward got an input-grad problem");
  detail::launch_gpw_smallk_rc<T, false>(q, plan, stream);
}

template <class T>
void launch_group_pointwise_conv2d_smallk_dgrad(const GpwSmallKProblem<T>& q, const GpwSmallKPlan& plan,
                                                cudaStream_t stream) {
  TORCH_CHECK(q.dgrad, "cnnkern group_pointwise_conv2d: the small-K input gradient got a forward problem");
  detail::launch_gpw_smallk_rc<T, true>(q, plan, stream);
}

template <class T>
void launch_group_pointwise_conv2d_smallk_wgrad(const GpwWgradParams<T>& p, const GpwWgradPlan& plan,
                                                cudaStream_t stream) {
  if constexpr (sizeof(T) == 2) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(gpw_smallk_wgrad_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        plan.smem_bytes));
    gpw_smallk_wgrad_kernel<T><<<plan.splits, kGpwSmallKThreads, plan.smem_bytes, stream>>>(
        GpwSmallKWgrad<T>::make(p, plan));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    // The splits' partials, summed in a fixed order (as after the GEMM's split-K).
    launch_wgrad_reduce(gpw_wgrad_reduce(p), stream);
  } else {
    TORCH_CHECK(false, "cnnkern group_pointwise_conv2d: the small-K weight gradient takes 16-bit types, got a ",
                sizeof(T), "-byte type");
  }
}

}  // namespace cnnkern

#define CNNKERN_INSTANTIATE_GPW_SMALLK_FWD(T)                                                                   \
  template void cnnkern::launch_group_pointwise_conv2d_smallk<T>(const cnnkern::GpwSmallKProblem<T>&,        \
                                                                 const cnnkern::GpwSmallKPlan&, cudaStream_t)

#define CNNKERN_INSTANTIATE_GPW_SMALLK_DGRAD(T)                                                          \
  template void cnnkern::launch_group_pointwise_conv2d_smallk_dgrad<T>(const cnnkern::GpwSmallKProblem<T>&, \
                                                                       const cnnkern::GpwSmallKPlan&, cudaStream_t)

#define CNNKERN_INSTANTIATE_GPW_SMALLK_WGRAD(T)                                                          \
  template void cnnkern::launch_group_pointwise_conv2d_smallk_wgrad<T>(const cnnkern::GpwWgradParams<T>&,   \
                                                                       const cnnkern::GpwWgradPlan&, cudaStream_t)
