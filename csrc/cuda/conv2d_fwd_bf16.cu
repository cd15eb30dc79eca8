// Explicit instantiation: conv2d fwd kernels for __nv_bfloat16 (one file per op and dtype for parallel builds).
#include "cuda/conv2d_launch.cuh"

CNNKERN_INSTANTIATE_CONV2D_FWD(__nv_bfloat16);
