// Compiles every kernels/ header and instantiates every kernel template that csrc/ launches, with no
// torch include path on the command line: the build itself enforces "kernels/ never includes torch".
#include "check/block_replay.cuh"
#include "check/emulate_compare.cuh"
#include "check/emulate_tensor.cuh"
#include "common/fastdiv.cuh"
#include "common/gemm_loader.cuh"
#include "common/gemm_math.cuh"
#include "common/gemm_tile.cuh"
#include "common/implicit_gemm.cuh"
#include "common/macros.cuh"
#include "common/numeric.cuh"
#include "conv/channel_shuffle.cuh"
#include "conv/conv2d.cuh"
#include "conv/conv2d_dgrad.cuh"
#include "conv/conv2d_fwd.cuh"
#include "conv/conv2d_index.cuh"
#include "conv/conv2d_params.cuh"
#include "conv/conv2d_wgrad.cuh"
#include "conv/depthwise_conv2d.cuh"
#include "conv/depthwise_conv2d_common.cuh"
#include "conv/depthwise_conv2d_direct.cuh"
#include "conv/depthwise_conv2d_params.cuh"
#include "conv/depthwise_conv2d_tiled.cuh"
#include "conv/depthwise_conv2d_wgrad.cuh"
#include "conv/group_pointwise_conv2d.cuh"
#include "conv/group_pointwise_conv2d_operands.cuh"
#include "conv/group_pointwise_conv2d_params.cuh"

