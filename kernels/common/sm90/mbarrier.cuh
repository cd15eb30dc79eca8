// Shared-memory mbarrier wrappers (PTX ISA "mbarrier"), for the sm_90a pipelines.
//
// A barrier counts arrivals and, since sm_90, transaction bytes: a phase completes when the pending
// arrival count reaches zero AND the tx-count is back to zero; it then re-arms with the init count and
// its phase parity flips. Waiting is on parity: try_wait.parity(P) succeeds once the phase with parity P
// has completed, i.e. while the barrier's current phase parity differs from P; a freshly initialised
// barrier is in phase 0, so waiting for parity 1 returns at once ("the phase before the first"). The
// pipelines use exactly that for their 'empty' barriers.
#pragma once

#include <cstdint>

#include "common/sm90/arch.cuh"

namespace cnnkern {
namespace sm90 {

__device__ __forceinline__ void mbar_init(uint64_t* bar, unsigned count) {
#if CNNKERN_SM90A
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count) : "memory");
#else
  (void)bar; (void)count;
  __trap();
#endif
}

// Makes the initialised barriers visible to the async proxy (TMA complete_tx) and the other threads.
__device__ __forceinline__ void mbar_fence_init() {
#if CNNKERN_SM90A
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#if CNNKERN_SM90A
  asm volatile("{\n .reg .b64 st;\n mbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(smem_u32(bar)) : "memory");
#else
  (void)bar;
  __trap();
#endif
}

// One arrival that also announces `bytes` of transactions still to come (the TMA's complete_tx).
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, unsigned bytes) {
#if CNNKERN_SM90A
  asm volatile("{\n .reg .b64 st;\n mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(smem_u32(bar)),
               "r"(bytes)
               : "memory");
#else
  (void)bar; (void)bytes;
  __trap();
#endif
}

// An arrival triggered when every cp.async this thread issued before it has completed. .noinc: the
// barrier's init count must include this arrival (the pipelines count one per producer thread).
__device__ __forceinline__ void mbar_cp_async_arrive_noinc(uint64_t* bar) {
#if CNNKERN_SM90A
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_u32(bar)) : "memory");
#else
  (void)bar;
  __trap();
#endif
}

__device__ __forceinline__ bool mbar_try_wait_parity(uint64_t* bar, unsigned parity) {
#if CNNKERN_SM90A
  unsigned ok;
  asm volatile(
      "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(ok)
      : "r"(smem_u32(bar)), "r"(parity)
      : "memory");
  return ok != 0;
#else
  (void)bar; (void)parity;
  __trap();
  return true;
#endif
}

// Blocks until the phase with parity `parity` has completed (try_wait suspends in hardware for a
// system-dependent time per attempt, so the loop is not a hot spin).
__device__ __forceinline__ void mbar_wait(uint64_t* bar, unsigned parity) {
  while (!mbar_try_wait_parity(bar, parity)) {
  }
}

}  // namespace sm90
}  // namespace cnnkern
