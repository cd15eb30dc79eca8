// When the sm_90a-only instructions (wgmma, setmaxnreg, TMA with mbarrier completion) may be emitted.
// `__CUDA_ARCH_FEAT_SM90_ALL` is defined by nvcc only in the device pass for the arch-specific target
// sm_90a (-gencode arch=compute_90a,code=sm_90a); plain sm_90, sm_80 and the host pass get the fallback
// branch of every wrapper (nothing on the host, __trap() on the device), so the headers compile for every
// target of the extension and the host launch never reaches a trapping kernel (csrc checks the build).
#pragma once

#include "common/macros.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define CNNKERN_SM90A 1
#else
#define CNNKERN_SM90A 0
#endif

namespace cnnkern {
namespace sm90 {

// 32-bit shared-window address of a generic pointer into shared memory (what every async instruction
// and the matrix descriptors take).
__device__ __forceinline__ unsigned smem_u32(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

}  // namespace sm90
}  // namespace cnnkern
