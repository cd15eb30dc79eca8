// Small helpers shared by the depthwise kernels.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/numeric.cuh"
#include "conv/depthwise_conv2d_params.cuh"

namespace cnnkern {

CNNKERN_HD bool dw_in(int v, int n) { return static_cast<unsigned>(v) < static_cast<unsigned>(n); }

// v clamped into [0, n) (n >= 1): the address of a tap outside the source that is loaded anyway and
// zeroed afterwards, so that the loads of a window need no branch between them.
CNNKERN_HD int dw_clamp(int v, int n) { return v < 0 ? 0 : (v >= n ? n - 1 : v); }

// Weight of output channel wch at tap (kh, kw) of the gather problem (flipped for the input-grad).
template <class T>
CNNKERN_HD float dw_weight(const DwGather<T>& g, int wch, int kh, int kw) {
  if (g.flip) {
    kh = g.kh - 1 - kh;
    kw = g.kw - 1 - kw;
  }
  return Num<T>::to_float(g.w[wch * g.ws.n + kh * g.ws.h + kw * g.ws.w]);
}

// First tap t in [0, k) with (base - t*d) divisible by s, or k when none: with step s/gcd(s, d)
// the contributing taps are first, first + step, ... (input-grad with stride > 1). base >= 0;
// s_div divides by s, d_mod = d % s. Walks t*d mod s instead of dividing per tap.
CNNKERN_HD int dw_first_tap(int base, const FastDivmod& s_div, int d_mod, int k, int step) {
  uint32_t q, rho;
  s_div.divmod(static_cast<uint32_t>(base), q, rho);
  const int s = static_cast<int>(s_div.divisor);
  const int lim = step < k ? step : k;
  int m = 0;  // t*d mod s
  for (int t = 0; t < lim; ++t) {
    if (m == static_cast<int>(rho)) return t;
    m += d_mod;
    if (m >= s) m -= s;
  }
  return k;
}

// num / s for num divisible by s (either sign).
CNNKERN_HD int dw_exact_div(int num, const FastDivmod& s_div) {
  return num >= 0 ? static_cast<int>(s_div.div(static_cast<uint32_t>(num)))
                  : -static_cast<int>(s_div.div(static_cast<uint32_t>(-num)));
}

CNNKERN_HD void dw_atomic_add(float* p, float v) {
#if defined(__CUDA_ARCH__)
  atomicAdd(p, v);
#else
  *p += v;
#endif
}

// VI raw elements as one access (VI * sizeof(T) bytes, aligned to that: checked on the host).
template <class T, int VI>
CNNKERN_HD Vec<T, VI> dw_load_vec(const T* q) {
  constexpr int kBytes = VI * static_cast<int>(sizeof(T));
#if defined(__CUDA_ARCH__)
  // Read-only path (ld.global.nc): the source is never written during the kernel.
  if constexpr (kBytes == 16 || kBytes == 8 || kBytes == 4) {
    using W = std::conditional_t<kBytes == 16, uint4, std::conditional_t<kBytes == 8, uint2, unsigned>>;
    const W w = __ldg(reinterpret_cast<const W*>(q));
    Vec<T, VI> v;
    std::memcpy(&v, &w, sizeof(w));
    return v;
  }
#endif
  if constexpr (VI == 1) {
    Vec<T, 1> v;
    v.v[0] = *q;
    return v;
  } else {
    return Vec<T, VI>::load(q);
  }
}

// The VI elements of v as floats, or VI zeros when !ok. The select works on the raw 32-bit words (half as
// many selects as floats for 16-bit types); a tap outside the source contributes exactly 0 even if the
// clamped location it was loaded from holds Inf or NaN.
template <class T, int VI>
CNNKERN_HD void dw_unpack_or_zero(const Vec<T, VI>& v, bool ok, float (&out)[VI]) {
  constexpr int kBytes = VI * static_cast<int>(sizeof(T));
  if constexpr (kBytes % 4 == 0) {
    uint32_t w[kBytes / 4];
    static_assert(sizeof(w) == sizeof(Vec<T, VI>), "vector is whole words");
    std::memcpy(w, &v, sizeof(w));
#pragma unroll
    for (int i = 0; i < kBytes / 4; ++i) w[i] = ok ? w[i] : 0u;
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      // bf16 is the top half of an fp32: one shift or mask per element (the generic conversion of the
      // high half takes a PRMT and a shift).
#pragma unroll
      for (int i = 0; i < kBytes / 4; ++i) {
        const uint32_t lo = w[i] << 16, hi = w[i] & 0xffff0000u;
        std::memcpy(&out[2 * i], &lo, 4);
        std::memcpy(&out[2 * i + 1], &hi, 4);
      }
    } else {
      Vec<T, VI> z;
      std::memcpy(&z, w, sizeof(w));
#pragma unroll
      for (int i = 0; i < VI; ++i) out[i] = Num<T>::to_float(z.v[i]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < VI; ++i) out[i] = ok ? Num<T>::to_float(v.v[i]) : 0.0f;
  }
}

// V floats from 16-byte aligned shared memory (8-byte aligned for V == 2).
template <int V>
CNNKERN_HD void dw_load_smem(const float* q, float (&out)[V]) {
  if constexpr (V == 2) {
    const float2 f = *reinterpret_cast<const float2*>(q);
    out[0] = f.x;
    out[1] = f.y;
  } else if constexpr (V % 4 == 0) {
#pragma unroll
    for (int i = 0; i < V / 4; ++i) {
      const float4 f = reinterpret_cast<const float4*>(q)[i];
      out[4 * i] = f.x;
      out[4 * i + 1] = f.y;
      out[4 * i + 2] = f.z;
      out[4 * i + 3] = f.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = q[i];
  }
}

#if defined(__CUDACC__)
// One dynamic shared-memory buffer for every depthwise kernel (16-byte aligned for float4 reads).
__device__ __forceinline__ float* dw_dynamic_smem() {
  extern __shared__ __align__(16) float dw_smem_buf[];
  return dw_smem_buf;
}
#endif

}  // namespace cnnkern
