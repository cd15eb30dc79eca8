// Autograd of the functional conv2d ops. Each is linear in each operand, and its derivatives are the other
// two ops (grad_output ⊛ weight via the input grad, and so on), called through the dispatcher, so every
// order of derivative works: conv2d -> (backward_input, backward_weight); backward_input -> (conv2d,
// backward_weight); backward_weight -> (conv2d, backward_input).
#include <torch/library.h>

#include <ATen/ops/zeros.h>

#include "autograd/common.h"
#include "ops/conv2d.h"

namespace cnnkern::autograd {
namespace {

using Ints = std::vector<int64_t>;
using SymInts = std::vector<c10::SymInt>;

bool channels_last(const at::Tensor& t) { return t.suggest_memory_format() == at::MemoryFormat::ChannelsLast; }

void save_conv(AutogradContext* ctx, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
               int64_t groups) {
  ctx->saved_data["stride"] = stride;
  ctx->saved_data["padding"] = padding;
  ctx->saved_data["dilation"] = dilation;
  ctx->saved_data["groups"] = groups;
}

struct ConvArgs {
  Ints stride, padding, dilation;
  int64_t groups;
};

ConvArgs load_conv(AutogradContext* ctx) {
  return {ctx->saved_data["stride"].toIntVector(), ctx->saved_data["padding"].toIntVector(),
          ctx->saved_data["dilation"].toIntVector(), ctx->saved_data["groups"].toInt()};
}

at::Tensor zeros(const SymInts& size, const at::Tensor& like) { return at::zeros_symint(size, like.options()); }

// -------------------------------------------------------------------------------------------- conv2d
class Conv2dFunction : public torch::autograd::Function<Conv2dFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, int64_t groups) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = ops::conv2d(input, weight, bias, stride, padding, dilation, groups);
    ctx->save_for_backward({keep_if(weight.requires_grad(), input), keep_if(input.requires_grad(), weight)});
    save_conv(ctx, stride, padding, dilation, groups);
    ctx->saved_data["present"] = Present({&input, &weight, opt(bias)}).mask();
    ctx->saved_data["input_size"] = input.sym_sizes();
    ctx->saved_data["weight_size"] = weight.sym_sizes();
    ctx->saved_data["input_cl"] = channels_last(input);
    ctx->saved_data["weight_cl"] = channels_last(weight);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &weight = saved[1], &grad = grads[0];
    const Present present(ctx->saved_data["present"].toInt());
    const ConvArgs a = load_conv(ctx);
    const SymInts input_size = ctx->saved_data["input_size"].toSymIntVector();
    const SymInts weight_size = ctx->saved_data["weight_size"].toSymIntVector();
    // No input channels: the output had none either (ATen's rule), and nothing depends on any operand.
    const bool empty = input_size[1] == 0;
    at::Tensor grad_in, grad_w, grad_b;
    if (present.needs(ctx, 0)) {
      grad_in = empty ? zeros(input_size, grad)
                      : ops::conv2d_backward_input(grad, weight, input_size, a.stride, a.padding, a.dilation,
                                                   a.groups, ctx->saved_data["input_cl"].toBool());
    }
    if (present.needs(ctx, 1)) {
      grad_w = empty ? zeros(weight_size, grad)
                     : ops::conv2d_backward_weight(grad, input, weight_size, a.stride, a.padding, a.dilation,
                                                   a.groups, ctx->saved_data["weight_cl"].toBool());
    }
    if (present.needs(ctx, 2)) {
      grad_b = empty ? zeros({weight_size[0]}, grad) : grad.sum({0, 2, 3});
    }
    return {grad_in, grad_w, grad_b, {}, {}, {}, {}};
  }
};

// ---------------------------------------------------------------------------- conv2d_backward_input
class Conv2dBackwardInputFunction : public torch::autograd::Function<Conv2dBackwardInputFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output, const at::Tensor& weight,
                            c10::SymIntArrayRef input_size, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, int64_t groups, bool input_cl) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor grad_in =
        ops::conv2d_backward_input(grad_output, weight, input_size, stride, padding, dilation, groups, input_cl);
    ctx->save_for_backward(
        {keep_if(weight.requires_grad(), grad_output), keep_if(grad_output.requires_grad(), weight)});
    save_conv(ctx, stride, padding, dilation, groups);
    ctx->saved_data["grad_output_size"] = grad_output.sym_sizes();
    ctx->saved_data["weight_size"] = weight.sym_sizes();
    ctx->saved_data["weight_cl"] = channels_last(weight);
    ctx->saved_data["empty"] = input_size[1] == 0;
    return grad_in;
  }

  // d/d grad_output = conv2d(gg, weight); d/d weight = conv2d_backward_weight(grad_output, gg).
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &grad_output = saved[0], &weight = saved[1], &gg = grads[0];
    const ConvArgs a = load_conv(ctx);
    const bool empty = ctx->saved_data["empty"].toBool();
    at::Tensor d_grad_output, d_weight;
    if (ctx->needs_input_grad(0)) {
      d_grad_output = empty ? zeros(ctx->saved_data["grad_output_size"].toSymIntVector(), gg)
                            : ops::conv2d(gg, weight, std::nullopt, a.stride, a.padding, a.dilation, a.groups);
    }
    if (ctx->needs_input_grad(1)) {
      const SymInts weight_size = ctx->saved_data["weight_size"].toSymIntVector();
      d_weight = empty ? zeros(weight_size, gg)
                       : ops::conv2d_backward_weight(grad_output, gg, weight_size, a.stride, a.padding, a.dilation,
                                                     a.groups, ctx->saved_data["weight_cl"].toBool());
    }
    return {d_grad_output, d_weight, {}, {}, {}, {}, {}, {}};
  }
};

