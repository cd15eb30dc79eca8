// Per-output-channel epilogue pieces shared by the conv forward kernels (implicit GEMM, depthwise) and the
// conv_bn_relu elementwise kernels (kernel contract: cnnkern/problem/conv_bn.py):
//   * the activations and their derivatives, on fp32;
//   * ChannelVec: a per-channel vector in the activation dtype or fp32 (folded BatchNorm parameters are fp32);
//   * ChannelAffine: act(v * scale + shift) of the "act" epilogue;
//   * StatsOut: where a kernel writes the (count, mean, M2) statistics of one tile of output pixels;
//   * tree_first_step: the fixed-order block reduction the statistics and reduction kernels share.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/numeric.cuh"

namespace cnnkern {

// What a forward conv kernel does after adding the bias to its fp32 accumulator: store it (kPlain),
// apply ChannelAffine first (kAct), or store it and emit the tile statistics of the stored values (kStats).
enum class EpiKind { kPlain, kAct, kStats };

// Activation codes, as the host ops take them (cnnkern/cuda maps None/"relu"/"relu6"/"silu" to 0..3).
enum : int { kActNone = 0, kActRelu = 1, kActRelu6 = 2, kActSilu = 3 };
constexpr int kActCount = 4;

// act(z). Comparisons with NaN are false, so NaN propagates through relu/relu6 as in F.relu/F.relu6.
template <int A>
CNNKERN_HD float activate(float z) {
  if constexpr (A == kActRelu) {
    return z < 0.0f ? 0.0f : z;
  } else if constexpr (A == kActRelu6) {
    return z < 0.0f ? 0.0f : (z > 6.0f ? 6.0f : z);
  } else if constexpr (A == kActSilu) {
    // Full-precision expf and an IEEE divide (no fast math): fp32 outputs must match PyTorch's.
    return z / (1.0f + expf(-z));
  } else {
    return z;
  }
}

// d act / dz at z. ReLU's derivative at 0 is 0 (ATen's threshold_backward); relu6's is 0 at 0 and 6.
template <int A>
CNNKERN_HD float activate_grad(float z) {
  if constexpr (A == kActRelu) {
    return z > 0.0f ? 1.0f : 0.0f;
  } else if constexpr (A == kActRelu6) {
    return (z > 0.0f && z < 6.0f) ? 1.0f : 0.0f;
  } else if constexpr (A == kActSilu) {
    const float s = 1.0f / (1.0f + expf(-z));
    return s * (1.0f + z * (1.0f - s));
  } else {
    return 1.0f;
  }
}

// Runtime-selected activation for the GEMM/depthwise epilogues: the switch is uniform across a launch and
// costs a few instructions next to an epilogue's index math, where a template parameter would multiply the
// heaviest instantiations by four.
CNNKERN_HD float activate_rt(int act, float z) {
  switch (act) {
    case kActRelu:
      return activate<kActRelu>(z);
    case kActRelu6:
      return activate<kActRelu6>(z);
    case kActSilu:
      return activate<kActSilu>(z);
    default:
      return z;
  }
}

// A per-output-channel vector in either the activation dtype or fp32: BN parameters are naturally fp32, and
// they are applied on the fp32 accumulator either way. A runtime flag rather than a template parameter keeps
// the instantiation count down; the branch is uniform across the launch.
struct ChannelVec {
  const void* p = nullptr;  // nullptr when absent
  int64_t stride = 0;
  bool f32 = false;

  CNNKERN_HD bool present() const { return p != nullptr; }
  template <class T>
  CNNKERN_HD float at(int c) const {
    return f32 ? static_cast<const float*>(p)[c * stride] : Num<T>::to_float(static_cast<const T*>(p)[c * stride]);
  }
};

// The "act" epilogue after the bias: act(v * scale[c] + shift[c]), each of scale and shift optional. A
// kernel whose thread keeps its channels reads them once (at) and applies them per value (apply_at); an
// absent scale / shift reads as 1 / 0, which changes no value.
struct ChannelAffine {
  ChannelVec scale, shift;
  int act = kActNone;

  struct At {
    float scale, shift;
  };
  template <class T>
  CNNKERN_HD At at(int c) const {
    return At{scale.present() ? scale.at<T>(c) : 1.0f, shift.present() ? shift.at<T>(c) : 0.0f};
  }
  CNNKERN_HD float apply_at(const At& a, float v) const { return activate_rt(act, v * a.scale + a.shift); }
  template <class T>
  CNNKERN_HD float apply(int c, float v) const {
    return apply_at(at<T>(c), v);
  }
};

// The value an output element holds once stored in T, as fp32: the statistics are of what is stored.
template <class T>
CNNKERN_HD float as_stored(float v) {
  return Num<T>::to_float(Num<T>::from_float(v));
}

// Per-tile channel statistics, a contiguous fp32 tensor (tiles, channels, 3) of (count, mean, M2): tile t is a
// set of output pixels, disjoint from the others, and together they cover every pixel once, so Chan's
// formula (cnnkern.problem.conv_bn.combine_partials) merges them into the batch statistics.
struct StatsOut {
  float* p = nullptr;
  int channels = 0;

  CNNKERN_HD void put(int tile, int c, float count, float mean, float m2) const {
    float* q = p + (static_cast<int64_t>(tile) * channels + c) * 3;
    q[0] = count;
    q[1] = mean;
    q[2] = m2;
  }
};

// A block-level sum over n rows of a shared buffer runs as barrier-separated steps s = tree_first_step(n),
// s/2, ..., 1, where row i adds row i + s for i < s and i + s < n; row 0 then holds the total. The order of
// the additions depends on n alone, so the sums are bitwise reproducible (no atomics).
CNNKERN_HD int tree_first_step(int n) {
  int s = 1;
  while (s < n) s <<= 1;
  return s >> 1;
}

}  // namespace cnnkern
