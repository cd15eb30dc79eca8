// Global -> shared-memory staging of one operand tile (kRows x kBK), with the element gather delegated
// to an operand policy `Op` (see implicit_gemm.cuh for the contract).
//
// Two thread mappings, picked per problem/layout so that consecutive threads touch consecutive
// addresses:
//   Fast::kRow  consecutive threads take consecutive rows (e.g. NCHW pixels). Each thread keeps ONE
//               row for the whole mainloop, so the row decomposition (div/mod) is paid once.
//   Fast::kK    consecutive threads take consecutive k (e.g. NHWC channels), optionally V at a time
//               as one 16-byte vector. Each thread keeps ONE k column per tile (a pair of consecutive
//               k for scalar gathers into 16-bit tiles, see kPair); its few rows are decomposed once
//               at init when they fit in registers (kHoistRows).
//
// Two staging routes:
//   async     Fast::kK with 16-byte vectors into a K-contiguous tile, when the operand can say where
//             the 16 bytes are (Op::addr) and they are a plain copy (Op::copyable(), true if absent):
//             cp.async.ca global -> shared, zero-filled (src-size 0) for masked/padded vectors. No
//             registers, no store instructions; completion is tracked by the block's commit groups.
//   register  everything else: fetch() global -> registers before the math of the previous tile,
//             stage() registers -> shared after it. Scalar gathers into K-contiguous 16-bit tiles take
//             k in pairs (k, k+1): two scalar loads packed into one 32-bit register and stored as one
//             aligned 32-bit word. Against one k per thread that halves the staging registers and
//             stores and, for Fast::kK, the rows (hence row decompositions) per thread: the dgrad and
//             grouped-pointwise wgrad went from 150-172 registers to <= 128 without spills with it
//             (implicit_gemm.md).
#pragma once

#include <cstring>
#include <type_traits>
#include <utility>

#include "common/cp_async.cuh"
#include "common/gemm_tile.cuh"
#include "common/numeric.cuh"

namespace cnnkern {

enum class Fast { kRow, kK };

// ---- operand capabilities
template <class Op, class = void>
struct OpHasAddr : std::false_type {};
template <class Op>
struct OpHasAddr<Op, std::void_t<decltype(std::declval<const Op&>().addr(std::declval<const typename Op::Row&>(),
                                                                         std::declval<const typename Op::Kc&>(),
                                                                         std::declval<bool&>()))>>
    : std::true_type {};

template <class Op, class = void>
struct OpHasCopyable : std::false_type {};
template <class Op>
struct OpHasCopyable<Op, std::void_t<decltype(std::declval<const Op&>().copyable())>> : std::true_type {};

template <class Op>
CNNKERN_HD bool op_copyable(const Op& op) {
  if constexpr (OpHasCopyable<Op>::value) {
    return op.copyable();
  } else {
    (void)op;
    return true;
  }
}

template <class Op, class Tile, int kRows, Fast F, int V>
struct TileLoader;

template <class Op, class Tile, int kRows, int V>
struct TileLoader<Op, Tile, kRows, Fast::kRow, V> {
  using T = typename Tile::Element;
  static constexpr int kBK = Tile::kBK;
  static constexpr int kThreads = Tile::kThreads;
  static_assert(V == 1, "vector loads run along K only");
  static_assert(kThreads % kRows == 0, "threads must cover whole rows");
  static constexpr int kColStep = kThreads / kRows;
  // K-contiguous 16-bit tiles: each thread gathers pairs of consecutive k (k, k + 1), packed into one
  // 32-bit register and stored as one aligned 32-bit word (half the staging registers and stores).
  static constexpr int kPair = Tile::kKContig ? 2 : 1;
  static_assert(kBK % (kColStep * kPair) == 0, "tile K must be a multiple of the column step");
  static constexpr int kPasses = kBK / (kColStep * kPair);
  static constexpr bool kAsync = false;
  static constexpr bool kAsyncOnly = false;

  typename Op::Row row_;
  int r_local_ = 0;
  int c_local_ = 0;
  Vec<T, kPair> regs_[kPasses];

  CNNKERN_HD void init(const Op& op, int tid, int row_base) {
    r_local_ = tid % kRows;
    c_local_ = tid / kRows;
    row_ = op.row(row_base + r_local_);
  }

  CNNKERN_HD void issue(const Op&, int, T*) const {}

  // First k (relative to the tile) of pass i.
  CNNKERN_HD int col(int i) const { return (c_local_ + i * kColStep) * kPair; }

  CNNKERN_HD void fetch(const Op& op, int k_base) {
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
#pragma unroll
      for (int e = 0; e < kPair; ++e) {
        const typename Op::Kc kc = op.kc(k_base + col(i) + e);
        regs_[i].v[e] = op.template load<1>(row_, kc).v[0];
      }
    }
  }

  CNNKERN_HD void stage(T* s) const {
#pragma unroll
    for (int i = 0; i < kPasses; ++i)
      *reinterpret_cast<Vec<T, kPair>*>(s + Tile::template off<kRows>(r_local_, col(i))) = regs_[i];
  }
};

