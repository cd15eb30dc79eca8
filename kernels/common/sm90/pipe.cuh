// The stage ring of the sm_90a warp-specialized kernels (conv2d forward and weight gradient): which stage
// and which mbarrier phase each k-tile iteration uses, shared by the kernels and their CPU replays.
#pragma once

#include "common/sm90/arch.cuh"

namespace cnnkern {
namespace sm90 {

// Iteration `it` counts k tiles over all the tiles this block processes (the ring continues across tiles).
template <class Tile>
struct Pipe {
  CNNKERN_HD static int stage(int it) { return it % Tile::kStages; }
  // Parity of the 'full' phase the consumer waits for in iteration it; the producer waits for 'empty'
  // with the opposite parity (the first pass over the ring waits for the phase "before the first").
  CNNKERN_HD static unsigned full_parity(int it) { return static_cast<unsigned>(it / Tile::kStages) & 1u; }
  CNNKERN_HD static unsigned empty_parity(int it) { return full_parity(it) ^ 1u; }
  // wgmma groups a consumer leaves in flight after its per-k-tile wait_group, and the iteration whose stage
  // it may then release ('empty'): only stages whose MMAs have retired. The tile tail (wait_group<0>)
  // releases the rest.
  static constexpr int kMmaInFlight = 1;
  CNNKERN_HD static int released_it(int it) { return it - kMmaInFlight; }
};

// Waits for every cp.async this thread issued (the producer before it exits: none may still be writing).
__device__ __forceinline__ void cp_async_wait_all() {
#if CNNKERN_SM90A
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

}  // namespace sm90
}  // namespace cnnkern
