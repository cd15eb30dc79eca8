// Host side of the sm_90a conv2d forward: routing gates, the weight's TMA descriptor, the persistent launch.
#include <algorithm>

#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>

#include "common/gemm_tile.cuh"
#include "conv/conv2d_fwd_sm90.cuh"
#include "cuda/conv2d_sm90.h"
#include "cuda/sm90_tensor_map.h"

namespace cnnkern {

// The pipeline arithmetic kernels/common/implicit_gemm_sm90.md relies on, checked wherever this file compiles.
static_assert(sm90::FwdTile<128>::kStageBytes == 32 * 1024 && sm90::FwdTile<128>::kStages == 5, "BN 128: 5 x 32 KiB");
static_assert(sm90::FwdTile<64>::kStageBytes == 24 * 1024 && sm90::FwdTile<64>::kStages == 7, "BN 64: 7 x 24 KiB");
static_assert(sm90::FwdTile<128>::kSmemBytes <= 227 * 1024 && sm90::FwdTile<64>::kSmemBytes <= 227 * 1024,
              "sm_90 opt-in shared memory limit");
static_assert(sm90::FwdTile<128>::kThreads == 384, "1 producer + 2 consumer warpgroups");
// conv2d_fwd_stats sizes the partials by conv2d_stats_tiles (the step-1 kernel's 128-pixel tiles).
static_assert(sm90::FwdTile<64>::kBM == GemmTile<__half>::kBM && sm90::FwdTile<128>::kBM == GemmTile<__half>::kBM,
              "the sm_90a forward's statistics tiles are the step-1 kernel's");

namespace {

template <class T, EpiKind E, int BN>
void launch(const Conv2dFwdParams<T>& p, bool out_pixel_fast, int device, cudaStream_t stream) {
  using Args = sm90::FwdArgs<T, E, BN>;
  using Tile = sm90::FwdTile<BN>;
  const Args args = Args::make(p, out_pixel_fast);
  const CUtensorMap map = sm90_encode_map_2d(Args::weight_map(p), p.w, "cnnkern conv2d_fwd (sm_90a)");

  auto* kernel = &sm90::conv2d_fwd_sm90_kernel<T, E, BN>;
  // kStats: the consumers' partial sums after the barriers (sm90::FwdStats).
  constexpr int smem = Tile::kSmemBytes + (E == EpiKind::kStats ? sm90::FwdStats<Tile>::kScratchBytes : 0);
  static_assert(smem <= 227 * 1024, "sm_90 opt-in shared memory limit");
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const int sms = sm90_device_attr(cudaDevAttrMultiProcessorCount, device);
  const int grid = std::max(1, std::min(args.sched.num_tiles(), sms));
  kernel<<<grid, Tile::kThreads, smem, stream>>>(map, args);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <class T, EpiKind E>
void launch_bn(const Conv2dFwdParams<T>& p, bool out_pixel_fast, int device, cudaStream_t stream) {
  // BN 64 where C_out <= 64 (half of a 128-wide tile would multiply zeros), 128 otherwise.
  if (p.s.cg_out <= 64) {
    launch<T, E, 64>(p, out_pixel_fast, device, stream);
  } else {
    launch<T, E, 128>(p, out_pixel_fast, device, stream);
  }
}

}  // namespace

const char* sm90_wgmma_gate(int device) {
  if (!sm90_env_enabled()) return "the sm_90a wgmma kernel is off by default (unverified on a GPU): set CNNKERN_SM90_WGMMA=1";
  if (!kBuiltWithSm90a) return "this build has no sm_90a code (TORCH_CUDA_ARCH_LIST without 9.0 / 9.0a)";
  // Asked without throwing (explain() calls this on machines with no usable driver, e.g. CI): an error here
  // is an answer, not a failure; cudaGetLastError clears it so later CUDA calls do not see it.
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return "no usable CUDA device (driver / device query failed)";
  }
  if (major != 9 || minor != 0) return "the device is not sm_90";
  return nullptr;
}

template <class T>
const char* conv2d_fwd_sm90_why_not(const Conv2dFwdParams<T>& p, GatherMap map, EpiKind epi, int device) {
  if (!sm90_env_enabled()) return sm90_wgmma_gate(device);  // the default: one static bool, nothing else
  if (sizeof(T) != 2) return "fp32 keeps the step-1 kernel";
  const Conv2dShape& s = p.s;
  if (s.groups != 1) return "grouped convolution";
  if (map != GatherMap::kChannelVec) return "x is not channels-last with 16-byte aligned pixels";
  if (s.cg_in % 64 != 0) return "C_in is not a multiple of 64";
  if (s.cg_out % 8 != 0) return "C_out is not a multiple of 8";
  const int64_t k = int64_t{s.kh} * s.kw * s.cg_in;
  const bool w_rows = p.ws.c == 1 && p.ws.w == s.cg_in && p.ws.h == int64_t{s.kw} * s.cg_in && p.ws.n >= k &&
                      (p.ws.n * int64_t{sizeof(T)}) % 16 == 0 && reinterpret_cast<uintptr_t>(p.w) % 16 == 0;
  if (!w_rows) return "the filter is not channels-last contiguous per output channel with 16-byte aligned rows";
  return sm90_wgmma_gate(device);
}

template <class T>
void launch_conv2d_fwd_sm90(const Conv2dFwdParams<T>& p, EpiKind epi, bool out_pixel_fast, int device,
                            cudaStream_t stream) {
  if constexpr (sizeof(T) == 2) {
    switch (epi) {
      case EpiKind::kPlain:
        launch_bn<T, EpiKind::kPlain>(p, out_pixel_fast, device, stream);
        return;
      case EpiKind::kAct:
        launch_bn<T, EpiKind::kAct>(p, out_pixel_fast, device, stream);
        return;
      case EpiKind::kStats:
        launch_bn<T, EpiKind::kStats>(p, out_pixel_fast, device, stream);
        return;
      default:
        break;
    }
  }
  TORCH_CHECK(false, "cnnkern conv2d_fwd (sm_90a): no kernel for this dtype / epilogue (routing error)");
}

#define CNNKERN_INSTANTIATE_SM90(T)                                                                         \
  template const char* conv2d_fwd_sm90_why_not<T>(const Conv2dFwdParams<T>&, GatherMap, EpiKind, int);   \
  template void launch_conv2d_fwd_sm90<T>(const Conv2dFwdParams<T>&, EpiKind, bool, int, cudaStream_t)
CNNKERN_INSTANTIATE_SM90(float);
CNNKERN_INSTANTIATE_SM90(__half);
CNNKERN_INSTANTIATE_SM90(__nv_bfloat16);

}  // namespace cnnkern
