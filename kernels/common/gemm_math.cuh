// Block-tile math on the shared-memory stages laid out by GemmTile: accumulate As[k][m] x Bs[k][n]
// into fp32 and finally stash the accumulators as Cs[n][m] (ld kLdC) for the epilogue.
//
//   SimtMath  fp32 FMA, any element type (the fp32 path; also used by the host emulator for all
//             types since it only needs the smem layout contract). No TF32 anywhere.
//   WmmaMath  tensor cores via nvcuda::wmma m16n16k16, fp32 accumulation; fp16/bf16, sm_80+.
#pragma once

#include <mma.h>

#include "common/gemm_tile.cuh"

namespace cnnkern {

// Each thread owns a kTM x kTN block of C: rows tm*kTM.., cols tn*kTN.. (contiguous, so the smem
// reads are single 16-byte accesses for fp32).
template <class T>
struct SimtMath {
  using Tile = GemmTile<T>;
  static constexpr int kTN = 4;
  static constexpr int kThreadsN = Tile::kBN / kTN;
  static constexpr int kThreadsM = Tile::kThreads / kThreadsN;
  static constexpr int kTM = Tile::kBM / kThreadsM;
  static_assert(kThreadsN * kTN == Tile::kBN && kThreadsM * kTM == Tile::kBM, "tile must split evenly");

  float acc_[kTM][kTN];
  int tm_ = 0;
  int tn_ = 0;

  CNNKERN_HD void init(int tid) {
    tn_ = tid % kThreadsN;
    tm_ = tid / kThreadsN;
#pragma unroll
    for (int i = 0; i < kTM; ++i)
#pragma unroll
      for (int j = 0; j < kTN; ++j) acc_[i][j] = 0.0f;
  }

  template <int N>
  CNNKERN_HD static void read(const T* p, float (&out)[N]) {
    if constexpr (sizeof(T) == 4 && N % 4 == 0) {
      // p is 16-byte aligned: row pitches and fragment offsets are multiples of 4 floats.
#pragma unroll
      for (int i = 0; i < N; i += 4) {
        const float4 v = *reinterpret_cast<const float4*>(p + i);
        out[i] = Num<T>::to_float(v.x);
        out[i + 1] = Num<T>::to_float(v.y);
        out[i + 2] = Num<T>::to_float(v.z);
        out[i + 3] = Num<T>::to_float(v.w);
      }
    } else {
#pragma unroll
      for (int i = 0; i < N; ++i) out[i] = Num<T>::to_float(p[i]);
    }
  }

  CNNKERN_HD void compute(const T* As, const T* Bs) {
#pragma unroll
    for (int k = 0; k < Tile::kBK; ++k) {
      float a[kTM];
      float b[kTN];
      read<kTM>(As + k * Tile::kLdA + tm_ * kTM, a);
      read<kTN>(Bs + k * Tile::kLdB + tn_ * kTN, b);
#pragma unroll
      for (int i = 0; i < kTM; ++i)
#pragma unroll
        for (int j = 0; j < kTN; ++j) acc_[i][j] = fmaf(a[i], b[j], acc_[i][j]);
    }
  }

  CNNKERN_HD void stash(float* Cs) const {
#pragma unroll
    for (int i = 0; i < kTM; ++i)
#pragma unroll
      for (int j = 0; j < kTN; ++j) Cs[(tn_ * kTN + j) * Tile::kLdC + tm_ * kTM + i] = acc_[i][j];
  }
};

// 8 warps as 4 (m) x 2 (n); each warp owns a 32x32 sub-tile = 2x2 fragments of 16x16.
// As[k][m] is A in col_major (element (m,k) at m + k*ld); Bs[k][n] is B in row_major.
template <class T>
struct WmmaMath {
  using Tile = GemmTile<T>;
  static constexpr int kWarpsM = 4;
  static constexpr int kWarpsN = 2;
  static constexpr int kWarpTile = 32;
  static constexpr int kFrag = 16;
  static constexpr int kFragsPerWarp = kWarpTile / kFrag;
  static_assert(Tile::kThreads == 32 * kWarpsM * kWarpsN, "one warp per 32x32 sub-tile");
  static_assert(Tile::kBM == kWarpsM * kWarpTile && Tile::kBN == kWarpsN * kWarpTile, "warp grid");
  static_assert(Tile::kBK % kFrag == 0, "tile K must be a multiple of 16");
  static_assert(Tile::kLdA % 8 == 0 && Tile::kLdB % 8 == 0 && Tile::kLdC % 4 == 0, "WMMA ldm rules");