template <class Op, class Tile, int kRows, int V>
struct TileLoader<Op, Tile, kRows, Fast::kK, V> {
  using T = typename Tile::Element;
  static constexpr int kBK = Tile::kBK;
  static constexpr int kThreads = Tile::kThreads;
  static_assert(kBK % V == 0, "vector width must divide tile K");
  // Scalar gathers into a K-contiguous 16-bit tile take two consecutive k per thread (two scalar loads,
  // packed into one 32-bit register and one 32-bit store): half the rows per thread (so half the row
  // decompositions per tile) and half the staging registers and stores of one k per thread.
  static constexpr int kPair = (V == 1 && Tile::kKContig) ? 2 : 1;
  static constexpr int kThreadsPerRow = kBK / (V * kPair);
  static_assert(kThreads % kThreadsPerRow == 0, "threads must cover whole rows");
  static constexpr int kRowStep = kThreads / kThreadsPerRow;
  static_assert(kRows % kRowStep == 0, "tile rows must be a multiple of the row step");
  static constexpr int kPasses = kRows / kRowStep;
  // The vector's V elements are consecutive k in one 16-byte chunk of a K-contiguous row.
  static constexpr bool kVecStore = Tile::kKContig && V * sizeof(T) == 16;
  static constexpr bool kAsync = kVecStore && OpHasAddr<Op>::value;
  // Always the async route (no run-time fallback to registers compiled in).
  static constexpr bool kAsyncOnly = kAsync && !OpHasCopyable<Op>::value;
  // Row decompositions kept across the mainloop when they fit (2 per thread for a 128-row A tile of
  // 16-byte vectors). Not for fp32: its register budget (79 -> 105 with hoisting) would cost a third
  // block per SM. Not for the 4 rows of a 64-row tile of pairs either: under the 128-register cap
  // that made Conv2dWgradProblem<16-bit, kK> spill 8 bytes (126 registers, no spill, without).
  static constexpr bool kHoistRows = kPasses <= 2 && Tile::kKContig;

  int row_base_ = 0;
  int r_local_ = 0;
  int c_local_ = 0;
  bool async_ = false;  // kAsync and the operand is a plain copy (uniform over the launch)
  typename Op::Row rows_[kHoistRows ? kPasses : 1];
  Vec<T, V * kPair> regs_[kPasses];

  CNNKERN_HD typename Op::Row row(const Op& op, int i) const {
    if constexpr (kHoistRows) {
      (void)op;
      return rows_[i];
    } else {
      return op.row(row_base_ + r_local_ + i * kRowStep);
    }
  }

  CNNKERN_HD void init(const Op& op, int tid, int row_base) {
    row_base_ = row_base;
    r_local_ = tid / kThreadsPerRow;
    c_local_ = (tid % kThreadsPerRow) * V * kPair;
    if constexpr (kAsync) async_ = op_copyable(op);
    if constexpr (kHoistRows) {
#pragma unroll
      for (int i = 0; i < kPasses; ++i) rows_[i] = op.row(row_base_ + r_local_ + i * kRowStep);
    }
  }

  // cp.async of K tile k_base straight into stage s.
  CNNKERN_HD void issue(const Op& op, int k_base, T* s) const {
    if constexpr (kAsync) {
      if (!async_) return;
      const typename Op::Kc kc = op.kc(k_base + c_local_);
#pragma unroll
      for (int i = 0; i < kPasses; ++i) {
        bool valid;
        const T* src = op.addr(row(op, i), kc, valid);
        cp_async16(s + Tile::template off<kRows>(r_local_ + i * kRowStep, c_local_), src, valid);
      }
    } else {
      (void)op;
      (void)k_base;
      (void)s;
    }
  }

  CNNKERN_HD void fetch(const Op& op, int k_base) {
    if (kAsync && async_) return;
    if constexpr (kPair == 2) {
      // k and k + 1 may sit in different taps (k + 1 a new (r, s) when k is a tap's last channel).
      const typename Op::Kc kc0 = op.kc(k_base + c_local_);
      const typename Op::Kc kc1 = op.kc(k_base + c_local_ + 1);
#pragma unroll
      for (int i = 0; i < kPasses; ++i) {
        const typename Op::Row r = row(op, i);
        regs_[i].v[0] = op.template load<1>(r, kc0).v[0];
        regs_[i].v[1] = op.template load<1>(r, kc1).v[0];
      }
    } else {
      const typename Op::Kc kc = op.kc(k_base + c_local_);
#pragma unroll
      for (int i = 0; i < kPasses; ++i) regs_[i] = op.template load<V>(row(op, i), kc);
    }
  }

  CNNKERN_HD void stage(T* s) const {
    if (kAsync && async_) return;
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      if constexpr (kVecStore || kPair == 2) {
        // one 16-byte chunk (V = 8) or one aligned 32-bit word (the pair: c_local_ is even, and the
        // swizzle moves whole 8-element chunks)
        *reinterpret_cast<Vec<T, V * kPair>*>(s + Tile::template off<kRows>(r_local_ + i * kRowStep, c_local_)) =
            regs_[i];
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) s[Tile::template off<kRows>(r_local_ + i * kRowStep, c_local_ + j)] = regs_[i].v[j];
      }
    }
  }
};

}  // namespace cnnkern
