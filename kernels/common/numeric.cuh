// Element types the kernels support and explicit conversions to/from the fp32 accumulator.
// Conversions are spelled out (no implicit half operators): torch builds with
// -D__CUDA_NO_HALF_OPERATORS__ / -D__CUDA_NO_HALF_CONVERSIONS__ and friends.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/macros.cuh"

namespace cnnkern {

template <class T>
struct Num;

template <>
struct Num<float> {
  CNNKERN_HD static float to_float(float v) { return v; }
  CNNKERN_HD static float from_float(float v) { return v; }
  CNNKERN_HD static float zero() { return 0.0f; }
};

template <>
struct Num<__half> {
  CNNKERN_HD static float to_float(__half v) { return __half2float(v); }
  CNNKERN_HD static __half from_float(float v) { return __float2half_rn(v); }
  // Built from raw bits so that zero-fill of masked elements needs no conversion instruction.
  CNNKERN_HD static __half zero() {
    __half_raw r;
    r.x = 0;
    return __half(r);
  }
};

template <>
struct Num<__nv_bfloat16> {
  CNNKERN_HD static float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  CNNKERN_HD static __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }
  CNNKERN_HD static __nv_bfloat16 zero() {
    __nv_bfloat16_raw r;
    r.x = 0;
    return __nv_bfloat16(r);
  }
};

// V consecutive elements moved as one access: alignment equals the vector size, so V * sizeof(T) == 16
// compiles to a single 128-bit load. Callers guarantee the address alignment (checked on the host).
template <class T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];

  CNNKERN_HD static Vec zeros() {
    Vec r;
#pragma unroll
    for (int i = 0; i < V; ++i) r.v[i] = Num<T>::zero();
    return r;
  }

  CNNKERN_HD static Vec load(const T* p) { return *reinterpret_cast<const Vec*>(p); }
};

// V consecutive elements at q as floats: one V * sizeof(T)-byte access for V > 1 (q aligned to it: checked
// on the host), a scalar load for V == 1. The depthwise kernels' loader (conv_bn_relu.cuh had an unused
// copy, bn_load).
//
// Found while moving it here: several dw_direct_kernel instantiations sit exactly at their 128-register
// cap, and there ptxas' choice between 0 and 8-20 bytes of spill changes with the -lineinfo line table
// alone (the file and line this helper's instructions are attributed to: dw_direct<half, 8, 1, 3, stats,
// KS=2> spilled 20 bytes with it 8 lines higher, 0 without -lineinfo). That is probably why the same ptxas
// spilled on one host and not on another (the checkout path is in the line table too; a copy of the tree
// under /tmp spilled 8 bytes in dw_direct<bf16, 8, 1, 3, act, KS=2>): see spills_at_cap in sass_rules.py.
template <class T, int V>
CNNKERN_HD void load_as_float(const T* q, float (&out)[V]) {
  if constexpr (V == 1) {
    out[0] = Num<T>::to_float(*q);
  } else {
    const Vec<T, V> v = Vec<T, V>::load(q);
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = Num<T>::to_float(v.v[i]);
  }
}

}  // namespace cnnkern
