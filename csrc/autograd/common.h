// Shared by the ops' Autograd kernels (csrc/autograd/*.cpp, torch::autograd::Function as torchvision's
// csrc/ops/autograd/ does). Each kernel runs its op below autograd directly when nothing needs a gradient,
// else through its Function, whose backward calls the other ops through the dispatcher so that the
// gradients are differentiable again (double backward).
#pragma once

#include <bit>
#include <cstdint>
#include <initializer_list>
#include <optional>

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/custom_function.h>

namespace cnnkern::autograd {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

inline const at::Tensor* opt(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? &*t : nullptr;
}

// Forward-mode AD has no formula here (a C++ Function has no jvp): refuse a tangent rather than drop it.
inline void check_no_forward_grad(const char* op, std::initializer_list<const at::Tensor*> tensors) {
  for (const at::Tensor* t : tensors) {
    TORCH_CHECK(t == nullptr || !t->defined() || !t->_fw_grad(/*level=*/0).defined(), "cnnkern_cuda::", op,
                ": forward-mode AD (jvp) is not supported by the C++ ops; use torch.ops.cnnkern.", op,
                " (the Python ops) for forward-mode AD");
  }
}

// Whether this call must be recorded by autograd: grad mode is on and a tensor requires grad.
inline bool needs_autograd(const char* op, std::initializer_list<const at::Tensor*> tensors) {
  check_no_forward_grad(op, tensors);
  if (!at::GradMode::is_enabled()) return false;
  for (const at::Tensor* t : tensors) {
    if (t != nullptr && t->defined() && t->requires_grad()) return true;
  }
  return false;
}

// Which of a Function's tensor arguments are present. An autograd edge exists for present tensors only, so
// argument i's edge index is the number of present tensor arguments before it.
class Present {
 public:
  explicit Present(std::initializer_list<const at::Tensor*> args) {
    int64_t bit = 1;
    for (const at::Tensor* t : args) {
      if (t != nullptr && t->defined()) mask_ |= bit;
      bit <<= 1;
    }
  }
  explicit Present(int64_t mask) : mask_(mask) {}

  int64_t mask() const { return mask_; }
  bool has(int arg) const { return (mask_ >> arg) & 1; }
  // ctx->needs_input_grad for tensor argument `arg` (false when it is absent).
  bool needs(AutogradContext* ctx, int arg) const {
    if (!has(arg)) return false;
    const auto before = static_cast<uint64_t>(mask_ & ((int64_t{1} << arg) - 1));
    return ctx->needs_input_grad(static_cast<size_t>(std::popcount(before)));
  }

 private:
  int64_t mask_ = 0;
};

// A tensor to save only if `needed`: what is not needed by any gradient stays unreferenced.
inline at::Tensor keep_if(bool needed, const at::Tensor& t) { return needed ? t : at::Tensor(); }
inline at::Tensor keep_if(bool needed, const std::optional<at::Tensor>& t) {
  return needed && t.has_value() ? *t : at::Tensor();
}

inline std::optional<at::Tensor> maybe(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

}  // namespace cnnkern::autograd
