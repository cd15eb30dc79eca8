// Portability macros shared by every kernels/ header. No torch, no host-runtime dependencies.
#pragma once

#if defined(__CUDACC__)
#define CNNKERN_HD __host__ __device__ __forceinline__
#else
#define CNNKERN_HD inline
#endif

// Lets `if constexpr` choose per target architecture. The host pass sees a large value so that every
// kernel template gets a launch stub; each device pass sees its own __CUDA_ARCH__.
#if defined(__CUDA_ARCH__)
#define CNNKERN_DEVICE_ARCH __CUDA_ARCH__
#else
#define CNNKERN_DEVICE_ARCH 100000
#endif
