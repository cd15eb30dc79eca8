// Autograd of the functional channel_shuffle: its gradient is the inverse permutation, again a channel
// shuffle (with C channels, shuffling by C / groups undoes shuffling by groups), so it is differentiable to
// any order.
#include <torch/library.h>

#include "autograd/common.h"
#include "ops/channel_shuffle.h"

namespace cnnkern::autograd {
namespace {

class ChannelShuffleFunction : public torch::autograd::Function<ChannelShuffleFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, int64_t groups) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = ops::channel_shuffle(input, groups);
    const c10::SymInt channels = input.sym_size(1);
    // (no channels: any valid groups will do)
    ctx->saved_data["inverse_groups"] = channels == 0 ? int64_t{1} : (channels / groups).guard_int(__FILE__, __LINE__);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {ops::channel_shuffle(grads[0], ctx->saved_data["inverse_groups"].toInt()), {}};
  }
};

at::Tensor channel_shuffle_autograd(const at::Tensor& input, int64_t groups) {
  if (!needs_autograd("channel_shuffle", {&input})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::channel_shuffle(input, groups);
  }
  return ChannelShuffleFunction::apply(input, groups);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, Autograd, m) { m.impl("channel_shuffle", &channel_shuffle_autograd); }

}  // namespace cnnkern::autograd