// --------------------------------------------------------------------------- conv2d_backward_weight
class Conv2dBackwardWeightFunction : public torch::autograd::Function<Conv2dBackwardWeightFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output, const at::Tensor& input,
                            c10::SymIntArrayRef weight_size, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, int64_t groups, bool weight_cl) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor grad_w =
        ops::conv2d_backward_weight(grad_output, input, weight_size, stride, padding, dilation, groups, weight_cl);
    ctx->save_for_backward(
        {keep_if(input.requires_grad(), grad_output), keep_if(grad_output.requires_grad(), input)});
    save_conv(ctx, stride, padding, dilation, groups);
    ctx->saved_data["grad_output_size"] = grad_output.sym_sizes();
    ctx->saved_data["input_size"] = input.sym_sizes();
    ctx->saved_data["input_cl"] = channels_last(input);
    ctx->saved_data["empty"] = weight_size[1] == 0;
    return grad_w;
  }

  // d/d grad_output = conv2d(input, gg); d/d input = conv2d_backward_input(grad_output, gg).
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &grad_output = saved[0], &input = saved[1], &gg = grads[0];
    const ConvArgs a = load_conv(ctx);
    const bool empty = ctx->saved_data["empty"].toBool();
    at::Tensor d_grad_output, d_input;
    if (ctx->needs_input_grad(0)) {
      d_grad_output = empty ? zeros(ctx->saved_data["grad_output_size"].toSymIntVector(), gg)
                            : ops::conv2d(input, gg, std::nullopt, a.stride, a.padding, a.dilation, a.groups);
    }
    if (ctx->needs_input_grad(1)) {
      const SymInts input_size = ctx->saved_data["input_size"].toSymIntVector();
      d_input = empty ? zeros(input_size, gg)
                      : ops::conv2d_backward_input(grad_output, gg, input_size, a.stride, a.padding, a.dilation,
                                                   a.groups, ctx->saved_data["input_cl"].toBool());
    }
    return {d_grad_output, d_input, {}, {}, {}, {}, {}, {}};
  }
};

// ------------------------------------------------------------------------------- Autograd kernels
at::Tensor conv2d_autograd(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                           int64_t groups) {
  if (!needs_autograd("conv2d", {&input, &weight, opt(bias)})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::conv2d(input, weight, bias, stride, padding, dilation, groups);
  }
  return Conv2dFunction::apply(input, weight, bias, stride, padding, dilation, groups);
}

at::Tensor conv2d_backward_input_autograd(const at::Tensor& grad_output, const at::Tensor& weight,
                                          c10::SymIntArrayRef input_size, at::IntArrayRef stride,
                                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                          bool channels_last) {
  if (!needs_autograd("conv2d_backward_input", {&grad_output, &weight})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::conv2d_backward_input(grad_output, weight, input_size, stride, padding, dilation, groups,
                                      channels_last);
  }
  return Conv2dBackwardInputFunction::apply(grad_output, weight, input_size, stride, padding, dilation, groups,
                                            channels_last);
}

at::Tensor conv2d_backward_weight_autograd(const at::Tensor& grad_output, const at::Tensor& input,
                                           c10::SymIntArrayRef weight_size, at::IntArrayRef stride,
                                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                           bool channels_last) {
  if (!needs_autograd("conv2d_backward_weight", {&grad_output, &input})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::conv2d_backward_weight(grad_output, input, weight_size, stride, padding, dilation, groups,
                                       channels_last);
  }
  return Conv2dBackwardWeightFunction::apply(grad_output, input, weight_size, stride, padding, dilation, groups,
                                             channels_last);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, Autograd, m) {
  m.impl("conv2d", &conv2d_autograd);
  m.impl("conv2d_backward_input", &conv2d_backward_input_autograd);
  m.impl("conv2d_backward_weight", &conv2d_backward_weight_autograd);
}

}  // namespace cnnkern::autograd
