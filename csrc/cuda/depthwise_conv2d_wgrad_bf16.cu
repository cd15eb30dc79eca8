// Explicit instantiation: depthwise conv2d weight-grad kernels for __nv_bfloat16.
#include "cuda/depthwise_conv2d_launch.cuh"

CNNKERN_INSTANTIATE_DW_WGRAD(__nv_bfloat16);
