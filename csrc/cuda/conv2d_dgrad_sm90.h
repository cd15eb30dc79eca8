// The input gradient of conv2d, and so the forward of conv_transpose2d, on the sm_90a forward kernel: one
// stride-1 forward per stride phase of grad_in (csrc/cuda/conv2d_dgrad_as_fwd.h), defined in conv2d.cpp.
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>
#include <cuda_runtime_api.h>

#include "conv/conv2d_params.cuh"

namespace cnnkern {

// Runs grad_in (any strides) = dgrad(grad_out, w) [+ bias per channel, the transposed conv's] as the phases'
// forwards when dgrad_phases_as_fwd applies, the env / build / device gate holds (asked first: by default
// nothing is copied) and the forward's own gate (conv2d_fwd_sm90_why_not, as conv2d_fwd applies it) accepts
// every phase's transformed problem; phases no tap reaches get the bias or zeros. Returns whether it ran;
// false leaves grad_in untouched (a refusal after the gate costs the weight copies and falls back, only with
// CNNKERN_SM90_WGMMA=1). s: the conv2d's shape, x = grad_in, y = grad_out.
template <class T>
bool dgrad_on_sm90_fwd(const at::Tensor& grad_out, const at::Tensor& w, const at::Tensor& grad_in,
                       const Conv2dShape& s, const std::optional<at::Tensor>& bias, cudaStream_t stream);

}  // namespace cnnkern
