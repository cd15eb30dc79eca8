// Host replay of the device kernels, block by block and thread by thread, with the barrier
// intervals of implicit_gemm_kernel reproduced phase by phase (CPU only; used by the emulator tests).
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/implicit_gemm.cuh"
#include "conv/conv2d_wgrad.cuh"

namespace cnnkern {

// Within one barrier interval the kernel's threads run concurrently; running every stage() before
// any compute() is the adversarial order for the double-buffer protocol (a buffer mix-up shows up).
template <class Problem>
void replay(const Problem& p) {
  using T = typename Problem::Element;
  using Tile = GemmTile<T>;
  using Block = GemmBlock<Problem, SimtMath<T>>;
  static_assert(Tile::kSmemBytes % 16 == 0, "");
  std::vector<unsigned char> raw(Tile::kSmemBytes + 128);
  unsigned char* smem = raw.data() + (128 - reinterpret_cast<uintptr_t>(raw.data()) % 128) % 128;
  std::vector<Block> blk(Tile::kThreads);
  const int gx = (p.gemm_m() + Tile::kBM - 1) / Tile::kBM;
  const int gy = (p.gemm_n() + Tile::kBN - 1) / Tile::kBN;
  const int gz = p.grid_z();
  for (int z = 0; z < gz; ++z)
    for (int y = 0; y < gy; ++y)
      for (int x = 0; x < gx; ++x) {
        // Poison shared memory: nothing may be read before it is staged.
        std::memset(smem, 0x7f, Tile::kSmemBytes);
        for (int t = 0; t < Tile::kThreads; ++t) blk[t].init(p, x, y, z, t);
        const int nt = blk[0].num_k_tiles_;
        if (nt > 0)
          for (auto& b : blk) {
            b.fetch(0);
            b.stage(smem, 0);
          }
        for (int t = 0; t < nt; ++t) {
          const bool more = t + 1 < nt;
          for (auto& b : blk)
            if (more) b.fetch(t + 1);
          for (auto& b : blk)
            if (more) b.stage(smem, (t + 1) & 1);
          for (auto& b : blk) b.compute(smem, t & 1);
        }
        for (auto& b : blk) b.stash(smem);
        for (auto& b : blk) b.write(smem);
        if constexpr (Block::kStats) {
          for (auto& b : blk) b.stats_sum(smem);
          for (auto& b : blk) b.stats_center(smem);
          for (auto& b : blk) b.stats_put_m2(smem);
          for (auto& b : blk) b.stats_store(smem);
        }
      }
}

template <class T>
void replay_reduce(const Conv2dWgradReduce<T>& r) {
  for (int e = 0; e < r.total; ++e) r.run(e);
}

}  // namespace cnnkern
