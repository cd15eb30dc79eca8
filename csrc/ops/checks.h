// Argument checks and layout rules shared by the functional ops' kernels of every dispatch key (Meta, CPU,
// CUDA). Sizes are read as SymInts, so the same code serves eager tensors and fake tensors with symbolic
// shapes (torch.compile): a comparison on a symbolic size becomes a guard. Messages follow ATen's
// wording where ATen has the same check, so code that catches F.conv2d's errors keeps working.
#pragma once

#include <initializer_list>
#include <optional>
#include <utility>

#include <ATen/core/Tensor.h>
#include <c10/core/MemoryFormat.h>

namespace cnnkern::ops {

// One named tensor argument; `t` may be absent (an optional argument).
struct Named {
  const char* name;
  const at::Tensor* t;
};

inline const at::Tensor* opt(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? &*t : nullptr;
}

// Every present tensor: strided, floating point, and the same dtype and device as the first one.
void check_same_float(const char* op, std::initializer_list<Named> tensors);

// `t` is 4-D (N, C, H, W); `what` names its layout for the message.
void check_4d(const char* op, const char* name, const at::Tensor& t, const char* what = "(N, C, H, W)");

// ATen's rule for a convolution's output layout (cudnn_conv_suggest_memory_format and the CPU backends):
// channels_last when either operand suggests it, else contiguous.
at::MemoryFormat conv_memory_format(const at::Tensor& input, const at::Tensor& weight);

inline at::MemoryFormat format_of(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

inline bool suggests_channels_last(const at::Tensor& t) {
  return t.dim() == 4 && t.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
}

// A fresh tensor with `like`'s dtype and device.
at::Tensor empty(c10::SymIntArrayRef size, const at::Tensor& like, at::MemoryFormat format);

}  // namespace cnnkern::ops
