// CPU kernel of the functional channel_shuffle, on ATen (see cpu/aten_conv.h for why it exists).
#include <torch/library.h>

#include "cpu/group_pointwise.h"
#include "ops/channel_shuffle.h"

namespace cnnkern::cpu {
namespace {

at::Tensor channel_shuffle_cpu(const at::Tensor& input, int64_t groups) {
  at::Tensor out = ops::channel_shuffle_spec(input, groups).allocate(input);
  channel_map(input, out, ops::ChannelMap{input.size(1), groups}, /*scatter=*/true);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, CPU, m) { m.impl("channel_shuffle", &channel_shuffle_cpu); }

}  // namespace cnnkern::cpu
