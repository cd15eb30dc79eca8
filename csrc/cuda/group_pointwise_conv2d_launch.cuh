// Definitions of the launch entry points declared in group_pointwise_conv2d_launch.h. Only included by
// the per-dtype instantiation files. Every launch goes on the caller's stream and is followed by a
// launch check (detail::launch_gemm of the conv2d launches).
#pragma once

#include <algorithm>
#include <cstdint>

#include <c10/cuda/CUDAException.h>

#include "conv/group_pointwise_conv2d.cuh"
#include "cuda/conv2d_launch.cuh"
#include "cuda/group_pointwise_conv2d_launch.h"

namespace cnnkern {

template <class T>
void launch_group_pointwise_conv2d_fwd(const GpwFwdParams<T>& p, GatherMap map, bool out_pixel_fast,
                                       cudaStream_t stream) {
  constexpr int V = detail::kVecWidth<T>;
  switch (map) {
    case GatherMap::kPixelFast:
      detail::launch_gemm(GpwFwdProblem<T, Fast::kRow, 1>::make(p, out_pixel_fast), stream);
      break;
    case GatherMap::kChannelFast:
      detail::launch_gemm(GpwFwdProblem<T, Fast::kK, 1>::make(p, out_pixel_fast), stream);
      break;
    case GatherMap::kChannelVec:
      detail::launch_gemm(GpwFwdProblem<T, Fast::kK, V>::make(p, out_pixel_fast), stream);
      break;
  }
}

template <class T>
void launch_group_pointwise_conv2d_dgrad(const GpwDgradParams<T>& p, bool channel_fast, bool out_pixel_fast,
                                         cudaStream_t stream) {
  if (channel_fast) {
    detail::launch_gemm(GpwDgradProblem<T, Fast::kK>::make(p, out_pixel_fast), stream);
  } else {
    detail::launch_gemm(GpwDgradProblem<T, Fast::kRow>::make(p, out_pixel_fast), stream);
  }
}

template <class T>
void launch_group_pointwise_conv2d_wgrad(const GpwWgradParams<T>& p, bool channel_fast, cudaStream_t stream) {
  // Channel-fast means the GEMM rows (dy channels, x channels) are the contiguous dimension.
  if (channel_fast) {
    detail::launch_gemm(GpwWgradProblem<T, Fast::kRow>::make(p), stream);
  } else {
    detail::launch_gemm(GpwWgradProblem<T, Fast::kK>::make(p), stream);
  }
  launch_wgrad_reduce(gpw_wgrad_reduce(p), stream);
}

}  // namespace cnnkern

#define CNNKERN_INSTANTIATE_GPW_FWD(T)                                                                   \
  template void cnnkern::launch_group_pointwise_conv2d_fwd<T>(const cnnkern::GpwFwdParams<T>&,         \
                                                              cnnkern::GatherMap, bool, cudaStream_t)
#define CNNKERN_INSTANTIATE_GPW_DGRAD(T)                                                                 \
  template void cnnkern::launch_group_pointwise_conv2d_dgrad<T>(const cnnkern::GpwDgradParams<T>&, bool, \
                                                                bool, cudaStream_t)
#define CNNKERN_INSTANTIATE_GPW_WGRAD(T)                                                                 \
  template void cnnkern::launch_group_pointwise_conv2d_wgrad<T>(const cnnkern::GpwWgradParams<T>&, bool, \
                                                                cudaStream_t)
