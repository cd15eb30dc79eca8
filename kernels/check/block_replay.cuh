// Host replay of the device kernels, block by block and thread by thread, with the barrier
// intervals of implicit_gemm_kernel reproduced phase by phase (CPU only; used by the emulator tests).
//
// What is emulated beyond plain per-thread code:
//   cp.async   (model shared with the depthwise replay: check/async_queue.cuh) each thread's copies go
//              to its own queue (HostAsyncSink), grouped by commit. At issue the
//              destination is poisoned at once (until the copy completes its bytes are undefined: a
//              copy into a buffer that other threads still read in the same barrier interval shows),
//              and the data lands only when a wait_group<kWaitDepth> retires the group (reading a tile
//              before its wait shows). One pass checks both; shared memory is poisoned per block too.
//   ldmatrix / mma.sync (16-bit types)  per warp, from the lane address and accumulator maps of
//              MmaMath, with the register distributions of the PTX ISA (see gemm_math.cuh): the 32
//              lanes' row addresses are gathered, each lane receives its two elements of each 8x8
//              matrix, the A/B/C fragments are reassembled into matrices by the documented ownership,
//              multiplied in fp32 and scattered back. A wrong lane, quadrant or register index in the
//              device maps therefore produces a wrong result here.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "check/async_queue.cuh"
#include "common/implicit_gemm.cuh"
#include "conv/conv2d_wgrad.cuh"

namespace cnnkern {

// ---- warp-level tensor-core emulation (MmaMath)
template <class T>
uint16_t bits16(T v) {
  uint16_t b;
  std::memcpy(&b, &v, 2);
  return b;
}
template <class T>
float from_bits16(uint16_t b) {
  T v;
  std::memcpy(&v, &b, 2);
  return Num<T>::to_float(v);
}

// ldmatrix.sync.aligned.m8n8.x4.b16: lane l supplies the row address for matrix l / 8, row l % 8;
// register q of lane l receives row l / 4 of matrix q, elements 2 (l % 4) and 2 (l % 4) + 1.
template <class T>
void emulate_ldmatrix_x4(const T* const (&row_addr)[32], const T* base, int elems, uint16_t (&out)[32][4][2]) {
  for (int l = 0; l < 32; ++l) {
    const T* p = row_addr[l];
    if (p < base || p + 8 > base + elems || reinterpret_cast<uintptr_t>(p) % 16 != 0) {
      std::printf("ldmatrix: lane %d row address outside its tile or misaligned\n", l);
      std::abort();
    }
  }
  for (int l = 0; l < 32; ++l)
    for (int q = 0; q < 4; ++q) {
      const T* row = row_addr[8 * q + l / 4];
      out[l][q][0] = bits16(row[2 * (l % 4)]);
      out[l][q][1] = bits16(row[2 * (l % 4) + 1]);
    }
}

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}: fragments of the 32 lanes -> D = A B + C.
template <class T>
void emulate_mma_m16n8k16(const uint16_t (&a)[32][4][2], const uint16_t (&b)[32][2][2], float (&c)[32][4]) {
  float A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = from_bits16<T>(a[l][0][h]);
      A[g + 8][2 * t + h] = from_bits16<T>(a[l][1][h]);
      A[g][2 * t + 8 + h] = from_bits16<T>(a[l][2][h]);
      A[g + 8][2 * t + 8 + h] = from_bits16<T>(a[l][3][h]);
      B[2 * t + h][g] = from_bits16<T>(b[l][0][h]);
      B[2 * t + 8 + h][g] = from_bits16<T>(b[l][1][h]);
      C[g][2 * t + h] = c[l][h];
      C[g + 8][2 * t + h] = c[l][2 + h];
    }
  }
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      float s = C[i][j];
      for (int k = 0; k < 16; ++k) s = std::fma(A[i][k], B[k][j], s);
      C[i][j] = s;
    }
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int h = 0; h < 2; ++h) {
      c[l][h] = C[g][2 * t + h];
      c[l][2 + h] = C[g + 8][2 * t + h];
    }
  }
}

