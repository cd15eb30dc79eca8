// TMA (cp.async.bulk.tensor) and proxy-fence wrappers for the sm_90a pipelines. The CUtensorMap is
// built on the host (csrc, cuTensorMapEncodeTiled through cudaGetDriverEntryPoint) and passed as a
// `const __grid_constant__` kernel parameter, so its address is a valid generic address of the param
// space that the TMA unit may read (PTX ISA: tensor-map operand of cp.async.bulk.tensor).
#pragma once

#include <cuda.h>  // CUtensorMap (type only: nothing from libcuda is linked into kernels/)

#include <cstdint>

#include "common/sm90/arch.cuh"

namespace cnnkern {
namespace sm90 {

// Host-side geometry of a 2-D tiled tensor map (dim 0 innermost), shared by csrc (which encodes it) and
// the CPU replays (which replay the TMA from it): the forward's weight [C_out][K], the weight gradient's
// grad_out [pixels][C_out].
struct Map2dGeometry {
  uint64_t dims[2];    // {inner, outer} extents in elements
  uint64_t row_bytes;  // byte stride of dim 1
  uint32_t box[2];     // box extents {inner, outer}
};

// 2-D tiled load of the box at coordinates (c0 = innermost, c1) into shared memory at dst (aligned as
// the map's swizzle requires: 1024 bytes for 128-byte swizzle); completion is signalled as tx bytes on
// `bar`. Out-of-bounds box elements are written as zeros and still count toward the bytes.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1) {
#if CNNKERN_SM90A
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::"r"(
          smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
      : "memory");
#else
  (void)dst; (void)map; (void)bar; (void)c0; (void)c1;
  __trap();
#endif
}

// Brings the tensor map's descriptor into the TMA unit's cache ahead of the first load.
__device__ __forceinline__ void tma_prefetch_map(const CUtensorMap* map) {
#if CNNKERN_SM90A
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
#else
  (void)map;
  __trap();
#endif
}

// Orders this thread's generic-proxy view of shared memory with the async proxy (wgmma operand reads,
// TMA). Shared memory written by cp.async (generic proxy) and read by wgmma (async proxy) needs it between
// the consumer's barrier wait and its first wgmma.
__device__ __forceinline__ void fence_proxy_async_smem() {
#if CNNKERN_SM90A
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#else
  __trap();
#endif
}

}  // namespace sm90
}  // namespace cnnkern
