// Definition of launch_group_pointwise_conv2d_smallk (see group_pointwise_conv2d_smallk_launch.h). Only
// included by the per-dtype instantiation files.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>

#include "conv/group_pointwise_conv2d_smallk.cuh"
#include "cuda/group_pointwise_conv2d_smallk_launch.h"

namespace cnnkern {

namespace detail {

template <class T, int RC>
void launch_gpw_smallk(const GpwFwdParams<T>& p, const GpwSmallKPlan& plan, cudaStream_t stream) {
  // Above 48 KB of dynamic shared memory a kernel must opt in; the attribute is per function, set every
  // launch (cheap) rather than cached per device.
  C10_CUDA_CHECK(cudaFuncSetAttribute(gpw_smallk_kernel<T, RC>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      plan.smem_bytes));
  gpw_smallk_kernel<T, RC><<<plan.grid, kGpwSmallKThreads, plan.smem_bytes, stream>>>(
      GpwSmallK<T, RC>::make(p, plan));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace detail

template <class T>
void launch_group_pointwise_conv2d_smallk(const GpwFwdParams<T>& p, const GpwSmallKPlan& plan, cudaStream_t stream) {
  switch (plan.rc) {
    case 4:
      detail::launch_gpw_smallk<T, 4>(p, plan, stream);
      break;
    case 8:
      detail::launch_gpw_smallk<T, 8>(p, plan, stream);
      break;
    case kGpwMma:
      if constexpr (sizeof(T) == 2) {
        detail::launch_gpw_smallk<T, kGpwMma>(p, plan, stream);
        break;
      }
      [[fallthrough]];
    default:
      TORCH_CHECK(false, "cnnkern group_pointwise_conv2d: small-K plan with compute width ", plan.rc,
                  " for a ", sizeof(T), "-byte type");
  }
}

}  // namespace cnnkern

#define CNNKERN_INSTANTIATE_GPW_SMALLK_FWD(T)                                                                   \
  template void cnnkern::launch_group_pointwise_conv2d_smallk<T>(const cnnkern::GpwFwdParams<T>&,              \
                                                                 const cnnkern::GpwSmallKPlan&, cudaStream_t)
