// Plain-old-data description of a grouped 1x1 convolution whose output channels are stored through a
// channel shuffle (ShuffleNet), filled in by the host (csrc/) and consumed by the problem policies in
// group_pointwise_conv2d.cuh. Tensors are addressed through element strides (Strides4), so NCHW,
// channels_last and sliced views need no copies.
#pragma once

#include <cstdint>

#include "common/epilogue.cuh"
#include "common/fastdiv.cuh"
#include "common/numeric.cuh"
#include "conv/conv2d_params.cuh"

namespace cnnkern {

// Channel c of an op sits at offset + c of a `total`-channel order that is then shuffled with
// `groups` groups: it is stored at ((c + offset) % per_group) * groups + (c + offset) / per_group.
// With groups == 1 and per_group == total this is c + offset (no shuffle). Same map as the Python
// ChannelMap.dest.
struct ShuffleMap {
  FastDivmod div_per_group;
  int groups = 1;
  int offset = 0;

  ShuffleMap() = default;
  __host__ ShuffleMap(int total, int shuffle_groups, int off)
      : div_per_group(static_cast<uint32_t>(total / shuffle_groups)), groups(shuffle_groups), offset(off) {}

  CNNKERN_HD int dest(int c) const {
    uint32_t q, r;
    div_per_group.divmod(static_cast<uint32_t>(c + offset), q, r);
    return static_cast<int>(r) * groups + static_cast<int>(q);
  }
};

struct GpwShape {
  int n, h, w;          // batch and spatial size (same for input and output)
  int c_in, c_out;      // the conv's own channels
  int groups, cg_in, cg_out;
  int total;            // channels of the tensor the output is stored in (>= c_out; the concat case)
  int shuffle_groups;   // of that tensor; 1 = no shuffle
  int offset;           // of this conv's channels in the concatenated order

  __host__ ShuffleMap map() const { return ShuffleMap(total, shuffle_groups, offset); }
  __host__ int pixels() const { return n * h * w; }
};

// y[n, map.dest(c), p, q] = relu?((conv(x, w)[c] + bias[c]) * scale[c] + shift[c])
template <class T>
struct GpwFwdParams {
  GpwShape s;
  const T* x;
  Strides4 xs;
  const T* w;
  Strides4 ws;
  const T* bias;  // nullptr when absent
  int64_t bias_stride;
  ChannelVec scale, shift;
  bool relu;
  T* y;  // `total` channels
  Strides4 ys;
};

// dx = conv_input_grad(g, w * scale) with g[n, c] = dy[n, map.dest(c)] masked where out (same
// position) is not positive; out == nullptr means no ReLU.
template <class T>
struct GpwDgradParams {
  GpwShape s;
  const T* dy;  // `total` channels
  Strides4 dys;
  const T* out;  // saved output (ReLU mask), `total` channels, or nullptr
  Strides4 outs;
  const T* w;
  Strides4 ws;
  ChannelVec scale;
  T* dx;
  Strides4 dxs;
};

// dw[c, i] = scale[c] * sum over pixels of g[., c] * x[., group(c) * cg_in + i], g as for the input
// grad. Split-K over pixels into fp32 partials `workspace` (splits, c_out, cg_in), reduced in a fixed
// order (Conv2dWgradReduce).
template <class T>
struct GpwWgradParams {
  GpwShape s;
  const T* dy;
  Strides4 dys;
  const T* out;
  Strides4 outs;
  const T* x;
  Strides4 xs;
  ChannelVec scale;
  float* workspace;
  int splits;
  int k_per_split;  // multiple of the GEMM tile K
  T* dw;
  Strides4 dws;
};

// The weight gradient's split-K plan over the pixel extent (wgrad_split_plan).
__host__ inline SplitKPlan gpw_wgrad_plan(const GpwShape& s, int bm, int bn, int bk) {
  return wgrad_split_plan(s.cg_out, s.cg_in, int64_t{s.n} * s.h * s.w, s.groups, bm, bn, bk);
}

}  // namespace cnnkern
