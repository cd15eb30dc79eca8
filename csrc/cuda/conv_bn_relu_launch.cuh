// Definitions of the launch entry points declared in conv_bn_relu_launch.h. Only included by the per-op,
// per-dtype instantiation files. Every launch goes on the caller's stream and is followed by a launch check.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>

#include "conv/conv_bn_relu.cuh"
#include "cuda/conv_bn_relu_launch.h"

namespace cnnkern {
namespace bn_launch {

template <class T, BnOp K, int A, bool kCL, int V, class Index>
void launch(const BnParams<T>& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.splits), p.grid_y);
  bn_kernel<T, K, A, kCL, V, Index><<<grid, p.threads, 0, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <class T, BnOp K, int A, bool kCL>
void by_width(const BnParams<T>& p, cudaStream_t stream) {
  constexpr int kV = 16 / static_cast<int>(sizeof(T));
  TORCH_CHECK(p.v == 1 || p.v == kV, "cnnkern conv_bn_relu: internal error, access width ", p.v);
  if (p.v == kV) {
    if (p.idx64) {
      launch<T, K, A, kCL, kV, int64_t>(p, stream);
    } else {
      launch<T, K, A, kCL, kV, int32_t>(p, stream);
    }
  } else if (p.idx64) {
    launch<T, K, A, kCL, 1, int64_t>(p, stream);
  } else {
    launch<T, K, A, kCL, 1, int32_t>(p, stream);
  }
}

template <class T, BnOp K, int A>
void by_layout(const BnParams<T>& p, cudaStream_t stream) {
  if (p.cl) {
    by_width<T, K, A, true>(p, stream);
  } else {
    by_width<T, K, A, false>(p, stream);
  }
}

template <class T, BnOp K>
void by_activation(const BnParams<T>& p, int activation, cudaStream_t stream) {
  switch (activation) {
    case kActRelu:
      by_layout<T, K, kActRelu>(p, stream);
      break;
    case kActRelu6:
      by_layout<T, K, kActRelu6>(p, stream);
      break;
    case kActSilu:
      by_layout<T, K, kActSilu>(p, stream);
      break;
    default:
      by_layout<T, K, kActNone>(p, stream);
  }
}

}  // namespace bn_launch

template <class T>
void launch_bn_normalize(const BnParams<T>& p, int activation, cudaStream_t stream) {
  bn_launch::by_activation<T, BnOp::kNormalize>(p, activation, stream);
}

template <class T>
void launch_bn_apply(const BnParams<T>& p, int activation, cudaStream_t stream) {
  bn_launch::by_activation<T, BnOp::kApply>(p, activation, stream);
}

template <class T>
void launch_bn_reduce(const BnParams<T>& p, int activation, const BnFinalizeParams& f, cudaStream_t stream) {
  bn_launch::by_activation<T, BnOp::kReduce>(p, activation, stream);
  bn_finalize_kernel<T><<<(f.c + kBnThreads - 1) / kBnThreads, kBnThreads, 0, stream>>>(f);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace cnnkern

#define CNNKERN_INSTANTIATE_BN_NORMALIZE(T) \
  template void cnnkern::launch_bn_normalize<T>(const cnnkern::BnParams<T>&, int, cudaStream_t)
#define CNNKERN_INSTANTIATE_BN_APPLY(T) \
  template void cnnkern::launch_bn_apply<T>(const cnnkern::BnParams<T>&, int, cudaStream_t)
#define CNNKERN_INSTANTIATE_BN_REDUCE(T)                                                                      \
  template void cnnkern::launch_bn_reduce<T>(const cnnkern::BnParams<T>&, int, const cnnkern::BnFinalizeParams&, \
                                             cudaStream_t)
