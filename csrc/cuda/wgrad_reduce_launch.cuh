// The fixed-order split-K reduction of the weight gradients (conv2d's Conv2dWgradReduce: fp32 partials
// [split][c_out][row] summed split by split into dw), launched after conv2d's, the grouped pointwise GEMM's and the
// small-K weight-gradient kernels. Only included by launch definitions (.cuh) of those families.
#pragma once

#include <algorithm>
#include <cstdint>

#include <c10/cuda/CUDAException.h>

#include "conv/conv2d_wgrad.cuh"

namespace cnnkern {

template <class T>
void launch_wgrad_reduce(const Conv2dWgradReduce<T>& r, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((r.total + kThreads - 1) / kThreads, 4096));
  conv2d_wgrad_reduce_kernel<T><<<blocks, kThreads, 0, stream>>>(r);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace cnnkern
