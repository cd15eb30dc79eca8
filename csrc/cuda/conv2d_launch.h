// Typed launch entry points for the conv2d kernels. Defined in conv2d_launch.cuh and explicitly
// instantiated per op and dtype in conv2d_{fwd,dgrad,wgrad}_{f32,f16,bf16}.cu, so that the heavy
// template instantiations compile in parallel and conv2d.cu stays light.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "conv/conv2d_params.cuh"

namespace cnnkern {

// How the activation-side operand (x for forward, dy for input-grad) is gathered.
enum class GatherMap {
  kPixelFast,    // consecutive threads read consecutive pixels (NCHW-like tensors)
  kChannelFast,  // consecutive threads read consecutive channels (NHWC-like), scalar
  kChannelVec,   // NHWC-like with 16-byte vector loads (alignment/divisibility checked by the caller)
};

template <class T>
void launch_conv2d_fwd(const Conv2dFwdParams<T>& p, GatherMap map, bool out_pixel_fast, cudaStream_t stream);

// The same with the epilogues of fused conv + BatchNorm (common/epilogue.cuh): act((conv + bias) * scale +
// shift) from p.aff, or the plain output and its per-pixel-tile statistics into p.stats (tiles:
// conv2d_stats_tiles).
template <class T>
void launch_conv2d_fwd_act(const Conv2dFwdParams<T>& p, GatherMap map, bool out_pixel_fast, cudaStream_t stream);
template <class T>
void launch_conv2d_fwd_stats(const Conv2dFwdParams<T>& p, GatherMap map, bool out_pixel_fast, cudaStream_t stream);

// Pixel tiles of the statistics epilogue for N*OH*OW output pixels: the GEMM's M tiles (kBM is 128 for every
// element type).
int64_t conv2d_stats_tiles(int64_t pixels);

template <class T>
void launch_conv2d_dgrad(const Conv2dDgradParams<T>& p, GatherMap map, bool out_pixel_fast, cudaStream_t stream);

// Runs the split-K GEMM into p.workspace and the fixed-order reduction into p.dw.
template <class T>
void launch_conv2d_wgrad(const Conv2dWgradParams<T>& p, bool channel_fast, cudaStream_t stream);
// The fixed-order reduction alone (p.workspace filled by another split-K GEMM: the sm_90a weight gradient).
template <class T>
void launch_conv2d_wgrad_reduce(const Conv2dWgradParams<T>& p, cudaStream_t stream);

}  // namespace cnnkern
