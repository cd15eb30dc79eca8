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

}  // namespace cnnkern
