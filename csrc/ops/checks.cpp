#include "ops/checks.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

namespace cnnkern::ops {

void check_same_float(const char* op, std::initializer_list<Named> tensors) {
  const Named* first = nullptr;
  for (const Named& n : tensors) {
    if (n.t == nullptr) continue;
    const at::Tensor& t = *n.t;
    TORCH_CHECK(t.defined(), op, ": ", n.name, " is an undefined tensor");
    TORCH_CHECK(t.layout() == at::kStrided, op, ": ", n.name, " must be a strided (dense) tensor, got layout ",
                t.layout());
    TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": expected floating-point tensors, but ", n.name,
                " has dtype ", t.scalar_type());
    if (first == nullptr) {
      first = &n;
      continue;
    }
    const at::Tensor& f = *first->t;
    TORCH_CHECK(t.scalar_type() == f.scalar_type(), op, ": ", first->name, " (", f.scalar_type(), ") and ",
                n.name, " (", t.scalar_type(), ") should have the same dtype (", first->name, " size ",
                f.sym_sizes(), ", ", n.name, " size ", t.sym_sizes(), ")");
    TORCH_CHECK(t.device() == f.device(), op, ": expected all tensors to be on the same device, but ",
                first->name, " is on ", f.device(), " and ", n.name, " is on ", t.device());
  }
}

void check_4d(const char* op, const char* name, const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.dim() == 4, op, ": expected a 4-D ", name, " ", what, ", but got ", name, " of size ",
              t.sym_sizes());
}

at::MemoryFormat conv_memory_format(const at::Tensor& input, const at::Tensor& weight) {
  return suggests_channels_last(input) || suggests_channels_last(weight) ? at::MemoryFormat::ChannelsLast
                                                                         : at::MemoryFormat::Contiguous;
}

at::Tensor empty(c10::SymIntArrayRef size, const at::Tensor& like, at::MemoryFormat format) {
  return at::empty_symint(size, like.options(), format);
}

}  // namespace cnnkern::ops
