// Explicit instantiation: group_pointwise_conv2d wgrad kernels for __half (one file per op and dtype).
#include "cuda/group_pointwise_conv2d_launch.cuh"

CNNKERN_INSTANTIATE_GPW_WGRAD(__half);
