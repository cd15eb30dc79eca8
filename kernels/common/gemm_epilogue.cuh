// The epilogue's store of one run of kEpiRun consecutive GEMM columns of one row (see
// GemmBlock::write): through the policy's row() / store_run() when it has them (the row decomposition
// once per thread, vector stores), else element by element through store(m, n, v).
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "common/numeric.cuh"

namespace cnnkern {

constexpr int kEpiRun = 8;  // 16 bytes of a 16-bit output

template <class E, class = void>
struct EpiRun {
  struct Row {};
  CNNKERN_HD static Row row(const E&, int) { return Row{}; }
  // The value as stored back into v (the statistics epilogue reads it); void store() keeps v.
  CNNKERN_HD static void store_run(const E& e, const Row&, int m, int n0, int count, float (&v)[kEpiRun]) {
#pragma unroll
    for (int j = 0; j < kEpiRun; ++j) {
      if (j < count) {
        if constexpr (std::is_same<decltype(e.store(m, n0 + j, v[j])), void>::value) {
          e.store(m, n0 + j, v[j]);
        } else {
          v[j] = e.store(m, n0 + j, v[j]);
        }
      }
    }
  }
};

template <class E>
struct EpiRun<E, std::void_t<decltype(std::declval<const E&>().row(0))>> {
  using Row = decltype(std::declval<const E&>().row(0));
  CNNKERN_HD static Row row(const E& e, int m) { return e.row(m); }
  CNNKERN_HD static void store_run(const E& e, const Row& r, int, int n0, int count, float (&v)[kEpiRun]) {
    e.store_run(r, n0, count, v);
  }
};

// Stores o[0..count) at p[j * stride]: one vector when all kEpiRun are present, contiguous and aligned.
template <class T>
CNNKERN_HD void store_run_to(T* p, int64_t stride, int count, const T (&o)[kEpiRun]) {
  using V = Vec<T, kEpiRun>;
  if (count == kEpiRun && stride == 1 && reinterpret_cast<uintptr_t>(p) % sizeof(V) == 0) {
    V vec;
#pragma unroll
    for (int j = 0; j < kEpiRun; ++j) vec.v[j] = o[j];
    *reinterpret_cast<V*>(p) = vec;
    return;
  }
#pragma unroll
  for (int j = 0; j < kEpiRun; ++j)
    if (j < count) p[j * stride] = o[j];
}

}  // namespace cnnkern
