// Schema of the functional channel_shuffle, its output spec and Meta kernel. The other kernels: CPU in
// csrc/cpu/channel_shuffle.cpp, CUDA in csrc/cuda/channel_shuffle_functional.cpp, Autograd in
// csrc/autograd/channel_shuffle.cpp.
#include "ops/channel_shuffle.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "ops/channel_map.h"
#include "ops/checks.h"

namespace cnnkern::ops {

OutputSpec channel_shuffle_spec(const at::Tensor& input, int64_t groups) {
  constexpr const char* op = "channel_shuffle";
  TORCH_CHECK(input.layout() == at::kStrided, op, ": input must be a strided (dense) tensor, got layout ",
              input.layout());
  check_4d(op, "input", input);
  check_shuffle_groups(input.sym_size(1), groups);
  const c10::SymIntArrayRef s = input.sym_sizes();
  return {{s[0], s[1], s[2], s[3]}, input.suggest_memory_format()};
}

at::Tensor channel_shuffle(const at::Tensor& input, int64_t groups) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("cnnkern_cuda::channel_shuffle", "")
                             .typed<at::Tensor(const at::Tensor&, int64_t)>();
  return op.call(input, groups);
}

namespace {

at::Tensor channel_shuffle_meta(const at::Tensor& input, int64_t groups) {
  return channel_shuffle_spec(input, groups).allocate(input);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(cnnkern_cuda, m) { m.def("channel_shuffle(Tensor input, int groups) -> Tensor"); }

TORCH_LIBRARY_IMPL(cnnkern_cuda, Meta, m) { m.impl("channel_shuffle", &channel_shuffle_meta); }

}  // namespace cnnkern::ops
