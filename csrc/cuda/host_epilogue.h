// Host side of the forward epilogues (kernels/common/epilogue.cuh) shared by the conv op families: checks of
// the per-channel vectors, the activation code and the statistics partials, their kernel-side views, and
// the epilogues of an output whose reduction is empty (no input channels or pixels reach it), which no kernel
// runs for. Header-only, like host_common.h.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>
#include <ATen/ops/hardtanh.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/silu.h>

#include "common/epilogue.cuh"
#include "cuda/host_common.h"

namespace cnnkern::host {

// A per-output-channel vector: `bias` has x's dtype; scale/shift may also be fp32 for fp16/bf16 x (folded
// BatchNorm parameters are fp32), and are applied on the fp32 accumulator either way.
inline void check_vector(const char* op, const char* name, const std::optional<at::Tensor>& v, int64_t c_out,
                         const at::Tensor& x, bool allow_f32) {
  if (!present(v)) return;
  TORCH_CHECK(v->dim() == 1 && v->size(0) == c_out, op, ": ", name, " must have shape (C_out=", c_out, "), got ",
              v->sizes());
  TORCH_CHECK(v->device() == x.device(), op, ": ", name, " is on ", v->device(), " but x is on ", x.device());
  const bool same = v->scalar_type() == x.scalar_type();
  const bool f32 = allow_f32 && v->scalar_type() == at::kFloat &&
                   (x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16);
  TORCH_CHECK(same || f32, op, ": ", name, " has dtype ", v->scalar_type(), " but x is ", x.scalar_type(), "; ",
              name, " must have x's dtype", allow_f32 ? " (or float32 for float16/bfloat16 x)" : "");
}

inline ChannelVec channel_vec(const std::optional<at::Tensor>& v) {
  if (!present(v)) return ChannelVec{};
  return ChannelVec{v->const_data_ptr(), v->stride(0), v->scalar_type() == at::kFloat};
}

inline void check_activation(const char* op, int64_t activation) {
  TORCH_CHECK(activation >= kActNone && activation < kActCount, op, ": activation must be 0 (none), 1 (relu), ",
              "2 (relu6) or 3 (silu), got ", activation);
}

inline ChannelAffine channel_affine(const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                    int64_t activation) {
  return ChannelAffine{channel_vec(scale), channel_vec(shift), static_cast<int>(activation)};
}

// The statistics partials the caller allocated: a contiguous fp32 (tiles, C_out, 3) tensor on x's device,
// tiles from the op's *_stats_tiles query for the same arguments.
inline void check_partials(const char* op, const at::Tensor& partials, int64_t tiles, int64_t c_out,
                           const at::Tensor& x, const at::Tensor& out) {
  TORCH_CHECK(partials.device() == x.device(), op, ": partials is on ", partials.device(), " but x is on ",
              x.device());
  TORCH_CHECK(partials.scalar_type() == at::kFloat, op, ": partials must be float32, got ", partials.scalar_type());
  TORCH_CHECK(partials.dim() == 3 && partials.size(0) == tiles && partials.size(1) == c_out && partials.size(2) == 3,
              op, ": partials must have shape (", tiles, ", ", c_out, ", 3) (tiles from the *_stats_tiles query), got ",
              partials.sizes());
  TORCH_CHECK(partials.is_contiguous(), op, ": partials must be contiguous");
  check_output(op, "partials", partials, {x, out});
}

// act(v * scale + shift) in place on an output the kernels never saw (an empty reduction left the bias or
// zero in it), through fp32 as the kernel epilogue does.
inline void empty_reduction_act(const at::Tensor& out, const std::optional<at::Tensor>& scale,
                                const std::optional<at::Tensor>& shift, int64_t activation) {
  at::Tensor z = out.to(at::kFloat);
  if (present(scale)) z.mul_(scale->to(at::kFloat).view({1, -1, 1, 1}));
  if (present(shift)) z.add_(shift->to(at::kFloat).view({1, -1, 1, 1}));
  if (activation == kActRelu) z = at::relu(z);
  if (activation == kActRelu6) z = at::hardtanh(z, 0.0, 6.0);
  if (activation == kActSilu) z = at::silu(z);
  out.copy_(z);
}

// The statistics of an output holding one value per channel (the bias as stored, or zero), as the single
// tile the *_stats_tiles queries report for an empty reduction: (N*OH*OW, value, 0).
inline void empty_reduction_stats(const at::Tensor& partials, const at::Tensor& out,
                                  const std::optional<at::Tensor>& bias) {
  if (partials.numel() == 0) return;
  partials.select(2, 0).fill_(static_cast<double>(out.size(0) * out.size(2) * out.size(3)));
  if (present(bias)) {
    partials.select(2, 1).copy_(bias->to(at::kFloat).view({1, -1}));
  } else {
    partials.select(2, 1).zero_();
  }
  partials.select(2, 2).zero_();
}

// Whether a forward's output is nonempty but no input reaches it (no input channels or pixels): the ops
// then write the epilogue of the bias (or zero) themselves, and report one statistics tile.
inline bool empty_reduction(const at::Tensor& x, const at::Tensor& w, const at::Tensor& out) {
  return out.numel() > 0 && (x.numel() == 0 || w.numel() == 0);
}

}  // namespace cnnkern::host