  using FragA = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, T, nvcuda::wmma::col_major>;
  using FragB = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, T, nvcuda::wmma::row_major>;
  using FragC = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>;

  FragC acc_[kFragsPerWarp][kFragsPerWarp];
  int wm_ = 0;
  int wn_ = 0;

  // Device-only bodies: this type is only ever instantiated for kernels (the host emulator uses
  // SimtMath), but it must still parse in the host compilation pass.
  CNNKERN_HD void init(int tid) {
#if defined(__CUDA_ARCH__)
    const int warp = tid / 32;
    wm_ = warp % kWarpsM;
    wn_ = warp / kWarpsM;
#pragma unroll
    for (int i = 0; i < kFragsPerWarp; ++i)
#pragma unroll
      for (int j = 0; j < kFragsPerWarp; ++j) nvcuda::wmma::fill_fragment(acc_[i][j], 0.0f);
#else
    (void)tid;
#endif
  }

  CNNKERN_HD void compute(const T* As, const T* Bs) {
#if defined(__CUDA_ARCH__)
#pragma unroll
    for (int kk = 0; kk < Tile::kBK; kk += kFrag) {
      FragA a[kFragsPerWarp];
      FragB b[kFragsPerWarp];
#pragma unroll
      for (int i = 0; i < kFragsPerWarp; ++i)
        nvcuda::wmma::load_matrix_sync(a[i], As + kk * Tile::kLdA + wm_ * kWarpTile + i * kFrag, Tile::kLdA);
#pragma unroll
      for (int j = 0; j < kFragsPerWarp; ++j)
        nvcuda::wmma::load_matrix_sync(b[j], Bs + kk * Tile::kLdB + wn_ * kWarpTile + j * kFrag, Tile::kLdB);
#pragma unroll
      for (int i = 0; i < kFragsPerWarp; ++i)
#pragma unroll
        for (int j = 0; j < kFragsPerWarp; ++j) nvcuda::wmma::mma_sync(acc_[i][j], a[i], b[j], acc_[i][j]);
    }
#else
    (void)As;
    (void)Bs;
#endif
  }

  CNNKERN_HD void stash(float* Cs) const {
#if defined(__CUDA_ARCH__)
#pragma unroll
    for (int i = 0; i < kFragsPerWarp; ++i)
#pragma unroll
      for (int j = 0; j < kFragsPerWarp; ++j) {
        // Cs[n][m]: element (m, n) at m + n*ld, i.e. column-major C.
        float* dst = Cs + (wn_ * kWarpTile + j * kFrag) * Tile::kLdC + wm_ * kWarpTile + i * kFrag;
        nvcuda::wmma::store_matrix_sync(dst, acc_[i][j], Tile::kLdC, nvcuda::wmma::mem_col_major);
      }
#else
    (void)Cs;
#endif
  }
};

// Math used by the device kernels, and the oldest architecture it runs on (checked on the host too).
template <class T>
struct DeviceMath {
  using type = WmmaMath<T>;
  static constexpr int kMinArch = 800;
};
template <>
struct DeviceMath<float> {
  using type = SimtMath<float>;
  static constexpr int kMinArch = 0;
};

}  // namespace cnnkern
