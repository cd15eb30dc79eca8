// Explicit instantiation: depthwise conv2d gather kernels (forward, input-grad) for float.
#include "cuda/depthwise_conv2d_launch.cuh"

CNNKERN_INSTANTIATE_DW_GATHER(float);
