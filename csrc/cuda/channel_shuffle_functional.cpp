// CUDA kernel of the functional channel_shuffle: one channel-map copy in the input's memory format.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cuda/host_ops.h"
#include "ops/channel_shuffle.h"

namespace cnnkern::cuda {
namespace {

at::Tensor channel_shuffle_cuda(const at::Tensor& input, int64_t groups) {
  const ops::OutputSpec s = ops::channel_shuffle_spec(input, groups);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor out = s.allocate(input);
  channel_map(input, out, groups, 0, /*scatter=*/true);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, CUDA, m) { m.impl("channel_shuffle", &channel_shuffle_cuda); }

}  // namespace cnnkern::cuda
