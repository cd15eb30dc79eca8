// Plain-old-data description of a 2-D convolution, filled in by the host (csrc/) and consumed by the
// conv2d problem policies. All tensors are addressed through explicit element strides, so NCHW,
// channels_last and sliced/permuted views need no copies.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/epilogue.cuh"

namespace cnnkern {

// Element strides of a 4-D tensor (dims n, c, h, w; for weights: out-channel, in-channel, kh, kw).
struct Strides4 {
  int64_t n;
  int64_t c;
  int64_t h;
  int64_t w;
};

// Geometry shared by forward, input-grad and weight-grad. Bottom/right padding is implicit in the
// (H, W) vs (OH, OW) extents: every input coordinate outside [0, H) x [0, W) reads as zero.
struct Conv2dShape {
  int n;            // batch
  int c_in, h, w;   // input
  int c_out, oh, ow;
  int kh, kw;
  int groups;
  int cg_in, cg_out;  // channels per group
  int stride_h, stride_w;
  int pad_h, pad_w;  // top, left
  int dil_h, dil_w;
};

template <class T>
struct Conv2dFwdParams {
  Conv2dShape s;
  const T* x;
  Strides4 xs;
  const T* w;
  Strides4 ws;
  const T* bias;  // nullptr when absent
  int64_t bias_stride;
  T* y;
  Strides4 ys;
  ChannelAffine aff;  // EpiKind::kAct: act((conv + bias) * scale + shift), per output channel
  StatsOut stats;     // EpiKind::kStats: one row of (count, mean, M2) per pixel tile (blockIdx.x) and channel
};

template <class T>
struct Conv2dDgradParams {
  Conv2dShape s;
  const T* dy;
  Strides4 dys;
  const T* w;
  Strides4 ws;
  T* dx;
  Strides4 dxs;
  const T* bias;  // per dx channel, nullptr when absent (transposed conv forward)
  int64_t bias_stride;
};

template <class T>
struct Conv2dWgradParams {
  Conv2dShape s;
  const T* dy;
  Strides4 dys;
  const T* x;
  Strides4 xs;
  // Split-K: splits partial sums of shape (c_out, kh*kw*cg_in), fp32, contiguous, split-major.
  float* workspace;
  int splits;
  int k_per_split;  // multiple of the GEMM tile K
  T* dw;
  Strides4 dws;
};

// Split-K plan for a weight gradient: `groups` GEMMs of rows x cols with reduction extent k (pixels),
// whose fp32 partials take 4 * groups * rows * cols bytes per split. K is usually far larger than the
// output, so it is cut into `splits` contiguous, tile-aligned ranges until there are about
// kTargetBlocks blocks. The target is a constant rather than the SM count so that results are
// bitwise identical across GPUs, not only across runs.
struct SplitKPlan {
  int splits;
  int k_per_split;  // multiple of bk
};

inline SplitKPlan wgrad_split_plan(int64_t rows, int64_t cols, int64_t k, int64_t groups, int bm, int bn, int bk) {
  constexpr int64_t kTargetBlocks = 1024;
  constexpr int64_t kMinKTilesPerSplit = 4;
  constexpr int64_t kMaxSplits = 256;
  constexpr int64_t kMaxGridZ = 65535;  // the split index shares blockIdx.z with the group
  constexpr int64_t kMaxWorkspaceBytes = int64_t{512} << 20;
  const int64_t tiles_mn = ((rows + bm - 1) / bm) * ((cols + bn - 1) / bn) * groups;
  const int64_t k_tiles = (k + bk - 1) / bk;
  int64_t splits = (kTargetBlocks + tiles_mn - 1) / tiles_mn;
  splits = std::min(splits, (k_tiles + kMinKTilesPerSplit - 1) / kMinKTilesPerSplit);
  splits = std::min(splits, kMaxSplits);
  splits = std::min(splits, kMaxGridZ / groups);
  splits = std::min(splits, kMaxWorkspaceBytes / std::max<int64_t>(1, 4 * groups * rows * cols));
  splits = std::max<int64_t>(splits, 1);
  const int64_t tiles_per_split = (k_tiles + splits - 1) / splits;
  splits = (k_tiles + tiles_per_split - 1) / tiles_per_split;  // no empty splits
  return SplitKPlan{static_cast<int>(splits), static_cast<int>(tiles_per_split * bk)};
}

}  // namespace cnnkern
