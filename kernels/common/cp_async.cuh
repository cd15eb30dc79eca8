// cp.async (16-byte global -> shared copies, sm_80+) with a host fallback the emulators hook into.
// Shared by the implicit GEMM's loader (gemm_loader.cuh) and the depthwise tiled kernel's row staging.
#pragma once

#include <cstring>

#include "common/macros.cuh"

namespace cnnkern {

// ---- cp.async primitives. On the host (emulator) the copies go to a sink that the replay installs, so
// that it can delay their visibility to the matching wait, as the hardware may.
struct HostAsyncSink {
  virtual void copy16(void* dst, const void* src, bool valid) = 0;
  virtual void commit() = 0;
  virtual ~HostAsyncSink() = default;
};
inline HostAsyncSink*& host_async_sink() {
  static HostAsyncSink* sink = nullptr;
  return sink;
}

// 16 bytes global -> shared; zeros when !valid (src is then never read, but stays a valid address).
// .ca (allocate in L1), not .cg: a 3x3 conv reads each input pixel for up to 9 taps of the same block's
// K loop, and L1 (what the 37 KiB smem per block leaves of the 256 KiB) can serve those re-reads.
CNNKERN_HD void cp_async16(void* dst, const void* src, bool valid) {
#if defined(__CUDA_ARCH__)
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(bytes) : "memory");
#else
  if (HostAsyncSink* k = host_async_sink()) {
    k->copy16(dst, src, valid);
  } else if (valid) {
    std::memcpy(dst, src, 16);
  } else {
    std::memset(dst, 0, 16);
  }
#endif
}

CNNKERN_HD void cp_async_commit() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#else
  if (HostAsyncSink* k = host_async_sink()) k->commit();
#endif
}

// Waits until at most N of this thread's most recent commit groups are pending (device only; the host
// replay applies the same rule to its queues).
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace cnnkern
