// Compiles every kernels/ header and instantiates every kernel template that csrc/ launches, for every element
// type, with no torch include path on the command line: the build itself enforces "kernels/ never includes
// torch". Every other instantiation the extension ships is here too, except where csrc/ instantiates many
// combinations of one template: those are sampled (the depthwise direct kernel: 125 here of the extension's
// 278). scripts/kernels_check_coverage.py checks exactly that against the built extension. CI compiles this for
// sm_80, the extension for sm_90a only (.ci/run), so this file is also CI's sm_80 build of the device code.
#include "check/block_replay.cuh"
#include "check/emulate_compare.cuh"
#include "check/emulate_tensor.cuh"
#include "common/epilogue.cuh"
#include "common/fastdiv.cuh"
#include "common/gemm_loader.cuh"
#include "common/gemm_math.cuh"
#include "common/gemm_tile.cuh"
#include "common/implicit_gemm.cuh"
#include "common/macros.cuh"
#include "common/numeric.cuh"
#include "common/sm90/arch.cuh"
#include "common/sm90/mbarrier.cuh"
#include "common/sm90/tma.cuh"
#include "common/sm90/wgmma.cuh"
#include "conv/channel_shuffle.cuh"
#include "conv/conv2d.cuh"
#include "conv/conv2d_dgrad.cuh"
#include "conv/conv2d_fwd.cuh"
#include "conv/conv2d_fwd_sm90.cuh"  // instantiated for sm_90a in check_kernels_sm90.cu
#include "conv/conv2d_index.cuh"
#include "conv/conv2d_params.cuh"
#include "conv/conv2d_wgrad.cuh"
#include "conv/conv_bn_relu.cuh"
#include "conv/depthwise_conv2d.cuh"
#include "conv/depthwise_conv2d_common.cuh"
#include "conv/depthwise_conv2d_direct.cuh"
#include "conv/depthwise_conv2d_params.cuh"
#include "conv/depthwise_conv2d_tiled.cuh"
#include "conv/depthwise_conv2d_wgrad.cuh"
#include "conv/group_pointwise_conv2d.cuh"
#include "conv/group_pointwise_conv2d_operands.cuh"
#include "conv/group_pointwise_conv2d_params.cuh"
#include "conv/group_pointwise_conv2d_smallk.cuh"
#include "conv/group_pointwise_conv2d_smallk_wgrad.cuh"

