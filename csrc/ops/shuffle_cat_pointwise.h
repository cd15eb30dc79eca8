// ShuffleNetV2's concat + channel shuffle folded into the branches' last pointwise convs
// (cnnkern_cuda::shuffle_cat_pointwise, shuffle_cat_pointwise2 and the passthrough's gradient): calls through
// the dispatcher and checked output specs. Semantics: those of cnnkern/ops/shuffle_cat_pointwise.py; the
// first branch's channels sit at offset 0 of the concatenation, the second's after them.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

#include "ops/output_spec.h"

namespace cnnkern::ops {

at::Tensor shuffle_cat_pointwise(const at::Tensor& passthrough, const at::Tensor& input, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                                 const std::optional<at::Tensor>& shift, int64_t groups, int64_t shuffle_groups,
                                 bool relu);
at::Tensor shuffle_cat_pointwise2(const at::Tensor& input1, const at::Tensor& weight1,
                                  const std::optional<at::Tensor>& bias1, const std::optional<at::Tensor>& scale1,
                                  const std::optional<at::Tensor>& shift1, const at::Tensor& input2,
                                  const at::Tensor& weight2, const std::optional<at::Tensor>& bias2,
                                  const std::optional<at::Tensor>& scale2, const std::optional<at::Tensor>& shift2,
                                  int64_t groups, int64_t shuffle_groups, bool relu);
// The passthrough's gradient: its `channels` channels gathered out of their slots in grad_output.
at::Tensor shuffle_cat_pointwise_backward_passthrough(const at::Tensor& grad_output, c10::SymInt channels,
                                                      int64_t shuffle_groups, bool channels_last);

OutputSpec shuffle_cat_pointwise_spec(const at::Tensor& passthrough, const at::Tensor& input,
                                      const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                      const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                      int64_t groups, int64_t shuffle_groups);
OutputSpec shuffle_cat_pointwise2_spec(const at::Tensor& input1, const at::Tensor& weight1,
                                       const std::optional<at::Tensor>& bias1, const std::optional<at::Tensor>& scale1,
                                       const std::optional<at::Tensor>& shift1, const at::Tensor& input2,
                                       const at::Tensor& weight2, const std::optional<at::Tensor>& bias2,
                                       const std::optional<at::Tensor>& scale2,
                                       const std::optional<at::Tensor>& shift2, int64_t groups,
                                       int64_t shuffle_groups);
OutputSpec shuffle_cat_pointwise_backward_passthrough_spec(const at::Tensor& grad_output,
                                                           const c10::SymInt& channels, int64_t shuffle_groups,
                                                           bool channels_last);

}  // namespace cnnkern::ops
