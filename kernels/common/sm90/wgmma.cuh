// Warpgroup MMA (wgmma, sm_90a) wrappers and the shared-memory matrix descriptor.
//
// wgmma.mma_async.sync.aligned.m64nNk16.f32.{f16,bf16}: one warpgroup (4 consecutive warps, 128 threads)
// computes D[64][N] += A[64][16] * B[16][N] with both operands read from shared memory through 64-bit
// matrix descriptors, asynchronously: issue after wgmma.fence, group with commit_group, and read D (or
// overwrite the operands' shared memory) only after wait_group has retired the group.
//
// Operand layout of the forward: K-major ("no transpose") for both A (64 rows of m) and B (N rows of n),
// rows of 64 16-bit elements = 128 bytes, 128-byte swizzle: in each 1024-byte atom of 8 rows, the 16-byte
// chunk j of row r sits at chunk j ^ (r & 7). That is exactly what TMA writes for a box whose inner
// extent is 128 bytes with CU_TENSOR_MAP_SWIZZLE_128B into a 1024-byte aligned destination, and what
// sw128_offset() below gives the cp.async producer. The hardware applies the swizzle to the final byte
// address (bits [4,7) ^= bits [7,10)), so one k16 step inside the 128-byte row is a +32-byte start address
// with the same descriptor fields, as long as the tile base is 1024-byte aligned (base_offset 0).
//
// Descriptor bit fields (PTX ISA, "Matrix Descriptor Format" for wgmma):
//   [0,14)  start address >> 4        [16,30) leading-dimension byte offset >> 4 (unused for swizzled
//   [32,46) stride-dimension byte offset >> 4    K-major layouts: one row of the swizzle covers all of K16)
//   [49,52) base offset (0: atoms 1024-aligned)  [62,64) layout: 1 = 128-byte swizzle (2 = 64 B, 3 = 32 B)
// The stride-dimension offset is the distance between consecutive 8-row groups: 8 x 128 = 1024 bytes.
//
// MN-major ("transposed", imm-trans-a / imm-trans-b = 1; 16-bit types only), used by the weight gradient
// whose operands are both contiguous along M / N and strided along K (pixels): rows of 64 consecutive m (or
// n) elements = 128 bytes, one row per k, the same 128-byte swizzle in 8-row (8-k) atoms. PTX ISA canonical
// layout ((T,8,m),(8,k)) : ((1,T,LBO),(8T,SBO)) with T = 8 elements: element (mn, k) at byte
//   (mn % 64) * 2 + (mn / 64) * LBO + (k % 8) * 128 + (k / 8) * SBO, then bits [4,7) ^= bits [7,10).
// So LBO is the distance between 64-wide MN blocks and SBO the distance between 8-k groups (1024 when a
// block stores its k rows back to back); a k16 step is +2048 bytes (two atoms: base_offset stays 0). One
// MN block of 64 x 64 k is exactly what TMA writes for a {64 elements, 64 rows} box with SWIZZLE_128B, and
// what sw128_offset(k, chunk) gives the cp.async producer (chunk = 8 consecutive m / n elements).
//
// Accumulator fragment (PTX ISA, wgmma D register layout for .f32 m64nNk16): thread t of the warpgroup,
// warp w = t / 32, lane l, register i in [0, N/2): row 16w + l/4 + 8*((i >> 1) & 1), column
// 8*(i >> 2) + 2*(l % 4) + (i & 1). See acc_row / acc_col.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common/sm90/arch.cuh"

