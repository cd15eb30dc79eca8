// Block tile shapes and the shared-memory layout they imply, per element type.
//
// Shared memory holds, per pipeline stage, A as As[k][m] and B as Bs[k][n] (both "K-major rows"), so
// one layout serves the SIMT path (contiguous m/n fragments per thread) and WMMA (A col_major,
// B row_major). Rows are padded by 16 bytes: keeps vector/WMMA alignment and skews banks.
// After the mainloop the same bytes are reused for the fp32 accumulator tile Cs[n][m].
#pragma once

#include "common/numeric.cuh"

namespace cnnkern {

template <int BM, int BN, int BK, class T>
struct GemmTileShape {
  static constexpr int kBM = BM;
  static constexpr int kBN = BN;
  static constexpr int kBK = BK;
  static constexpr int kThreads = 256;

  static constexpr int kPad = 16 / static_cast<int>(sizeof(T));
  static constexpr int kLdA = BM + kPad;
  static constexpr int kLdB = BN + kPad;
  static constexpr int kLdC = BM + 4;  // fp32; WMMA store needs a multiple of 4 floats

  static constexpr int kStageElems = BK * (kLdA + kLdB);  // A then B, one pipeline stage
  static constexpr int kStages = 2;
  static constexpr int kMainloopBytes = kStages * kStageElems * static_cast<int>(sizeof(T));
  static constexpr int kEpilogueBytes = BN * kLdC * static_cast<int>(sizeof(float));
  static constexpr int kSmemBytes = kMainloopBytes > kEpilogueBytes ? kMainloopBytes : kEpilogueBytes;

  static_assert(kSmemBytes <= 48 * 1024, "static shared memory is limited to 48 KiB");
  // Stage and operand offsets stay 32-byte aligned (WMMA pointer requirement).
  static_assert((BK * kLdA * sizeof(T)) % 32 == 0, "B stage offset must be 32-byte aligned");
  static_assert((kStageElems * sizeof(T)) % 32 == 0, "stage size must be 32-byte aligned");
};

// fp32 uses a shorter K step to fit two stages of a 128x64 tile into 48 KiB.
template <class T>
struct GemmTile : GemmTileShape<128, 64, 32, T> {};
template <>
struct GemmTile<float> : GemmTileShape<128, 64, 16, float> {};

}  // namespace cnnkern
