// Explicit instantiation: group_pointwise_conv2d dgrad kernels for float (one file per op and dtype).
#include "cuda/group_pointwise_conv2d_launch.cuh"

CNNKERN_INSTANTIATE_GPW_DGRAD(float);
