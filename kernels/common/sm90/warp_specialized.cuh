// The body of the sm_90a warp-specialized, persistent implicit-GEMM kernels (conv/conv2d_fwd_sm90.cuh,
// conv/conv2d_wgrad_sm90.cuh): warpgroup 0 produces each k tile into a stage of the ring (thread 0: expect_tx
// on 'full' and the kernel's TMA boxes; all 128 threads: the kernel's 16-byte cp.async gather, then one .noinc
// arrival each), warpgroups 1.. consume it (wait 'full', proxy fence, 4 wgmma per 64-wide k tile with the
// kernel's descriptors and transpose immediates, keep sm90::Pipe::kMmaInFlight groups in flight and release
// the stage before them on 'empty'), and after each work item run the kernel's epilogue from the accumulator
// registers while the producer already fills the next item's stages. The stage ring continues across items.
//
// A kernel policy K provides (device code):
//   using Tile (FwdTile / WgradTile), using Elem, using Producer, static constexpr int kTxBytes;
//   int num_items() const;  void k_range(int item, int& kt_begin, int& kt_end) const;
//   void init_producer(Producer&, int item, int t) const;
//   template <class F> void copies(const Producer&, int kt, F f) const: f(stage offset, src, valid) per cp.async;
//   void tma(int item, int kt, unsigned char* stage, const CUtensorMap*, uint64_t* full) const;
//   uint64_t a_desc(uint32_t stage, int w, int kk) const;  uint64_t b_desc(uint32_t stage, int kk) const;
//   void epilogue(const float (&acc)[Tile::kAccRegs], int t, int w, int item, unsigned char* scratch) const:
//     scratch = the dynamic shared memory past the barriers (what the launch adds to Tile::kSmemBytes).
// The pieces behind those are host-callable and replayed by kernels/check/emulate_sm90.cuh's models.
#pragma once

#include <cstdint>

#include "common/cp_async.cuh"
#include "common/sm90/mbarrier.cuh"
#include "common/sm90/pipe.cuh"
#include "common/sm90/tma.cuh"
#include "common/sm90/wgmma.cuh"

namespace cnnkern {
namespace sm90 {

// Barrier 1 among the consumer warpgroups only (barrier 0 is __syncthreads; the producer never waits on it):
// the epilogues that combine both consumers' rows (the forward's statistics) meet here.
template <class Tile>
__device__ __forceinline__ void consumer_sync() {
#if CNNKERN_SM90A
  asm volatile("bar.sync 1, %0;\n" ::"n"(128 * Tile::kConsumers) : "memory");
#endif
}

template <class K>
__device__ __forceinline__ void run_warp_specialized(const K& k, const CUtensorMap* map) {
#if CNNKERN_SM90A
  using Tile = typename K::Tile;
  using P = Pipe<Tile>;
  extern __shared__ unsigned char dsmem[];
  unsigned char* smem = dsmem + ((kSw128AtomBytes - (smem_u32(dsmem) & (kSw128AtomBytes - 1))) & (kSw128AtomBytes - 1));
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + Tile::kStages * Tile::kStageBytes);
  uint64_t* empty = full + Tile::kStages;

  const int tid = threadIdx.x;
  if (tid == 0) {
    for (int s = 0; s < Tile::kStages; ++s) {
      mbar_init(full + s, Tile::kFullCount);
      mbar_init(empty + s, Tile::kEmptyCount);
    }
    mbar_fence_init();
    tma_prefetch_map(map);
  }
  __syncthreads();

  const int wg = tid / 128;
  const int t = tid % 128;
  const int items = k.num_items();
  if (wg == 0) {
    typename K::Producer prod;
    int it = 0;
    for (int item = blockIdx.x; item < items; item += gridDim.x) {
      int kt_begin, kt_end;
      k.k_range(item, kt_begin, kt_end);
      k.init_producer(prod, item, t);
      for (int kt = kt_begin; kt < kt_end; ++kt, ++it) {
        const int s = P::stage(it);
        mbar_wait(empty + s, P::empty_parity(it));
        unsigned char* st = smem + s * Tile::kStageBytes;
        if (t == 0) {
          mbar_arrive_expect_tx(full + s, K::kTxBytes);
          k.tma(item, kt, st, map, full + s);
        }
        k.copies(prod, kt, [&](uint32_t off, const typename K::Elem* src, bool valid) { cp_async16(st + off, src, valid); });
        mbar_cp_async_arrive_noinc(full + s);
      }
    }
    cp_async_wait_all();
  } else {
    const int w = wg - 1;
    const bool lane0 = (t & 31) == 0;
    float acc[Tile::kAccRegs];
    int it = 0;
    for (int item = blockIdx.x; item < items; item += gridDim.x) {
      int kt_begin, kt_end;
      k.k_range(item, kt_begin, kt_end);
#pragma unroll
      for (int i = 0; i < Tile::kAccRegs; ++i) acc[i] = 0.0f;
      const int it0 = it;
      for (int kt = kt_begin; kt < kt_end; ++kt, ++it) {
        const int s = P::stage(it);
        mbar_wait(full + s, P::full_parity(it));
        fence_proxy_async_smem();
        const uint32_t st = smem_u32(smem + s * Tile::kStageBytes);
        wgmma_fence();
        fence_regs(acc);
#pragma unroll
        for (int kk = 0; kk < Tile::kKSteps; ++kk)
          Wgmma<typename K::Elem, Tile::kBN>::template mma<Tile::kTransA, Tile::kTransB>(acc, k.a_desc(st, w, kk),
                                                                                         k.b_desc(st, kk), 1);
        wgmma_commit();
        fence_regs(acc);
        wgmma_wait<P::kMmaInFlight>();
        fence_regs(acc);
        const int r = P::released_it(it);
        if (r >= it0 && lane0) mbar_arrive(empty + P::stage(r));
      }
      wgmma_wait<0>();
      fence_regs(acc);
      for (int r = P::released_it(it - 1) + 1; r < it; ++r)
        if (r >= it0 && lane0) mbar_arrive(empty + P::stage(r));
      k.epilogue(acc, t, w, item, smem + Tile::kStages * Tile::kStageBytes + Tile::kBarrierBytes);
    }
  }
#else
  (void)k;
  (void)map;
  __trap();
#endif
}

}  // namespace sm90
}  // namespace cnnkern
