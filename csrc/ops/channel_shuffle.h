// The functional cnnkern_cuda::channel_shuffle (F.channel_shuffle on an (N, C, H, W) input, returned in the
// input's memory format): the call through the dispatcher and its checked output spec.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "ops/output_spec.h"

namespace cnnkern::ops {

at::Tensor channel_shuffle(const at::Tensor& input, int64_t groups);

OutputSpec channel_shuffle_spec(const at::Tensor& input, int64_t groups);

}  // namespace cnnkern::ops
