// The per-dtype comparison of the depthwise and grouped-pointwise emulators: a result must be finite
// and within tol<T>() of the double reference, relative to the magnitude of the summed terms (which
// bounds the rounding error of any summation order).
#pragma once

#include <cmath>
#include <type_traits>

#include "common/numeric.cuh"

namespace cnnkern {
namespace emulate {

template <class T>
double tol() {
  if (std::is_same<T, float>::value) return 2e-5;
  if (std::is_same<T, __half>::value) return 2e-3;
  return 1.6e-2;
}

template <class T>
bool close(double ref, double mag, float got) {
  return std::isfinite(got) && std::fabs(ref - got) <= tol<T>() * (mag + std::fabs(ref)) + 1e-6;
}

}  // namespace emulate
}  // namespace cnnkern
