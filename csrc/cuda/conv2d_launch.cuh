// Definitions of the launch entry points declared in conv2d_launch.h. Only included by the per-dtype
// instantiation files. Every launch goes on the caller's stream and is followed by a launch check.
#pragma once

#include <algorithm>
#include <cstdint>

#include <c10/cuda/CUDAException.h>

#include "conv/conv2d.cuh"
#include "cuda/conv2d_launch.h"
#include "cuda/wgrad_reduce_launch.cuh"

namespace cnnkern {
namespace detail {

inline unsigned ceil_div(int a, int b) { return static_cast<unsigned>((a + b - 1) / b); }

template <class Problem, class Tile = GemmTile<typename Problem::Element>>
void launch_gemm(const Problem& p, cudaStream_t stream) {
  const dim3 grid(ceil_div(p.gemm_m(), Tile::kBM), ceil_div(p.gemm_n(), Tile::kBN),
                  static_cast<unsigned>(p.grid_z()));
  int smem = 0;
  if constexpr (Tile::kDynamicSmem) {
    smem = Tile::kSmemBytes;
    C10_CUDA_CHECK(cudaFuncSetAttribute(implicit_gemm_kernel<Problem, Tile>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  }
  implicit_gemm_kernel<Problem, Tile><<<grid, Tile::kThreads, smem, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

inline int device_attribute(cudaDeviceAttr attr) {
  int dev = 0, v = 0;
  C10_CUDA_CHECK(cudaGetDevice(&dev));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, attr, dev));
  return v;
}

template <class T>
constexpr int kVecWidth = 16 / static_cast<int>(sizeof(T));

}  // namespace detail

namespace detail {

template <class T, EpiKind E>
void launch_fwd(const Conv2dFwdParams<T>& p, GatherMap map, bool out_pixel_fast, cudaStream_t stream) {
  constexpr int V = kVecWidth<T>;
  switch (map) {
    case GatherMap::kPixelFast:
      launch_gemm(Conv2dFwdProblem<T, Fast::kRow, 1, E>::make(p, out_pixel_fast), stream);
      break;
    case GatherMap::kChannelFast:
      launch_gemm(Conv2dFwdProblem<T, Fast::kK, 1, E>::make(p, out_pixel_fast), stream);
      break;
    case GatherMap::kChannelVec: {
      using Problem = Conv2dFwdProblem<T, Fast::kK, V, E>;
      if constexpr (sizeof(T) == 2 && E != EpiKind::kStats) {
        if (conv2d_fwd_tile_plan(p.s, sizeof(T), true, E, device_attribute(cudaDevAttrMultiProcessorCount),
                                 device_attribute(cudaDevAttrMaxSharedMemoryPerMultiprocessor)) == FwdTile::kBig) {
          launch_gemm<Problem, GemmTileBig<T>>(Problem::make(p, out_pixel_fast), stream);
          break;
        }
      }
      launch_gemm(Problem::make(p, out_pixel_fast), stream);
      break;
    }
  }
}

}  // namespace detail

template <class T>
void launch_conv2d_fwd(const Conv2dFwdParams<T>& p, GatherMap map, bool out_pixel_fast, cudaStream_t stream) {
  detail::launch_fwd<T, EpiKind::kPlain>(p, map, out_pixel_fast, stream);
}

template <class T>
void launch_conv2d_fwd_act(const Conv2dFwdParams<T>& p, GatherMap map, bool out_pixel_fast, cudaStream_t stream) {
  detail::launch_fwd<T, EpiKind::kAct>(p, map, out_pixel_fast, stream);
}

template <class T>
void launch_conv2d_fwd_stats(const Conv2dFwdParams<T>& p, GatherMap map, bool out_pixel_fast, cudaStream_t stream) {
  detail::launch_fwd<T, EpiKind::kStats>(p, map, out_pixel_fast, stream);
}

template <class T>
void launch_conv2d_dgrad(const Conv2dDgradParams<T>& p, GatherMap map, bool out_pixel_fast, cudaStream_t stream) {
  constexpr int V = detail::kVecWidth<T>;
  switch (map) {
    case GatherMap::kPixelFast:
      detail::launch_gemm(Conv2dDgradProblem<T, Fast::kRow, 1>::make(p, out_pixel_fast), stream);
      break;
    case GatherMap::kChannelFast:
      detail::launch_gemm(Conv2dDgradProblem<T, Fast::kK, 1>::make(p, out_pixel_fast), stream);
      break;
    case GatherMap::kChannelVec:
      detail::launch_gemm(Conv2dDgradProblem<T, Fast::kK, V>::make(p, out_pixel_fast), stream);
      break;
  }
}

template <class T>
void launch_conv2d_wgrad(const Conv2dWgradParams<T>& p, bool channel_fast, cudaStream_t stream) {
  // Channel-fast means the GEMM rows (dy channels, x channels) are the contiguous dimension.
  if (channel_fast) {
    detail::launch_gemm(Conv2dWgradProblem<T, Fast::kRow>::make(p), stream);
  } else {
    detail::launch_gemm(Conv2dWgradProblem<T, Fast::kK>::make(p), stream);
  }
  launch_conv2d_wgrad_reduce<T>(p, stream);
}

template <class T>
void launch_conv2d_wgrad_reduce(const Conv2dWgradParams<T>& p, cudaStream_t stream) {
  launch_wgrad_reduce(Conv2dWgradReduce<T>::make(p), stream);
}

}  // namespace cnnkern

#define CNNKERN_INSTANTIATE_CONV2D_FWD(T)                                                       \
  template void cnnkern::launch_conv2d_fwd<T>(const cnnkern::Conv2dFwdParams<T>&, cnnkern::GatherMap, bool, \
                                              cudaStream_t)
#define CNNKERN_INSTANTIATE_CONV2D_FWD_ACT(T)                                                       \
  template void cnnkern::launch_conv2d_fwd_act<T>(const cnnkern::Conv2dFwdParams<T>&, cnnkern::GatherMap, bool, \
                                                  cudaStream_t)
#define CNNKERN_INSTANTIATE_CONV2D_FWD_STATS(T)                                                         \
  template void cnnkern::launch_conv2d_fwd_stats<T>(const cnnkern::Conv2dFwdParams<T>&, cnnkern::GatherMap, bool, \
                                                    cudaStream_t)
#define CNNKERN_INSTANTIATE_CONV2D_DGRAD(T)                                                        \
  template void cnnkern::launch_conv2d_dgrad<T>(const cnnkern::Conv2dDgradParams<T>&, cnnkern::GatherMap, bool, \
                                                cudaStream_t)
#define CNNKERN_INSTANTIATE_CONV2D_WGRAD(T)                                                                 \
  template void cnnkern::launch_conv2d_wgrad<T>(const cnnkern::Conv2dWgradParams<T>&, bool, cudaStream_t); \
  template void cnnkern::launch_conv2d_wgrad_reduce<T>(const cnnkern::Conv2dWgradParams<T>&, cudaStream_t)
