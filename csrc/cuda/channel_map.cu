// Host side of cnnkern_cuda::channel_map: the channel permutation copy behind channel_shuffle, the
// passthrough half of shuffle_cat_pointwise and their gradients. scatter: dst[:, dest(c)] = src[:, c];
// gather: dst[:, c] = src[:, dest(c)], with dest the ChannelMap (total channels = the permuted side's,
// shuffle_groups, channel_offset). Any strides on either side; the kernel plan (tiled channels-fast
// kernel, or the generic kernel's mapping and vector width) is plan_channel_shuffle, shared with the
// emulator.
#include <algorithm>
#include <cstdint>
#include <limits>

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include "conv/channel_shuffle.cuh"
#include "cuda/host_common.h"
#include "cuda/host_ops.h"

namespace cnnkern {
namespace {

using namespace host;

constexpr int64_t kIndexLimit = std::numeric_limits<int32_t>::max() - 4096;

template <class E, int V, bool kPixelFast>
void launch(const ChannelShuffleParams<E>& p, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((p.items + kThreads - 1) / kThreads, int64_t{1} << 20);
  channel_shuffle_kernel<E, V, kPixelFast><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <class E, int V>
void launch_fill_v(const ChannelShuffleParams<E>& p, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((p.items + kThreads - 1) / kThreads, int64_t{1} << 20);
  if (p.div_groups.divisor == 2) {  // ShuffleNetV2: the word pattern known at compile time
    channel_shuffle_fill_kernel<E, V, 2><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
  } else {
    channel_shuffle_fill_kernel<E, V, 0><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// v: the plan's words per Q vector, 16 or 8 bytes.
template <class E>
void launch_fill(const ChannelShuffleParams<E>& p, int v, cudaStream_t stream) {
  constexpr int kV = 16 / static_cast<int>(sizeof(E));
  if (v == kV) {
    launch_fill_v<E, kV>(p, stream);
  } else {
    TORCH_CHECK(v == kV / 2, "cnnkern channel_map: internal error, fill with ", v, " words per vector");
    launch_fill_v<E, kV / 2>(p, stream);
  }
}

// Persistent CTAs over the tiles: as many as can be resident (8 x 256 threads per SM, fewer when the
// shared memory per CTA limits it), never more than there are tiles.
template <class E, bool kMasked, bool kGather>
void launch_tiled(const ChannelShufflePlan& plan, const ChannelShuffleTileParams<E>& p, cudaStream_t stream) {
  using Tile = ChannelShuffleTile<E, kMasked, kGather>;
  // Device attributes (cached by the driver; no ATen/cuda header, which needs the full toolkit).
  int device = 0, sms = 0, threads = 0, smem = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&threads, cudaDevAttrMaxThreadsPerMultiProcessor, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
  const int per_sm_threads = threads / Tile::kThreads;
  // The driver reserves 1 KB of shared memory per resident CTA.
  const int per_sm_smem = smem / (plan.smem_bytes + 1024);
  const int per_sm = std::max(1, std::min(per_sm_threads, per_sm_smem));
  const int blocks = std::min(p.tiles, sms * per_sm);
  channel_shuffle_tile_kernel<E, kMasked, kGather><<<blocks, Tile::kThreads, plan.smem_bytes, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// A pure copy: dispatched on the element size, not the dtype.
template <class E>
void run(const at::Tensor& src, const at::Tensor& dst, int channels, int total, int shuffle_groups, int offset,
         bool scatter, bool fill, cudaStream_t stream) {
  const int n = static_cast<int>(src.size(0)), h = static_cast<int>(src.size(2)), w = static_cast<int>(src.size(3));
  const ChannelShufflePlan plan = plan_channel_shuffle(n, h, w, channels, total, strides_of(src), src.const_data_ptr(),
                                                       strides_of(dst), dst.const_data_ptr(), sizeof(E), scatter, fill);
  const int pixels = n * h * w;
  if (plan.tiled) {
    const auto p = make_channel_shuffle_tile_params<E>(plan, static_cast<const E*>(src.const_data_ptr()),
                                                       static_cast<E*>(dst.mutable_data_ptr()), pixels, channels,
                                                       total, shuffle_groups, offset);
    if (scatter) {
      if (plan.masked) launch_tiled<E, true, false>(plan, p, stream);
      else launch_tiled<E, false, false>(plan, p, stream);
    } else {
      if (plan.masked) launch_tiled<E, true, true>(plan, p, stream);
      else launch_tiled<E, false, true>(plan, p, stream);
    }
    return;
  }
  if (plan.fill) {
    launch_fill<E>(make_channel_shuffle_fill<E>(static_cast<const E*>(src.const_data_ptr()), strides_of(src),
                                                static_cast<E*>(dst.mutable_data_ptr()), strides_of(dst), n, h, w,
                                                channels, total, shuffle_groups, offset, plan.vec),
                   plan.vec, stream);
    return;
  }
  const ChannelShuffleParams<E> p = make_channel_shuffle_params<E>(
      plan, static_cast<const E*>(src.const_data_ptr()), strides_of(src), static_cast<E*>(dst.mutable_data_ptr()),
      strides_of(dst), n, h, w, channels, total, shuffle_groups, offset, scatter);
  constexpr int V = 16 / sizeof(E);
  if (plan.vec == 1) {
    if (plan.pixel_fast) launch<E, 1, true>(p, stream);
    else launch<E, 1, false>(p, stream);
  } else {
    if (plan.pixel_fast) launch<E, V, true>(p, stream);
    else launch<E, V, false>(p, stream);
  }
}

}  // namespace

// ---- op (declared in cuda/host_ops.h) ------------------------------------------------------------

namespace cuda {

using namespace host;

namespace {

void channel_map_impl(const at::Tensor& src, const at::Tensor& dst, int64_t shuffle_groups, int64_t channel_offset,
                      bool scatter, bool fill) {
  constexpr const char* op = "cnnkern channel_map";
  check_tensor(op, "src", src, "src", src);
  check_tensor(op, "dst", dst, "src", src);
  check_dtype(op, src);
  TORCH_CHECK(src.size(0) == dst.size(0) && src.size(2) == dst.size(2) && src.size(3) == dst.size(3), op,
              ": src ", src.sizes(), " and dst ", dst.sizes(), " must have the same batch and spatial size");
  const int64_t channels = scatter ? src.size(1) : dst.size(1);
  const int64_t total = scatter ? dst.size(1) : src.size(1);
  TORCH_CHECK(shuffle_groups > 0 && total % shuffle_groups == 0, op, ": shuffle_groups=", shuffle_groups,
              " must be positive and divide the ", total, " permuted channels");
  TORCH_CHECK(channel_offset >= 0 && channel_offset + channels <= total, op, ": channels [", channel_offset, ", ",
              channel_offset + channels, ") do not fit the ", total, " permuted channels");
  const int64_t pixels = src.size(0) * src.size(2) * src.size(3);
  TORCH_CHECK(pixels * channels <= kIndexLimit && total <= kIndexLimit, op, ": ", channels, " x ", pixels,
              " elements exceed the 32-bit index limit; split the batch");
  check_output(op, "dst", dst, {src});

  c10::cuda::CUDAGuard guard(src.device());
  if (pixels * channels == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  auto i = [](int64_t v) { return static_cast<int>(v); };
  if (src.element_size() == 2) {
    run<uint16_t>(src, dst, i(channels), i(total), i(shuffle_groups), i(channel_offset), scatter, fill, stream);
  } else {
    run<uint32_t>(src, dst, i(channels), i(total), i(shuffle_groups), i(channel_offset), scatter, fill, stream);
  }
}

}  // namespace

void channel_map(const at::Tensor& src, const at::Tensor& dst, int64_t shuffle_groups, int64_t channel_offset,
                 bool scatter) {
  channel_map_impl(src, dst, shuffle_groups, channel_offset, scatter, /*fill=*/false);
}

void channel_map_scatter_fill(const at::Tensor& src, const at::Tensor& dst, int64_t shuffle_groups,
                              int64_t channel_offset) {
  channel_map_impl(src, dst, shuffle_groups, channel_offset, /*scatter=*/true, /*fill=*/true);
}

}  // namespace cuda

// The out-variant op (dst preallocated by the caller, any strides). The functional op taking the name
// channel_shuffle is defined in csrc/ops/channel_shuffle.cpp.
TORCH_LIBRARY_FRAGMENT(cnnkern_cuda, m) {
  m.def("channel_map(Tensor src, Tensor(a!) dst, int shuffle_groups, int channel_offset, bool scatter) -> ()");
}

TORCH_LIBRARY_IMPL(cnnkern_cuda, CUDA, m) { m.impl("channel_map", &cuda::channel_map); }

}  // namespace cnnkern
