// Explicit instantiation: depthwise conv2d weight-grad kernels for float.
#include "cuda/depthwise_conv2d_launch.cuh"

CNNKERN_INSTANTIATE_DW_WGRAD(float);