namespace cnnkern {

#define CNNKERN_CHECK_GEMM(...) template __global__ void implicit_gemm_kernel<__VA_ARGS__>(const __VA_ARGS__)

#define CNNKERN_CHECK_FWD(T, V, E)                                    \
  CNNKERN_CHECK_GEMM(Conv2dFwdProblem<T, Fast::kRow, 1, E>);          \
  CNNKERN_CHECK_GEMM(Conv2dFwdProblem<T, Fast::kK, 1, E>);            \
  CNNKERN_CHECK_GEMM(Conv2dFwdProblem<T, Fast::kK, V, E>)

#define CNNKERN_CHECK_TYPE(T, V)                                      \
  CNNKERN_CHECK_FWD(T, V, EpiKind::kPlain);                           \
  CNNKERN_CHECK_FWD(T, V, EpiKind::kAct);                             \
  CNNKERN_CHECK_FWD(T, V, EpiKind::kStats);                           \
  CNNKERN_CHECK_GEMM(Conv2dDgradProblem<T, Fast::kRow, 1>);           \
  CNNKERN_CHECK_GEMM(Conv2dDgradProblem<T, Fast::kK, 1>);             \
  CNNKERN_CHECK_GEMM(Conv2dDgradProblem<T, Fast::kK, V>);             \
  CNNKERN_CHECK_GEMM(Conv2dWgradProblem<T, Fast::kK>);                \
  CNNKERN_CHECK_GEMM(Conv2dWgradProblem<T, Fast::kRow>);              \
  template __global__ void conv2d_wgrad_reduce_kernel<T>(const Conv2dWgradReduce<T>)

CNNKERN_CHECK_TYPE(float, 4);
CNNKERN_CHECK_TYPE(__half, 8);
CNNKERN_CHECK_TYPE(__nv_bfloat16, 8);

// The 16-bit forward's big tile (dynamic shared memory), chosen by conv2d_fwd_tile_plan for the plain and
// activation epilogues.
#define CNNKERN_CHECK_FWD_BIG(T, E)                                                                      \
  template __global__ void implicit_gemm_kernel<Conv2dFwdProblem<T, Fast::kK, 8, E>, GemmTileBig<T>>( \
      const Conv2dFwdProblem<T, Fast::kK, 8, E>)
CNNKERN_CHECK_FWD_BIG(__half, EpiKind::kPlain);
CNNKERN_CHECK_FWD_BIG(__half, EpiKind::kAct);
CNNKERN_CHECK_FWD_BIG(__nv_bfloat16, EpiKind::kPlain);
CNNKERN_CHECK_FWD_BIG(__nv_bfloat16, EpiKind::kAct);

// Depthwise: every element type and path csrc/cuda/depthwise_conv2d_launch.cuh can launch, with the direct
// kernel's argument combinations sampled (scripts/kernels_check_coverage.py: SAMPLED).
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

// The narrow channel vectors (8- and 4-byte: C % 8 != 0 in 16-bit) and the stride-2 windows.
#define CNNKERN_CHECK_DW_NARROW(T)                                                                            \
  template __global__ void dw_direct_kernel<T, 4, 1, 3, false, EpiKind::kPlain, 1>(const DwDirectParams<T>); \
  template __global__ void dw_direct_kernel<T, 2, 1, 3, false, EpiKind::kPlain, 1>(const DwDirectParams<T>); \
  template __global__ void dw_direct_kernel<T, 4, 1, 3, false, EpiKind::kPlain, 2>(const DwDirectParams<T>); \
  template __global__ void dw_direct_kernel<T, 2, 1, 5, false, EpiKind::kAct, 2>(const DwDirectParams<T>);   \
  template __global__ void dw_direct_kernel<T, 8, 1, 7, false, EpiKind::kStats, 2>(const DwDirectParams<T>)
CNNKERN_CHECK_DW_NARROW(__half);
CNNKERN_CHECK_DW_NARROW(__nv_bfloat16);
template __global__ void dw_direct_kernel<float, 4, 1, 3, false, EpiKind::kPlain, 2>(const DwDirectParams<float>);

// The column walk (dw_column_ok): 4- and 8-byte accesses, stride 1 and 2, plain and act; all that
// dw_launch::column_any can launch.
#define CNNKERN_CHECK_DW_COLUMN_E(T, VA, E)                                           \
  template __global__ void dw_column_kernel<T, VA, 1, E>(const DwColumnParams<T>); \
  template __global__ void dw_column_kernel<T, VA, 2, E>(const DwColumnParams<T>)
#define CNNKERN_CHECK_DW_COLUMN(T, VA)                       \
  CNNKERN_CHECK_DW_COLUMN_E(T, VA, EpiKind::kPlain); \
  CNNKERN_CHECK_DW_COLUMN_E(T, VA, EpiKind::kAct)
CNNKERN_CHECK_DW_COLUMN(float, 1);
CNNKERN_CHECK_DW_COLUMN(float, 2);
CNNKERN_CHECK_DW_COLUMN(__half, 2);
CNNKERN_CHECK_DW_COLUMN(__half, 4);
CNNKERN_CHECK_DW_COLUMN(__nv_bfloat16, 2);
CNNKERN_CHECK_DW_COLUMN(__nv_bfloat16, 4);

// Row pairs (dw_direct_rows): the stride-1 windows on 16-byte vectors, multiplier 1, every epilogue.
#define CNNKERN_CHECK_DW_ROWS_K(T, V, KT)                                                                  \
  template __global__ void dw_direct_kernel<T, V, 1, KT, false, EpiKind::kPlain, 1, 2>(const DwDirectParams<T>); \
  template __global__ void dw_direct_kernel<T, V, 1, KT, false, EpiKind::kAct, 1, 2>(const DwDirectParams<T>);   \
  template __global__ void dw_direct_kernel<T, V, 1, KT, false, EpiKind::kStats, 1, 2>(const DwDirectParams<T>)
#define CNNKERN_CHECK_DW_ROWS(T, V) \
  CNNKERN_CHECK_DW_ROWS_K(T, V, 3); \
  CNNKERN_CHECK_DW_ROWS_K(T, V, 5); \
  CNNKERN_CHECK_DW_ROWS_K(T, V, 7)
CNNKERN_CHECK_DW_ROWS(float, 4);
CNNKERN_CHECK_DW_ROWS(__half, 8);
CNNKERN_CHECK_DW_ROWS(__nv_bfloat16, 8);

// Depthwise forward epilogues (act, statistics) on every forward path.
#define CNNKERN_CHECK_DW_EPI(T, V, E)                                                              \
  template __global__ void dw_tiled_kernel<T, 0, E>(const DwTiledParams<T>);                      \
  template __global__ void dw_tiled_kernel<T, 3, E>(const DwTiledParams<T>);                      \
  template __global__ void dw_tiled_kernel<T, 5, E>(const DwTiledParams<T>);                      \
  template __global__ void dw_tiled_kernel<T, 7, E>(const DwTiledParams<T>);                      \
  template __global__ void dw_direct_kernel<T, 1, 1, 0, false, E>(const DwDirectParams<T>);       \
  template __global__ void dw_direct_kernel<T, V, 1, 0, false, E>(const DwDirectParams<T>);       \
  template __global__ void dw_direct_kernel<T, V, 1, 3, false, E>(const DwDirectParams<T>);       \
  template __global__ void dw_direct_kernel<T, V, 1, 5, false, E>(const DwDirectParams<T>);       \
  template __global__ void dw_direct_kernel<T, V, 1, 7, false, E>(const DwDirectParams<T>);       \
  template __global__ void dw_direct_kernel<T, V, 2, 0, false, E>(const DwDirectParams<T>);       \
  template __global__ void dw_direct_kernel<T, V, 2, 3, false, E>(const DwDirectParams<T>);       \
  template __global__ void dw_direct_kernel<T, V, 2, 5, false, E>(const DwDirectParams<T>);       \
  template __global__ void dw_direct_kernel<T, V, 2, 7, false, E>(const DwDirectParams<T>)

CNNKERN_CHECK_DW_EPI(float, 4, EpiKind::kAct);
CNNKERN_CHECK_DW_EPI(float, 4, EpiKind::kStats);
CNNKERN_CHECK_DW_EPI(__half, 8, EpiKind::kAct);
CNNKERN_CHECK_DW_EPI(__half, 8, EpiKind::kStats);
CNNKERN_CHECK_DW_EPI(__nv_bfloat16, 8, EpiKind::kAct);
CNNKERN_CHECK_DW_EPI(__nv_bfloat16, 8, EpiKind::kStats);

// conv_bn_relu elementwise kernels: op x activation x iteration x access width x index type.
#define CNNKERN_CHECK_BN_IDX(T, K, A, CL, V)                                     \
  template __global__ void bn_kernel<T, K, A, CL, V, int32_t>(const BnParams<T>); \
  template __global__ void bn_kernel<T, K, A, CL, V, int64_t>(const BnParams<T>)
#define CNNKERN_CHECK_BN_V(T, K, A, V)     \
  CNNKERN_CHECK_BN_IDX(T, K, A, true, 1);  \
  CNNKERN_CHECK_BN_IDX(T, K, A, true, V);  \
  CNNKERN_CHECK_BN_IDX(T, K, A, false, 1); \
  CNNKERN_CHECK_BN_IDX(T, K, A, false, V)
#define CNNKERN_CHECK_BN_OP(T, K, V)          \
  CNNKERN_CHECK_BN_V(T, K, kActNone, V);      \
  CNNKERN_CHECK_BN_V(T, K, kActRelu, V);      \
  CNNKERN_CHECK_BN_V(T, K, kActRelu6, V);     \
  CNNKERN_CHECK_BN_V(T, K, kActSilu, V)
#define CNNKERN_CHECK_BN_TYPE(T, V)                  \
  CNNKERN_CHECK_BN_OP(T, BnOp::kNormalize, V);       \
  CNNKERN_CHECK_BN_OP(T, BnOp::kReduce, V);          \
  CNNKERN_CHECK_BN_OP(T, BnOp::kApply, V)

CNNKERN_CHECK_BN_TYPE(float, 4);
CNNKERN_CHECK_BN_TYPE(__half, 8);
CNNKERN_CHECK_BN_TYPE(__nv_bfloat16, 8);
template __global__ void bn_finalize_kernel<float>(const BnFinalizeParams);
template __global__ void bn_finalize_kernel<__half>(const BnFinalizeParams);
template __global__ void bn_finalize_kernel<__nv_bfloat16>(const BnFinalizeParams);

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

// The small-K grouped pointwise forward: FMA at both compute widths for every type, mma.sync for 16-bit types;
// the input gradient (kDgrad): FMA for fp32, mma.sync for 16-bit types (what the launch dispatch compiles).
#define CNNKERN_CHECK_SMALLK(T, RC, D) \
  template __global__ void gpw_smallk_kernel<T, RC, D>(const GpwSmallK<T, RC, D>)
CNNKERN_CHECK_SMALLK(float, 4, false);
CNNKERN_CHECK_SMALLK(float, 8, false);
CNNKERN_CHECK_SMALLK(__half, 4, false);
CNNKERN_CHECK_SMALLK(__half, 8, false);
CNNKERN_CHECK_SMALLK(__half, kGpwMma, false);
CNNKERN_CHECK_SMALLK(__nv_bfloat16, 4, false);
CNNKERN_CHECK_SMALLK(__nv_bfloat16, 8, false);
CNNKERN_CHECK_SMALLK(__nv_bfloat16, kGpwMma, false);
CNNKERN_CHECK_SMALLK(float, 4, true);
CNNKERN_CHECK_SMALLK(float, 8, true);
CNNKERN_CHECK_SMALLK(__half, kGpwMma, true);
CNNKERN_CHECK_SMALLK(__nv_bfloat16, kGpwMma, true);
// The small-K weight gradient (16-bit only).
template __global__ void gpw_smallk_wgrad_kernel<__half>(const GpwSmallKWgrad<__half>);
template __global__ void gpw_smallk_wgrad_kernel<__nv_bfloat16>(const GpwSmallKWgrad<__nv_bfloat16>);

// Channel shuffle: 2- and 4-byte words; the tiled channels-fast kernel (plain/masked x scatter/gather), the
// generic kernel with scalar and 16-byte vectors along both mappings, and the fill kernel (16- and 8-byte
// vectors, kG 0 and 2).
#define CNNKERN_CHECK_SHUFFLE(E, V)                                                         \
  template __global__ void channel_shuffle_tile_kernel<E, false, false>(const ChannelShuffleTileParams<E>); \
  template __global__ void channel_shuffle_tile_kernel<E, true, false>(const ChannelShuffleTileParams<E>); \
  template __global__ void channel_shuffle_tile_kernel<E, false, true>(const ChannelShuffleTileParams<E>); \
  template __global__ void channel_shuffle_tile_kernel<E, true, true>(const ChannelShuffleTileParams<E>); \
  template __global__ void channel_shuffle_kernel<E, 1, true>(const ChannelShuffleParams<E>); \
  template __global__ void channel_shuffle_kernel<E, 1, false>(const ChannelShuffleParams<E>); \
  template __global__ void channel_shuffle_kernel<E, V, true>(const ChannelShuffleParams<E>); \
  template __global__ void channel_shuffle_kernel<E, V, false>(const ChannelShuffleParams<E>); \
  template __global__ void channel_shuffle_fill_kernel<E, V, 0>(const ChannelShuffleParams<E>);  \
  template __global__ void channel_shuffle_fill_kernel<E, V, 2>(const ChannelShuffleParams<E>);  \
  template __global__ void channel_shuffle_fill_kernel<E, V / 2, 0>(const ChannelShuffleParams<E>);  \
  template __global__ void channel_shuffle_fill_kernel<E, V / 2, 2>(const ChannelShuffleParams<E>)

CNNKERN_CHECK_SHUFFLE(uint16_t, 8);
CNNKERN_CHECK_SHUFFLE(uint32_t, 4);

}  // namespace cnnkern
