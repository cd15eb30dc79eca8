// Global -> register -> shared-memory staging of one operand tile (kRows x kBK), with the element
// gather delegated to an operand policy `Op` (see implicit_gemm.cuh for the contract).
//
// Two thread mappings, picked per problem/layout so that consecutive threads touch consecutive
// addresses:
//   Fast::kRow  consecutive threads take consecutive rows (e.g. NCHW pixels). Each thread keeps ONE
//               row for the whole mainloop, so the row decomposition (div/mod) is paid once.
//   Fast::kK    consecutive threads take consecutive k (e.g. NHWC channels), optionally V at a time
//               as one 16-byte vector. Each thread keeps ONE k column per tile.
#pragma once

#include "common/numeric.cuh"

namespace cnnkern {

enum class Fast { kRow, kK };

template <class Op, class T, int kRows, int kBK, int kLd, int kThreads, Fast F, int V>
struct TileLoader;

template <class Op, class T, int kRows, int kBK, int kLd, int kThreads, int V>
struct TileLoader<Op, T, kRows, kBK, kLd, kThreads, Fast::kRow, V> {
  static_assert(V == 1, "vector loads run along K only");
  static_assert(kThreads % kRows == 0, "threads must cover whole rows");
  static constexpr int kColStep = kThreads / kRows;
  static_assert(kBK % kColStep == 0, "tile K must be a multiple of the column step");
  static constexpr int kPasses = kBK / kColStep;

  typename Op::Row row_;
  int r_local_ = 0;
  int c_local_ = 0;
  Vec<T, 1> regs_[kPasses];

  CNNKERN_HD void init(const Op& op, int tid, int row_base) {
    r_local_ = tid % kRows;
    c_local_ = tid / kRows;
    row_ = op.row(row_base + r_local_);
  }

  CNNKERN_HD void fetch(const Op& op, int k_base) {
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const typename Op::Kc kc = op.kc(k_base + c_local_ + i * kColStep);
      regs_[i] = op.template load<1>(row_, kc);
    }
  }

  CNNKERN_HD void stage(T* s) const {
#pragma unroll
    for (int i = 0; i < kPasses; ++i) s[(c_local_ + i * kColStep) * kLd + r_local_] = regs_[i].v[0];
  }
};

template <class Op, class T, int kRows, int kBK, int kLd, int kThreads, int V>
struct TileLoader<Op, T, kRows, kBK, kLd, kThreads, Fast::kK, V> {
  static_assert(kBK % V == 0, "vector width must divide tile K");
  static constexpr int kThreadsPerRow = kBK / V;
  static_assert(kThreads % kThreadsPerRow == 0, "threads must cover whole rows");
  static constexpr int kRowStep = kThreads / kThreadsPerRow;
  static_assert(kRows % kRowStep == 0, "tile rows must be a multiple of the row step");
  static constexpr int kPasses = kRows / kRowStep;

  int row_base_ = 0;
  int r_local_ = 0;
  int c_local_ = 0;
  Vec<T, V> regs_[kPasses];

  CNNKERN_HD void init(const Op&, int tid, int row_base) {
    row_base_ = row_base;
    r_local_ = tid / kThreadsPerRow;
    c_local_ = (tid % kThreadsPerRow) * V;
  }

  CNNKERN_HD void fetch(const Op& op, int k_base) {
    const typename Op::Kc kc = op.kc(k_base + c_local_);
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const typename Op::Row row = op.row(row_base_ + r_local_ + i * kRowStep);
      regs_[i] = op.template load<V>(row, kc);
    }
  }

  CNNKERN_HD void stage(T* s) const {
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
#pragma unroll
      for (int j = 0; j < V; ++j) s[(c_local_ + j) * kLd + r_local_ + i * kRowStep] = regs_[i].v[j];
    }
  }
};

}  // namespace cnnkern