namespace cnnkern {

#define CNNKERN_CHECK_GEMM(...) template __global__ void implicit_gemm_kernel<__VA_ARGS__>(const __VA_ARGS__)

#define CNNKERN_CHECK_TYPE(T, V)                                      \
  CNNKERN_CHECK_GEMM(Conv2dFwdProblem<T, Fast::kRow, 1>);             \
  CNNKERN_CHECK_GEMM(Conv2dFwdProblem<T, Fast::kK, 1>);               \
  CNNKERN_CHECK_GEMM(Conv2dFwdProblem<T, Fast::kK, V>);               \
  CNNKERN_CHECK_GEMM(Conv2dDgradProblem<T, Fast::kRow, 1>);           \
  CNNKERN_CHECK_GEMM(Conv2dDgradProblem<T, Fast::kK, 1>);             \
  CNNKERN_CHECK_GEMM(Conv2dDgradProblem<T, Fast::kK, V>);             \
  CNNKERN_CHECK_GEMM(Conv2dWgradProblem<T, Fast::kK>);                \
  CNNKERN_CHECK_GEMM(Conv2dWgradProblem<T, Fast::kRow>);              \
  template __global__ void conv2d_wgrad_reduce_kernel<T>(const Conv2dWgradReduce<T>)

CNNKERN_CHECK_TYPE(float, 4);
CNNKERN_CHECK_TYPE(__half, 8);
CNNKERN_CHECK_TYPE(__nv_bfloat16, 8);

// Depthwise: every instantiation csrc/cuda/depthwise_conv2d_launch.cuh can launch.
#define CNNKERN_CHECK_DW_DIRECT(T, V, MI, KT, RES) \
  template __global__ void dw_direct_kernel<T, V, MI, KT, RES>(const DwDirectParams<T>)
#define CNNKERN_CHECK_DW_WGRAD(T, VW)                                                    \
  template __global__ void dw_wgrad_kernel<T, VW, 0>(const DwWgradParams<T>);           \
  template __global__ void dw_wgrad_kernel<T, VW, 3>(const DwWgradParams<T>);           \
  template __global__ void dw_wgrad_kernel<T, VW, 5>(const DwWgradParams<T>);           \
  template __global__ void dw_wgrad_kernel<T, VW, 7>(const DwWgradParams<T>)
#define CNNKERN_CHECK_DW_TYPE(T, V)                                                               \
  template __global__ void dw_tiled_kernel<T, 0>(const DwTiledParams<T>);                         \
  template __global__ void dw_tiled_kernel<T, 3>(const DwTiledParams<T>);                         \
  template __global__ void dw_tiled_kernel<T, 5>(const DwTiledParams<T>);                         \
  template __global__ void dw_tiled_kernel<T, 7>(const DwTiledParams<T>);                         \
  CNNKERN_CHECK_DW_DIRECT(T, 1, 1, 0, false);                                                     \
  CNNKERN_CHECK_DW_DIRECT(T, 1, 1, 0, true);                                                      \
  CNNKERN_CHECK_DW_DIRECT(T, V, 1, 0, true);                                                      \
  CNNKERN_CHECK_DW_DIRECT(T, V, 1, 0, false);                                                     \
  CNNKERN_CHECK_DW_DIRECT(T, V, 1, 3, false);                                                     \
  CNNKERN_CHECK_DW_DIRECT(T, V, 1, 5, false);                                                     \
  CNNKERN_CHECK_DW_DIRECT(T, V, 1, 7, false);                                                     \
  CNNKERN_CHECK_DW_DIRECT(T, V, 2, 0, false);                                                     \
  CNNKERN_CHECK_DW_DIRECT(T, V, 2, 3, false);                                                     \
  CNNKERN_CHECK_DW_DIRECT(T, V, 2, 5, false);                                                     \
  CNNKERN_CHECK_DW_DIRECT(T, V, 2, 7, false);                                                     \
  CNNKERN_CHECK_DW_WGRAD(T, 1);                                                                   \
  CNNKERN_CHECK_DW_WGRAD(T, 4);                                                                   \
  template __global__ void dw_wgrad_finalize_kernel<T>(const DwWgradFinalizeParams<T>, int64_t)

CNNKERN_CHECK_DW_TYPE(float, 4);
CNNKERN_CHECK_DW_TYPE(__half, 8);
CNNKERN_CHECK_DW_TYPE(__nv_bfloat16, 8);

// Grouped pointwise conv: every instantiation csrc/cuda/group_pointwise_conv2d_launch.cuh can launch
// (the split reduction is conv2d's, instantiated above).
#define CNNKERN_CHECK_GPW_TYPE(T, V)                    \
  CNNKERN_CHECK_GEMM(GpwFwdProblem<T, Fast::kRow, 1>);  \
  CNNKERN_CHECK_GEMM(GpwFwdProblem<T, Fast::kK, 1>);    \
  CNNKERN_CHECK_GEMM(GpwFwdProblem<T, Fast::kK, V>);    \
  CNNKERN_CHECK_GEMM(GpwDgradProblem<T, Fast::kRow>);   \
  CNNKERN_CHECK_GEMM(GpwDgradProblem<T, Fast::kK>);     \
  CNNKERN_CHECK_GEMM(GpwWgradProblem<T, Fast::kK>);     \
  CNNKERN_CHECK_GEMM(GpwWgradProblem<T, Fast::kRow>)

CNNKERN_CHECK_GPW_TYPE(float, 4);
CNNKERN_CHECK_GPW_TYPE(__half, 8);
CNNKERN_CHECK_GPW_TYPE(__nv_bfloat16, 8);

// Channel shuffle: 2- and 4-byte words, scalar and 16-byte vectors, both mappings.
#define CNNKERN_CHECK_SHUFFLE(E, V)                                                         \
  template __global__ void channel_shuffle_kernel<E, 1, true>(const ChannelShuffleParams<E>); \
  template __global__ void channel_shuffle_kernel<E, 1, false>(const ChannelShuffleParams<E>); \
  template __global__ void channel_shuffle_kernel<E, V, true>(const ChannelShuffleParams<E>); \
  template __global__ void channel_shuffle_kernel<E, V, false>(const ChannelShuffleParams<E>)

CNNKERN_CHECK_SHUFFLE(uint16_t, 8);
CNNKERN_CHECK_SHUFFLE(uint32_t, 4);

}  // namespace cnnkern
