// Plain-old-data description of a 2-D convolution, filled in by the host (csrc/) and consumed by the
// conv2d problem policies. All tensors are addressed through explicit element strides, so NCHW,
// channels_last and sliced/permuted views need no copies.
#pragma once

#include <cstdint>

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

}  // namespace cnnkern
