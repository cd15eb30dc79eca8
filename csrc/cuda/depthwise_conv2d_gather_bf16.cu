// Explicit instantiation: depthwise conv2d gather kernels (forward, input-grad) for __nv_bfloat16.
#include "cuda/depthwise_conv2d_launch.cuh"

CNNKERN_INSTANTIATE_DW_GATHER(__nv_bfloat16);
