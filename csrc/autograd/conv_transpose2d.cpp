// Autograd of the functional conv_transpose2d. A transposed conv is the input gradient of its equivalent
// conv2d (ops/conv_transpose2d.h), so its gradients are conv2d ops over that conv2d: grad_input = conv2d(
// grad, weight), grad_weight = conv2d_backward_weight(input, grad), both through the dispatcher and hence
// differentiable again.
#include <torch/library.h>

#include <ATen/ops/zeros.h>

#include "autograd/common.h"
#include "ops/conv2d.h"
#include "ops/conv_transpose2d.h"

namespace cnnkern::autograd {
namespace {

using SymInts = std::vector<c10::SymInt>;

class ConvTranspose2dFunction : public torch::autograd::Function<ConvTranspose2dFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef output_padding, at::IntArrayRef dilation, int64_t groups) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = ops::conv_transpose2d(input, weight, bias, stride, padding, output_padding, dilation, groups);
    ctx->save_for_backward({keep_if(weight.requires_grad(), input), keep_if(input.requires_grad(), weight)});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["output_padding"] = output_padding;
    ctx->saved_data["dilation"] = dilation;
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["present"] = Present({&input, &weight, opt(bias)}).mask();
    ctx->saved_data["input_size"] = input.sym_sizes();
    ctx->saved_data["weight_size"] = weight.sym_sizes();
    ctx->saved_data["input_format"] = static_cast<int64_t>(input.suggest_memory_format());
    ctx->saved_data["weight_cl"] = weight.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &weight = saved[1], &grad = grads[0];
    const Present present(ctx->saved_data["present"].toInt());
    const std::vector<int64_t> stride = ctx->saved_data["stride"].toIntVector();
    const std::vector<int64_t> padding = ctx->saved_data["padding"].toIntVector();
    const std::vector<int64_t> output_padding = ctx->saved_data["output_padding"].toIntVector();
    const std::vector<int64_t> dilation = ctx->saved_data["dilation"].toIntVector();
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const SymInts input_size = ctx->saved_data["input_size"].toSymIntVector();
    const SymInts weight_size = ctx->saved_data["weight_size"].toSymIntVector();
    // A weight without output channels: the output had none, nothing depends on any operand.
    const bool empty = weight_size[1] == 0;
    const ops::EquivalentConv2d e =
        ops::equivalent_conv2d(grad.sym_size(2), grad.sym_size(3), stride, padding, output_padding);
    // Rows past every input's reach (only where output_padding >= stride) have no gradient but the bias's.
    const at::Tensor reached =
        e.cropped ? grad.narrow_symint(2, 0, e.keep[0]).narrow_symint(3, 0, e.keep[1]) : grad;
    at::Tensor grad_in, grad_w, grad_b;
    if (present.needs(ctx, 0)) {
      const auto format = static_cast<at::MemoryFormat>(ctx->saved_data["input_format"].toInt());
      grad_in = empty ? at::zeros_symint(input_size, grad.options())
                      : ops::conv2d(reached, weight, std::nullopt, stride, e.padding, dilation, groups)
                            .contiguous(format);
    }
    if (present.needs(ctx, 1)) {
      grad_w = empty ? at::zeros_symint(weight_size, grad.options())
                     : ops::conv2d_backward_weight(input, reached, weight_size, stride, e.padding, dilation, groups,
                                                   ctx->saved_data["weight_cl"].toBool());
    }
    if (present.needs(ctx, 2)) grad_b = grad.sum({0, 2, 3});
    return {grad_in, grad_w, grad_b, {}, {}, {}, {}, {}};
  }
};

at::Tensor conv_transpose2d_autograd(const at::Tensor& input, const at::Tensor& weight,
                                     const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                     at::IntArrayRef padding, at::IntArrayRef output_padding,
                                     at::IntArrayRef dilation, int64_t groups) {
  if (!needs_autograd("conv_transpose2d", {&input, &weight, opt(bias)})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::conv_transpose2d(input, weight, bias, stride, padding, output_padding, dilation, groups);
  }
  return ConvTranspose2dFunction::apply(input, weight, bias, stride, padding, output_padding, dilation, groups);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, Autograd, m) { m.impl("conv_transpose2d", &conv_transpose2d_autograd); }

}  // namespace cnnkern::autograd
