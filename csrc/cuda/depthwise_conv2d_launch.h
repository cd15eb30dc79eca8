// Typed launch entry points for the depthwise conv2d kernels. Defined in depthwise_conv2d_launch.cuh
// and explicitly instantiated per dtype in depthwise_conv2d_{gather,wgrad}_{f32,f16,bf16}.cu so that
// the template instantiations compile in parallel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "conv/depthwise_conv2d_params.cuh"

namespace cnnkern {

// Shared-memory tiled gather (pixel-contiguous tensors); the template follows dw_window_k(p.g).
template <class T>
void launch_dw_tiled(const DwTiledParams<T>& p, cudaStream_t stream);

// Direct gather, as planned by dw_plan_gather. v: channel vector width (1, 2, 4 or 8 elements up to 16
// bytes: dw_vec_width); mi: multiplier folded into a vector (1, or 2 for the forward op with 16-byte
// vectors); w: the compile-time window (dw_direct_window).
template <class T>
void launch_dw_direct(const DwDirectParams<T>& p, int v, int mi, DwWindow w, cudaStream_t stream);

// Column walk (dw_column_ok / dw_plan_column): va elements per access (the plan's channel vector), the
// window's stride from p.g.sh. Plain (forward or stride-1 input-grad) and act epilogues.
template <class T>
void launch_dw_column(const DwColumnParams<T>& p, int va, cudaStream_t stream);
template <class T>
void launch_dw_column_act(const DwColumnParams<T>& p, int va, cudaStream_t stream);

// The forward with the epilogues of fused conv + BatchNorm (common/epilogue.cuh): act from p.g.aff, or the
// statistics into p.g.stats (tiles: dw_stats_tiles; the direct plan needs dw_direct_add_stats first).
// The forward form only (no residue); same v / mi / kt as above.
template <class T>
void launch_dw_tiled_act(const DwTiledParams<T>& p, cudaStream_t stream);
template <class T>
void launch_dw_direct_act(const DwDirectParams<T>& p, int v, int mi, DwWindow w, cudaStream_t stream);
template <class T>
void launch_dw_tiled_stats(const DwTiledParams<T>& p, cudaStream_t stream);
template <class T>
void launch_dw_direct_stats(const DwDirectParams<T>& p, int v, int mi, DwWindow w, cudaStream_t stream);

// Weight gradient: partial sums into p.ws, then f (reading p.ws) casts them into grad_w.
// vw: channels per thread (1 or 4); kt: 3, 5, 7 for square filters of that size, else 0.
template <class T>
void launch_dw_wgrad(const DwWgradParams<T>& p, int vw, int kt, const DwWgradFinalizeParams<T>& f,
                     cudaStream_t stream);

}  // namespace cnnkern
