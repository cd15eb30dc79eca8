// Block tile shapes and the shared-memory layout they imply, per element type.
//
// Two operand layouts, a trait of the tile (SmemLayout):
//   kKMajor   As[k][m], Bs[k][n], rows padded by 16 bytes. The fp32 path (SimtMath): every thread reads
//             a contiguous m (n) fragment of one k row as 16-byte vectors. Kept there because the
//             scalar FMA loop wants exactly that and fp32 has no 2-byte store problem.
//   kKContig  As[m][k], Bs[n][k], one row = kBK 16-bit elements = 64 (kBK 32) or 128 bytes (kBK 64), no
//             padding; the 16-byte chunks of a row are XOR-swizzled by ((row >> 1) & 3) (4 chunks) or
//             (row & 7) (8 chunks, GemmTileBig: 8 threads fill one 128-byte row = one line, and
//             ldmatrix's 8 consecutive rows read 8 different chunks). Why the 64-byte swizzle:
//             - a 16-byte store from each of 8 consecutive threads (rows 2R, 2R+1, all four chunks:
//               the cp.async mapping) covers one aligned 128-byte line -> conflict-free;
//             - ldmatrix reads one 16-byte chunk of 8 consecutive rows: rows r and r+1 sit 64 bytes
//               apart and the swizzle gives rows 0,2,4,6 (and 1,3,5,7) four different chunks, so the
//               8 rows hit 8 distinct 16-byte bank groups -> conflict-free.
//             K-contiguous tiles let 16-byte gathers along K land as one 16-byte store (cp.async),
//             where As[k][m] needed eight 2-byte stores with 4-way conflicts (kernel audit, section 1).
// After the mainloop the same bytes are reused for the fp32 accumulator tile Cs[n][m] (row pitch kLdC,
// m XOR-swizzled by (n >> 3) & 3, see c_off).
#pragma once

#include "common/numeric.cuh"

namespace cnnkern {

enum class SmemLayout { kKMajor, kKContig };

template <int BM, int BN, int BK, class T, SmemLayout L, int Stages>
struct GemmTileShape {
  using Element = T;
  static constexpr int kBM = BM;
  static constexpr int kBN = BN;
  static constexpr int kBK = BK;
  static constexpr int kThreads = 256;
  static constexpr SmemLayout kLayout = L;
  static constexpr int kStages = Stages;
  static constexpr bool kKContig = L == SmemLayout::kKContig;

  // kKMajor: padded row pitch of the k rows.
  static constexpr int kPad = 16 / static_cast<int>(sizeof(T));
  static constexpr int kLdA = BM + kPad;
  static constexpr int kLdB = BN + kPad;

  static constexpr int kAElems = kKContig ? BM * BK : BK * kLdA;
  static constexpr int kBElems = kKContig ? BN * BK : BK * kLdB;
  static constexpr int kStageElems = kAElems + kBElems;  // A then B, one pipeline stage
  static constexpr int kMainloopBytes = kStages * kStageElems * static_cast<int>(sizeof(T));

  // Cs[n][m]: 4 floats of padding per row (the statistics epilogue combines its partials there). With a
  // pitch of 4 (mod 32) banks and m ^ ((n >> 3) & 3), reads along n (channel-fast output), reads along m
  // and the mma fragment stash are all conflict-free.
  static constexpr int kLdC = BM + 4;
  static constexpr int kEpilogueBytes = BN * kLdC * static_cast<int>(sizeof(float));
  static constexpr int kSmemBytes = kMainloopBytes > kEpilogueBytes ? kMainloopBytes : kEpilogueBytes;

  // Above 48 KiB the kernel takes its shared memory dynamically (the launcher raises the limit).
  static constexpr bool kDynamicSmem = kSmemBytes > 48 * 1024;
  // 16-byte chunks per K-contiguous row
  static constexpr int kChunks = BK * static_cast<int>(sizeof(T)) / 16;
  static_assert(!kKContig || (sizeof(T) == 2 && (kChunks == 4 || kChunks == 8)), "the swizzle assumes 64- or 128-byte rows");
  static_assert((kAElems * sizeof(T)) % 128 == 0 && (kStageElems * sizeof(T)) % 128 == 0,
                "stage and operand bases stay 128-byte aligned (the swizzle is relative to a 128-byte line)");
  static_assert(BM % 4 == 0, "the Cs swizzle permutes m within groups of 4");

  // Element offset of operand element (row, k) in its stage tile of `Rows` rows (A: m, B: n).
  template <int Rows>
  CNNKERN_HD static int off(int row, int k) {
    if constexpr (kKContig) {
      const int swz = kChunks == 4 ? row >> 1 : row;
      return row * BK + ((((k >> 3) ^ swz) & (kChunks - 1)) << 3) + (k & 7);
    } else {
      return k * (Rows + kPad) + row;
    }
  }
  CNNKERN_HD static int a_off(int m, int k) { return off<BM>(m, k); }
  CNNKERN_HD static int b_off(int n, int k) { return off<BN>(n, k); }
  // Cs element (n, m).
  CNNKERN_HD static int c_off(int n, int m) { return n * kLdC + (m ^ ((n >> 3) & 3)); }
};

// 16-bit types: K-contiguous swizzled tiles, 3-stage cp.async pipeline (36 KiB). fp32 keeps As[k][m] with
// a shorter K step (two register-staged stages of a 128x64 tile in 48 KiB).
template <class T>
struct GemmTile : GemmTileShape<128, 64, 32, T, SmemLayout::kKContig, 3> {};
template <>
struct GemmTile<float> : GemmTileShape<128, 64, 16, float, SmemLayout::kKMajor, 2> {};

// The large-GEMM configuration of the 16-bit forward (chosen by conv2d_fwd_tile_plan): 128x128 with BK 64,
// 3 stages of 32 KiB (96 KiB, dynamic), 2 CTAs/SM. Per 128 HMMA it moves 2/3 of the L2 bytes and 3/4 of
// the shared-memory wavefronts of GemmTile (model: implicit_gemm.md).
template <class T>
struct GemmTileBig : GemmTileShape<128, 128, 64, T, SmemLayout::kKContig, 3> {};

}  // namespace cnnkern
