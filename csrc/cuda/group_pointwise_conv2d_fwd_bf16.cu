// Explicit instantiation: group_pointwise_conv2d fwd kernels for __nv_bfloat16 (one file per op and dtype).
#include "cuda/group_pointwise_conv2d_launch.cuh"

CNNKERN_INSTANTIATE_GPW_FWD(__nv_bfloat16);