namespace cnnkern {
namespace sm90 {

constexpr int kSw128RowBytes = 128;
constexpr int kSw128AtomBytes = 1024;
constexpr uint64_t kDescLayoutSw128 = 1;

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` in a 128-byte-swizzled K-major tile whose base
// is 1024-byte aligned.
CNNKERN_HD constexpr uint32_t sw128_offset(int row, int chunk) {
  return static_cast<uint32_t>(row * kSw128RowBytes + ((chunk ^ (row & 7)) << 4));
}

// Descriptor of a K-major, 128-byte-swizzled operand starting at shared address `addr` (the tile base
// plus 32 bytes per k16 step).
CNNKERN_HD constexpr uint64_t sw128_desc(uint32_t addr) {
  return (static_cast<uint64_t>((addr & 0x3FFFF) >> 4)) |       // start address
         (static_cast<uint64_t>(16 >> 4) << 16) |                // leading byte offset (ignored here)
         (static_cast<uint64_t>(kSw128AtomBytes >> 4) << 32) |   // stride byte offset: next 8-row group
         (kDescLayoutSw128 << 62);
}

// Descriptor of an MN-major, 128-byte-swizzled operand at shared address `addr` (block base + 2048 bytes per
// k16 step) whose 64-wide MN blocks are `lbo` bytes apart (see the header comment).
CNNKERN_HD constexpr uint64_t sw128_desc_mn(uint32_t addr, uint32_t lbo) {
  return (static_cast<uint64_t>((addr & 0x3FFFF) >> 4)) |
         (static_cast<uint64_t>((lbo & 0x3FFFF) >> 4) << 16) |    // leading byte offset: next 64-wide MN block
         (static_cast<uint64_t>(kSw128AtomBytes >> 4) << 32) |   // stride byte offset: next 8-k group
         (kDescLayoutSw128 << 62);
}

// The accumulator register map (see the header comment); t = thread index within the warpgroup. The
// conv epilogue uses acc_row and the column rule of acc_col through its quad exchange (store_tile).
CNNKERN_HD constexpr int acc_row(int t, int i) { return 16 * (t >> 5) + ((t & 31) >> 2) + 8 * ((i >> 1) & 1); }
CNNKERN_HD constexpr int acc_col(int t, int i) { return 8 * (i >> 2) + 2 * (t & 3) + (i & 1); }

// Orders the warpgroup's register accesses before the next wgmma (required before the first wgmma of
// a sequence and whenever the accumulators were touched by other instructions).
__device__ __forceinline__ void wgmma_fence() {
#if CNNKERN_SM90A
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void wgmma_commit() {
#if CNNKERN_SM90A
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}

// At most N of this warp's most recent wgmma groups still pending afterwards.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if CNNKERN_SM90A
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#else
  __trap();
#endif
}

// Keeps the compiler from moving accumulator accesses across the asynchronous MMA (the registers are
// in flight between issue and wait_group).
template <int R>
__device__ __forceinline__ void fence_regs(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

template <class T, int N>
struct Wgmma;

template <>
struct Wgmma<__half, 64> {
  template <int TA = 0, int TB = 0>
  __device__ __forceinline__ static void mma(float (&d)[32], uint64_t da, uint64_t db, int scale_d) {
#if CNNKERN_SM90A
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
        "}, %32, %33, p, 1, 1, %35, %36;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(da), "l"(db), "r"(scale_d), "n"(TA), "n"(TB));
#else
    (void)d; (void)da; (void)db; (void)scale_d;
    __trap();
#endif
  }
};

template <>
struct Wgmma<__nv_bfloat16, 64> {
  template <int TA = 0, int TB = 0>
  __device__ __forceinline__ static void mma(float (&d)[32], uint64_t da, uint64_t db, int scale_d) {
#if CNNKERN_SM90A
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
        "}, %32, %33, p, 1, 1, %35, %36;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(da), "l"(db), "r"(scale_d), "n"(TA), "n"(TB));
#else
    (void)d; (void)da; (void)db; (void)scale_d;
    __trap();
#endif
  }
};

template <>
struct Wgmma<__half, 128> {
  template <int TA = 0, int TB = 0>
  __device__ __forceinline__ static void mma(float (&d)[64], uint64_t da, uint64_t db, int scale_d) {
#if CNNKERN_SM90A
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, %64, %65, p, 1, 1, %67, %68;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(scale_d), "n"(TA), "n"(TB));
#else
    (void)d; (void)da; (void)db; (void)scale_d;
    __trap();
#endif
  }
};

template <>
struct Wgmma<__nv_bfloat16, 128> {
  template <int TA = 0, int TB = 0>
  __device__ __forceinline__ static void mma(float (&d)[64], uint64_t da, uint64_t db, int scale_d) {
#if CNNKERN_SM90A
    asm volatile(
        "{\n .reg .pred p;\n setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, %64, %65, p, 1, 1, %67, %68;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(scale_d), "n"(TA), "n"(TB));
#else
    (void)d; (void)da; (void)db; (void)scale_d;
    __trap();
#endif
  }
};

}  // namespace sm90
}  // namespace cnnkern
