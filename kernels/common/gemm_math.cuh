// Block-tile math on the shared-memory stages laid out by GemmTile: accumulate A x B into fp32 and
// finally stash the accumulators as Cs (GemmTile::c_off) for the epilogue.
//
//   SimtMath  fp32 FMA, any element type and layout (the fp32 device path; the host emulator can run it
//             on every tile layout). No TF32 anywhere.
//   MmaMath   tensor cores via ldmatrix + mma.sync.m16n8k16, fp32 accumulation; fp16/bf16, sm_80+.
#pragma once

#include <type_traits>

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
      if constexpr (Tile::kKContig) {  // host emulation only (the device runs MmaMath on these tiles)
#pragma unroll
        for (int i = 0; i < kTM; ++i) a[i] = Num<T>::to_float(As[Tile::a_off(tm_ * kTM + i, k)]);
#pragma unroll
        for (int j = 0; j < kTN; ++j) b[j] = Num<T>::to_float(Bs[Tile::b_off(tn_ * kTN + j, k)]);
      } else {
        read<kTM>(As + Tile::a_off(tm_ * kTM, k), a);
        read<kTN>(Bs + Tile::b_off(tn_ * kTN, k), b);
      }
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
      for (int j = 0; j < kTN; ++j) Cs[Tile::c_off(tn_ * kTN + j, tm_ * kTM + i)] = acc_[i][j];
  }
};

// Tensor cores through inline PTX: ldmatrix.x4 from the K-contiguous swizzled tiles + mma.sync m16n8k16
// (fp16 or bf16 in, fp32 accumulate), sm_80+. 8 warps as 4 (m) x 2 (n); each warp owns a 32x32
// sub-tile = 2 (m16) x 4 (n8) mma tiles, 8 mma per 16-wide k step. A 128-wide N tile (GemmTileBig) takes
// 2 (m) x 4 (n) warps of 64x32 = 4 (m16) x 4 (n8) mma tiles.
//
// Fragment conventions (PTX ISA, "Matrix fragments for mma.m16n8k16" and "ldmatrix"), with lane
// l = 4*g + t (g = groupID, t = thread in group):
//   ldmatrix.x4: lanes 8q..8q+7 give the row addresses of 8x8 matrix q; destination register q of lane l
//                holds row g of matrix q, elements 2t, 2t+1.
//   A (16x16, row-major): a0 (g, 2t..), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
//   B (16x8, "col"):      b0 (k 2t.., n g), b1 (k 2t+8.., n g)
//   C (16x8, fp32):       c0,c1 (g, 2t, 2t+1), c2,c3 (g+8, 2t, 2t+1)
// So ldmatrix.x4 of A's four 8x8 quadrants in the order (m0,k0) (m8,k0) (m0,k8) (m8,k8) is a0..a3, and
// ldmatrix.x4 of Bs[n][k] quadrants (n0,k0) (n0,k8) (n8,k0) (n8,k8) is (b0,b1) of two n8 tiles; no
// transposes, because both tiles are K-contiguous. The lane -> address and lane -> C element maps are
// static functions shared with the host emulator (kernels/check/block_replay.cuh), which replays
// ldmatrix and mma with these documented distributions, so a wrong index here fails there.
template <class T, class TileT = GemmTile<T>>
struct MmaMath {
  using Tile = TileT;
  static_assert(Tile::kKContig, "ldmatrix without .trans needs K-contiguous tiles");
  static constexpr int kWarpsN = Tile::kBN / 32;
  static constexpr int kWarpsM = 8 / kWarpsN;
  static constexpr int kWarpM = Tile::kBM / kWarpsM;  // 32 (64 for a 128-wide N tile)
  static constexpr int kWarpN = Tile::kBN / kWarpsN;  // 32
  static constexpr int kMi = kWarpM / 16;             // m16 tiles per warp
  static constexpr int kNj = kWarpN / 8;              // n8 tiles per warp
  static_assert(Tile::kThreads == 32 * kWarpsM * kWarpsN, "8 warps");
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0 && Tile::kBK % 16 == 0, "warp tile");

  float acc_[kMi][kNj][4];
  int wm_ = 0;
  int wn_ = 0;
  int lane_ = 0;

  CNNKERN_HD void init(int tid) {
    const int warp = tid / 32;
    lane_ = tid % 32;
    wm_ = warp % kWarpsM;
    wn_ = warp / kWarpsM;
#pragma unroll
    for (int i = 0; i < kMi; ++i)
#pragma unroll
      for (int j = 0; j < kNj; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc_[i][j][e] = 0.0f;
  }

  // Element offset in As of the row this lane addresses for ldmatrix.x4 of A tile i at k step kk.
  CNNKERN_HD static int a_ldsm_off(int wm, int lane, int i, int kk) {
    const int q = lane >> 3, r = lane & 7;
    return Tile::a_off(wm * kWarpM + i * 16 + r + ((q & 1) << 3), kk + ((q >> 1) << 3));
  }
  // Element offset in Bs for ldmatrix.x4 of the n16 pair jp (n8 tiles 2jp, 2jp+1) at k step kk.
  CNNKERN_HD static int b_ldsm_off(int wn, int lane, int jp, int kk) {
    const int q = lane >> 3, r = lane & 7;
    return Tile::b_off(wn * kWarpN + jp * 16 + r + ((q >> 1) << 3), kk + ((q & 1) << 3));
  }
  // The (m, n) in the block tile of accumulator element e of mma tile (i, j) held by this lane.
  CNNKERN_HD static int c_m(int wm, int lane, int i, int e) { return wm * kWarpM + i * 16 + (lane >> 2) + ((e >> 1) << 3); }
  CNNKERN_HD static int c_n(int wn, int lane, int j, int e) { return wn * kWarpN + j * 8 + ((lane & 3) << 1) + (e & 1); }

#if defined(__CUDA_ARCH__)
  __device__ static void ldsm_x4(const T* p, unsigned (&r)[4]) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
  }
  __device__ static void mma(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    if constexpr (std::is_same<T, __half>::value) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
          "{%0, %1, %2, %3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
          "{%0, %1, %2, %3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
  }
