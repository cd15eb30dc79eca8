// Host side of the sm_90a conv2d weight gradient (kernels/conv/conv2d_wgrad_sm90.cuh): routing gates, the
// split-K plan, grad_out's TMA descriptor, the persistent launch and the fixed-order reduction. Off by default
// with the forward (CNNKERN_SM90_WGMMA=1, sm90_wgmma_gate) until a GPU run has verified it.
#include <algorithm>

#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>

#include "conv/conv2d_wgrad_sm90.cuh"
#include "cuda/conv2d_sm90.h"
#include "cuda/sm90_tensor_map.h"

namespace cnnkern {

// The pipeline arithmetic of kernels/common/implicit_gemm_sm90.md ("Weight gradient").
static_assert(sm90::WgradTile<128>::kStageBytes == 32 * 1024 && sm90::WgradTile<128>::kStages == 5, "BM 128: 5 x 32 KiB");
static_assert(sm90::WgradTile<64>::kStageBytes == 24 * 1024 && sm90::WgradTile<64>::kStages == 7, "BM 64: 7 x 24 KiB");
static_assert(sm90::WgradTile<128>::kThreads == 384 && sm90::WgradTile<64>::kThreads == 256,
              "1 producer + BM / 64 consumer warpgroups");

namespace {

// BM 64 where C_out <= 64 (a second consumer warpgroup would multiply the TMA's zero rows).
int wgrad_bm(const Conv2dShape& s) { return s.cg_out <= 64 ? 64 : 128; }

template <class T, int BM>
void launch(const Conv2dWgradParams<T>& p, int device, cudaStream_t stream) {
  using Args = sm90::WgradArgs<T, BM>;
  using Tile = sm90::WgradTile<BM>;
  TORCH_CHECK(p.k_per_split % Tile::kBK == 0, "cnnkern conv2d_bwd_weight (sm_90a): split of ", p.k_per_split,
              " pixels is not a multiple of ", Tile::kBK, " (routing error)");
  const Args args = Args::make(p);
  const CUtensorMap map = sm90_encode_map_2d(Args::dy_map(p), p.dy, "cnnkern conv2d_bwd_weight (sm_90a)");
  auto* kernel = &sm90::conv2d_wgrad_sm90_kernel<T, BM>;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tile::kSmemBytes));
  const int sms = sm90_device_attr(cudaDevAttrMultiProcessorCount, device);
  const int grid = std::max(1, std::min(args.sched.num_items(), sms));
  kernel<<<grid, Tile::kThreads, Tile::kSmemBytes, stream>>>(map, args);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

SplitKPlan conv2d_wgrad_sm90_plan(const Conv2dShape& s) {
  const int bm = wgrad_bm(s);
  return sm90::wgrad_sm90_split_plan(s.cg_out, int64_t{s.kh} * s.kw * s.cg_in, int64_t{s.n} * s.oh * s.ow, bm,
                                     sm90::WgradTile<128>::kBN, sm90::WgradTile<128>::kBK);
}

template <class T>
const char* conv2d_wgrad_sm90_why_not(const Conv2dWgradParams<T>& p, int device) {
  if (!sm90_env_enabled()) return sm90_wgmma_gate(device);  // the default: one static bool, nothing else
  if (sizeof(T) != 2) return "fp32 keeps the step-1 kernel";
  const Conv2dShape& s = p.s;
  if (s.groups != 1) return "grouped convolution";
  constexpr int64_t V = 16 / 2;  // elements per 16 bytes
  const Strides4& d = p.dys;
  const bool dy_rows = d.c == 1 && d.w % V == 0 && d.w >= s.c_out && d.h == int64_t{s.ow} * d.w &&
                       d.n == int64_t{s.oh} * d.h && reinterpret_cast<uintptr_t>(p.dy) % 16 == 0;
  if (!dy_rows) return "grad_out is not channels-last with one 16-byte aligned pixel stride";
  const Strides4& x = p.xs;
  const bool x_vec = x.c == 1 && x.w % V == 0 && x.h % V == 0 && x.n % V == 0 &&
                     reinterpret_cast<uintptr_t>(p.x) % 16 == 0;
  if (!x_vec) return "x is not channels-last with 16-byte aligned pixels";
  if (s.cg_in % 64 != 0) return "C_in is not a multiple of 64";
  return sm90_wgmma_gate(device);
}

template <class T>
void launch_conv2d_wgrad_sm90(const Conv2dWgradParams<T>& p, int device, cudaStream_t stream) {
  if constexpr (sizeof(T) == 2) {
    if (wgrad_bm(p.s) == 64) {
      launch<T, 64>(p, device, stream);
    } else {
      launch<T, 128>(p, device, stream);
    }
    launch_conv2d_wgrad_reduce<T>(p, stream);
  } else {
    TORCH_CHECK(false, "cnnkern conv2d_bwd_weight (sm_90a): no kernel for this dtype (routing error)");
  }
}

#define CNNKERN_INSTANTIATE_WGRAD_SM90(T)                                                              \
  template const char* conv2d_wgrad_sm90_why_not<T>(const Conv2dWgradParams<T>&, int);               \
  template void launch_conv2d_wgrad_sm90<T>(const Conv2dWgradParams<T>&, int, cudaStream_t)
CNNKERN_INSTANTIATE_WGRAD_SM90(float);
CNNKERN_INSTANTIATE_WGRAD_SM90(__half);
CNNKERN_INSTANTIATE_WGRAD_SM90(__nv_bfloat16);

}  // namespace cnnkern
