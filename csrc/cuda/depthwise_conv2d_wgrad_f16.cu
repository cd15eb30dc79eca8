// Explicit instantiation: depthwise conv2d weight-grad kernels for __half.
#include "cuda/depthwise_conv2d_launch.cuh"

CNNKERN_INSTANTIATE_DW_WGRAD(__half);