#endif

  // Device only: the host emulator replays this warp-collectively (emulate_mma_compute).
  CNNKERN_HD void compute(const T* As, const T* Bs) {
#if defined(__CUDA_ARCH__)
#pragma unroll(kMi > 2 ? 2 : 4)
    for (int kk = 0; kk < Tile::kBK; kk += 16) {
      unsigned a[kMi][4];
      unsigned b[kNj / 2][4];
#pragma unroll
      for (int i = 0; i < kMi; ++i) ldsm_x4(As + a_ldsm_off(wm_, lane_, i, kk), a[i]);
#pragma unroll
      for (int jp = 0; jp < kNj / 2; ++jp) ldsm_x4(Bs + b_ldsm_off(wn_, lane_, jp, kk), b[jp]);
#pragma unroll
      for (int i = 0; i < kMi; ++i)
#pragma unroll
        for (int j = 0; j < kNj; ++j) mma(acc_[i][j], a[i], b[j / 2][(j & 1) * 2], b[j / 2][(j & 1) * 2 + 1]);
    }
#else
    (void)As;
    (void)Bs;
#endif
  }

  CNNKERN_HD void stash(float* Cs) const {
#pragma unroll
    for (int i = 0; i < kMi; ++i)
#pragma unroll
      for (int j = 0; j < kNj; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          Cs[Tile::c_off(c_n(wn_, lane_, j, e), c_m(wm_, lane_, i, e))] = acc_[i][j][e];
  }
};

// Math used by the device kernels, and the oldest architecture it runs on (checked on the host too).
template <class T, class Tile = GemmTile<T>>
struct DeviceMath {
  using type = MmaMath<T, Tile>;
  static constexpr int kMinArch = 800;
};
template <class Tile>
struct DeviceMath<float, Tile> {
  using type = SimtMath<float>;
  static constexpr int kMinArch = 0;
};

}  // namespace cnnkern
