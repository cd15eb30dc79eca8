// The sm_90a conv2d forward (kernels/conv/conv2d_fwd_sm90.cuh: wgmma + TMA, warp-specialized, persistent):
// when it may run, and its launch. Default OFF: it runs only where every gate below holds, the last being
// CNNKERN_SM90_WGMMA=1, until a GPU run has verified it (README, "unmeasured kernels").
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "common/epilogue.cuh"
#include "conv/conv2d_params.cuh"
#include "cuda/conv2d_launch.h"

namespace cnnkern {

// Whether the extension holds sm_90a code (setup.py maps the arch entry 9.0 to 9.0a and defines
// CNNKERN_HAS_SM90A; a build for plain sm_90 or only sm_80 has the kernel as a trap stub).
constexpr bool kBuiltWithSm90a =
#if defined(CNNKERN_HAS_SM90A)
    true;
#else
    false;
#endif

// nullptr when the sm_90a kernel takes this forward; otherwise why not (for explain()). The gates, in
// order: CNNKERN_SM90_WGMMA=1, an sm_90a build, the device is sm_90, the problem fits (16-bit, one group,
// the 16-byte channel gather, C_in % 64 == 0, C_out % 8 == 0, a channels-last contiguous filter with
// 16-byte aligned rows; every epilogue: plain, act and, since 2026-12-02, the statistics).
template <class T>
const char* conv2d_fwd_sm90_why_not(const Conv2dFwdParams<T>& p, GatherMap map, EpiKind epi, int device);

// The gates that do not depend on the problem (env, build, device): nullptr when all hold.
const char* sm90_wgmma_gate(int device);

template <class T>
void launch_conv2d_fwd_sm90(const Conv2dFwdParams<T>& p, EpiKind epi, bool out_pixel_fast, int device,
                            cudaStream_t stream);

// The weight gradient (kernels/conv/conv2d_wgrad_sm90.cuh): nullptr when it takes this problem, otherwise why
// not. The gates, in order: the env / build / device gate above, 16-bit, one group, grad_out channels-last with
// one pixel stride that is a 16-byte multiple (a [pixels][C_out] TMA matrix), x channels-last with 16-byte
// aligned pixels, C_in % 64 == 0. p.workspace / splits / k_per_split are not looked at.
template <class T>
const char* conv2d_wgrad_sm90_why_not(const Conv2dWgradParams<T>& p, int device);

// Its split-K plan (kernels/conv/conv2d_wgrad_sm90.cuh, wgrad_sm90_split_plan) for the workspace the caller
// allocates: [splits][C_out][KH*KW*C_in] fp32.
SplitKPlan conv2d_wgrad_sm90_plan(const Conv2dShape& s);

// The split-K GEMM into p.workspace (p.splits / p.k_per_split from conv2d_wgrad_sm90_plan), then the
// fixed-order reduction into p.dw.
template <class T>
void launch_conv2d_wgrad_sm90(const Conv2dWgradParams<T>& p, int device, cudaStream_t stream);

}  // namespace cnnkern
