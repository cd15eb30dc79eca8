// Typed launch entry points for the conv_bn_relu elementwise kernels. Defined in conv_bn_relu_launch.cuh and
// explicitly instantiated per op and dtype in conv_bn_relu_{normalize,reduce,apply}_{f32,f16,bf16}.cu
// (generated), so that the 32 variants of each (activation x iteration x access width x index type)
// compile in parallel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "conv/conv_bn_relu.cuh"

namespace cnnkern {

// p planned by bn_plan for the op; activation: kActNone .. kActSilu.
template <class T>
void launch_bn_normalize(const BnParams<T>& p, int activation, cudaStream_t stream);
template <class T>
void launch_bn_apply(const BnParams<T>& p, int activation, cudaStream_t stream);
// The per-split partials into p.partials, then f (reading them) adds the splits in order.
template <class T>
void launch_bn_reduce(const BnParams<T>& p, int activation, const BnFinalizeParams& f, cudaStream_t stream);

}  // namespace cnnkern