// One warp's MmaMath::compute on stage tiles As/Bs, lanes = the warp's 32 MmaMath objects.
template <class T, class M>
void emulate_mma_compute(M* const (&lanes)[32], const T* As, const T* Bs) {
  using Tile = typename M::Tile;
  for (int kk = 0; kk < Tile::kBK; kk += 16) {
    uint16_t a[M::kMi][32][4][2];
    uint16_t b[M::kNj / 2][32][4][2];
    for (int i = 0; i < M::kMi; ++i) {
      const T* addr[32];
      for (int l = 0; l < 32; ++l) addr[l] = As + M::a_ldsm_off(lanes[l]->wm_, lanes[l]->lane_, i, kk);
      emulate_ldmatrix_x4<T>(addr, As, Tile::kAElems, a[i]);
    }
    for (int jp = 0; jp < M::kNj / 2; ++jp) {
      const T* addr[32];
      for (int l = 0; l < 32; ++l) addr[l] = Bs + M::b_ldsm_off(lanes[l]->wn_, lanes[l]->lane_, jp, kk);
      emulate_ldmatrix_x4<T>(addr, Bs, Tile::kBElems, b[jp]);
    }
    for (int i = 0; i < M::kMi; ++i)
      for (int j = 0; j < M::kNj; ++j) {
        // Operand registers exactly as MmaMath::compute passes them: A = ldmatrix regs 0..3 of tile i,
        // B = regs 2 (j & 1) and 2 (j & 1) + 1 of pair j / 2.
        uint16_t bf[32][2][2];
        float c[32][4];
        for (int l = 0; l < 32; ++l) {
          for (int r = 0; r < 2; ++r)
            for (int h = 0; h < 2; ++h) bf[l][r][h] = b[j / 2][l][(j & 1) * 2 + r][h];
          for (int e = 0; e < 4; ++e) c[l][e] = lanes[l]->acc_[i][j][e];
        }
        emulate_mma_m16n8k16<T>(a[i], bf, c);
        for (int l = 0; l < 32; ++l)
          for (int e = 0; e < 4; ++e) lanes[l]->acc_[i][j][e] = c[l][e];
      }
  }
}

// The math the replay runs: the device's MmaMath (warp-emulated) for 16-bit types, SimtMath for fp32.
template <class T, class Tile = GemmTile<T>>
struct ReplayMath {
  using type = MmaMath<T, Tile>;
  static constexpr bool kWarp = true;
};
template <class Tile>
struct ReplayMath<float, Tile> {
  using type = SimtMath<float>;
  static constexpr bool kWarp = false;
};

// Within one barrier interval the kernel's threads run concurrently; running every stage() (and
// every cp.async, which poisons its destination at once) before any compute() is the adversarial order.
// Tile: the kernel's tile configuration (implicit_gemm_kernel<Problem, Tile>).
template <class Problem, class Tile = GemmTile<typename Problem::Element>>
void replay(const Problem& p) {
  using T = typename Problem::Element;
  using RM = ReplayMath<T, Tile>;
  using Block = GemmBlock<Problem, typename RM::type>;
  constexpr int S = Block::kStages;
  static_assert(Tile::kSmemBytes % 16 == 0, "");
  std::vector<unsigned char> raw(Tile::kSmemBytes + 128);
  unsigned char* smem = raw.data() + (128 - reinterpret_cast<uintptr_t>(raw.data()) % 128) % 128;
  std::vector<Block> blk(Tile::kThreads);
  std::vector<ThreadAsyncQueue> q(Tile::kThreads);
  HostAsyncSink*& sink = host_async_sink();
  auto issue = [&](int t, int tile, int buf) {
    sink = &q[t];
    blk[t].issue(smem, tile, buf);
    sink = nullptr;
  };
  auto barrier_wait = [&](int depth) {
    for (auto& qq : q) qq.wait(depth);
  };
  auto compute = [&](int buf) {
    if constexpr (RM::kWarp) {
      for (int w = 0; w < Tile::kThreads / 32; ++w) {
        typename RM::type* lanes[32];
        for (int l = 0; l < 32; ++l) lanes[l] = &blk[w * 32 + l].math_;
        emulate_mma_compute<T>(lanes, Block::stage_a(smem, buf), Block::stage_b(smem, buf));
      }
    } else {
      for (auto& b : blk) b.compute(smem, buf);
    }
  };
  const int gx = (p.gemm_m() + Tile::kBM - 1) / Tile::kBM;
  const int gy = (p.gemm_n() + Tile::kBN - 1) / Tile::kBN;
  const int gz = p.grid_z();
  for (int z = 0; z < gz; ++z)
    for (int y = 0; y < gy; ++y)
      for (int x = 0; x < gx; ++x) {
        // Poison shared memory: nothing may be read before it is staged.
        std::memset(smem, kSmemPoison, Tile::kSmemBytes);
        for (int t = 0; t < Tile::kThreads; ++t) {
          blk[t].init(p, x, y, z, t);
          q[t].reset();
        }
        const int nt = blk[0].num_k_tiles_;
        for (int s = 0; s < S - 1; ++s) {
          for (int t = 0; t < Tile::kThreads; ++t) issue(t, s < nt ? s : -1, Block::buffer(s));
          if (s < nt)
            for (auto& b : blk) {
              b.fetch(s);
              b.stage(smem, Block::buffer(s));
            }
        }
        for (int t = 0; t < nt; ++t) {
          barrier_wait(Block::kWaitDepth);
          const int next = Block::prefetch_tile(t);
          const bool more = next < nt;
          for (int i = 0; i < Tile::kThreads; ++i) issue(i, more ? next : -1, Block::buffer(next));
          if (more) {
            for (auto& b : blk) b.fetch(next);
            for (auto& b : blk) b.stage(smem, Block::buffer(next));
          }
          compute(Block::buffer(t));
        }
        barrier_wait(0);
        for (auto& b : blk) {
          b.stash(smem);
          b.begin_epilogue(p, z);
        }
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
