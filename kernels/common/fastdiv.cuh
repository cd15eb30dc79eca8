// Division by a divisor that is fixed for a whole launch (tensor extents), without the ~20-instruction
// hardware-less integer divide. The multiplier is computed once on the host.
#pragma once

#include <cstdint>

#include "common/macros.cuh"

namespace cnnkern {

CNNKERN_HD uint32_t mulhi_u32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// Round-up multiplier method: q = (mulhi(n, mul) + n) >> shift with shift = ceil(log2(d)) and
// mul = floor(2^32 * (2^shift - d) / d) + 1. Exact for every dividend n in [0, 2^31), which the
// host guarantees by bounding all extents (the 32-bit sum mulhi + n cannot overflow there).
struct FastDivmod {
  uint32_t divisor = 1;
  uint32_t multiplier = 1;
  uint32_t shift = 0;

  FastDivmod() = default;

  __host__ explicit FastDivmod(uint32_t d) : divisor(d < 1 ? 1 : d) {
    shift = 0;
    while ((uint64_t{1} << shift) < divisor) ++shift;
    const uint64_t span = (uint64_t{1} << shift) - divisor;  // < divisor
    multiplier = static_cast<uint32_t>(((span << 32) / divisor) + 1);
  }

  CNNKERN_HD uint32_t div(uint32_t n) const { return (mulhi_u32(n, multiplier) + n) >> shift; }

  CNNKERN_HD void divmod(uint32_t n, uint32_t& quot, uint32_t& rem) const {
    quot = div(n);
    rem = n - quot * divisor;
  }
};

}  // namespace cnnkern
