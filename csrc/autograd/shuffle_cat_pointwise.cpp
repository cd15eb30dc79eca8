// Autograd of the shuffled-concat ops: the passthrough's gradient is gathered out of its interleaved slots
// (shuffle_cat_pointwise_backward_passthrough, whose own derivative scatters it back), each pointwise
// branch's gradients are group_pointwise_conv2d's (autograd/pointwise_grads.h) at the branch's offset.
#include <torch/library.h>

#include "autograd/common.h"
#include "autograd/pointwise_grads.h"
#include "ops/channel_map.h"
#include "ops/shuffle_cat_pointwise.h"

namespace cnnkern::autograd {
namespace {

bool channels_last(const at::Tensor& t) { return t.suggest_memory_format() == at::MemoryFormat::ChannelsLast; }

// ---------------------------------------------------------------------------- shuffle_cat_pointwise
class ShuffleCatPointwiseFunction : public torch::autograd::Function<ShuffleCatPointwiseFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& passthrough, const at::Tensor& input,
                            const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                            const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                            int64_t groups, int64_t shuffle_groups, bool relu) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out =
        ops::shuffle_cat_pointwise(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups, relu);
    ctx->save_for_backward({keep_if(weight.requires_grad(), input), keep_if(input.requires_grad(), weight),
                            keep_if(true, scale), keep_if(relu, out)});
    ctx->saved_data["present"] =
        Present({&passthrough, &input, &weight, opt(bias), opt(scale), opt(shift)}).mask();
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["shuffle_groups"] = shuffle_groups;
    ctx->saved_data["passthrough_channels"] = passthrough.sym_size(1);
    ctx->saved_data["total"] = out.sym_size(1);
    ctx->saved_data["out_channels"] = weight.sym_size(0);
    ctx->saved_data["passthrough_cl"] = channels_last(passthrough);
    ctx->saved_data["input_cl"] = channels_last(input);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& grad = grads[0];
    const Present present(ctx->saved_data["present"].toInt());
    const int64_t shuffle_groups = ctx->saved_data["shuffle_groups"].toInt();
    const c10::SymInt cp = ctx->saved_data["passthrough_channels"].toSymInt();
    at::Tensor grad_pass;
    if (present.needs(ctx, 0)) {
      grad_pass = ops::shuffle_cat_pointwise_backward_passthrough(grad, cp, shuffle_groups,
                                                                  ctx->saved_data["passthrough_cl"].toBool());
    }
    const ops::ChannelMap map{ctx->saved_data["total"].toSymInt(), shuffle_groups, cp};
    const PointwiseGrads g =
        pointwise_grads(grad, saved[0], saved[1], maybe(saved[3]), maybe(saved[2]), ctx->saved_data["groups"].toInt(),
                        map, ctx->saved_data["out_channels"].toSymInt(), present.needs(ctx, 1),
                        present.needs(ctx, 2), present.needs(ctx, 3), ctx->saved_data["input_cl"].toBool());
    return {grad_pass, g.input, g.weight, g.bias, {}, {}, {}, {}, {}};
  }
};

// ---------------------------------------------------------------------------- shuffle_cat_pointwise2
class ShuffleCatPointwise2Function : public torch::autograd::Function<ShuffleCatPointwise2Function> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input1, const at::Tensor& weight1,
                            const std::optional<at::Tensor>& bias1, const std::optional<at::Tensor>& scale1,
                            const std::optional<at::Tensor>& shift1, const at::Tensor& input2,
                            const at::Tensor& weight2, const std::optional<at::Tensor>& bias2,
                            const std::optional<at::Tensor>& scale2, const std::optional<at::Tensor>& shift2,
                            int64_t groups, int64_t shuffle_groups, bool relu) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = ops::shuffle_cat_pointwise2(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2,
                                                 scale2, shift2, groups, shuffle_groups, relu);
    ctx->save_for_backward({keep_if(weight1.requires_grad(), input1), keep_if(input1.requires_grad(), weight1),
                            keep_if(true, scale1), keep_if(weight2.requires_grad(), input2),
                            keep_if(input2.requires_grad(), weight2), keep_if(true, scale2), keep_if(relu, out)});
    ctx->saved_data["present"] = Present({&input1, &weight1, opt(bias1), opt(scale1), opt(shift1), &input2, &weight2,
                                          opt(bias2), opt(scale2), opt(shift2)})
                                     .mask();
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["shuffle_groups"] = shuffle_groups;
    ctx->saved_data["total"] = out.sym_size(1);
    ctx->saved_data["out_channels1"] = weight1.sym_size(0);
    ctx->saved_data["out_channels2"] = weight2.sym_size(0);
    ctx->saved_data["input1_cl"] = channels_last(input1);
    ctx->saved_data["input2_cl"] = channels_last(input2);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& grad = grads[0];
    const Present p(ctx->saved_data["present"].toInt());
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const int64_t shuffle_groups = ctx->saved_data["shuffle_groups"].toInt();
    const c10::SymInt total = ctx->saved_data["total"].toSymInt();
    const c10::SymInt c1 = ctx->saved_data["out_channels1"].toSymInt();
    const std::optional<at::Tensor> output = maybe(saved[6]);
    const PointwiseGrads g1 = pointwise_grads(grad, saved[0], saved[1], output, maybe(saved[2]), groups,
                                              ops::ChannelMap{total, shuffle_groups, 0}, c1, p.needs(ctx, 0),
                                              p.needs(ctx, 1), p.needs(ctx, 2), ctx->saved_data["input1_cl"].toBool());
    const PointwiseGrads g2 = pointwise_grads(
        grad, saved[3], saved[4], output, maybe(saved[5]), groups, ops::ChannelMap{total, shuffle_groups, c1},
        ctx->saved_data["out_channels2"].toSymInt(), p.needs(ctx, 5), p.needs(ctx, 6), p.needs(ctx, 7),
        ctx->saved_data["input2_cl"].toBool());
    return {g1.input, g1.weight, g1.bias, {}, {}, g2.input, g2.weight, g2.bias, {}, {}, {}, {}, {}};
  }
};

// ---------------------------------------------------------- shuffle_cat_pointwise_backward_passthrough
class PassthroughBackwardFunction : public torch::autograd::Function<PassthroughBackwardFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output, c10::SymInt channels,
                            int64_t shuffle_groups, bool channels_last) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor grad = ops::shuffle_cat_pointwise_backward_passthrough(grad_output, channels, shuffle_groups,
                                                                      channels_last);
    ctx->saved_data["shuffle_groups"] = shuffle_groups;
    ctx->saved_data["grad_output_size"] = grad_output.sym_sizes();
    return grad;
  }

  // The adjoint of the gather: scatter back into the passthrough's slots of a zero grad_output.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::vector<c10::SymInt> size = ctx->saved_data["grad_output_size"].toSymIntVector();
    const ops::ChannelMap map{size[1], ctx->saved_data["shuffle_groups"].toInt(), 0};
    return {scatter_to_grad_output(grads[0], std::nullopt, std::nullopt, map, size), {}, {}, {}};
  }
};

// ------------------------------------------------------------------------------- Autograd kernels
at::Tensor shuffle_cat_pointwise_autograd(const at::Tensor& passthrough, const at::Tensor& input,
                                          const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                          const std::optional<at::Tensor>& scale,
                                          const std::optional<at::Tensor>& shift, int64_t groups,
                                          int64_t shuffle_groups, bool relu) {
  check_frozen("shuffle_cat_pointwise", {{"scale", &scale}, {"shift", &shift}});
  if (!needs_autograd("shuffle_cat_pointwise", {&passthrough, &input, &weight, opt(bias), opt(scale), opt(shift)})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::shuffle_cat_pointwise(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups, relu);
  }
  return ShuffleCatPointwiseFunction::apply(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups,
                                            relu);
}

at::Tensor shuffle_cat_pointwise2_autograd(const at::Tensor& input1, const at::Tensor& weight1,
                                           const std::optional<at::Tensor>& bias1,
                                           const std::optional<at::Tensor>& scale1,
                                           const std::optional<at::Tensor>& shift1, const at::Tensor& input2,
                                           const at::Tensor& weight2, const std::optional<at::Tensor>& bias2,
                                           const std::optional<at::Tensor>& scale2,
                                           const std::optional<at::Tensor>& shift2, int64_t groups,
                                           int64_t shuffle_groups, bool relu) {
  check_frozen("shuffle_cat_pointwise2",
               {{"scale1", &scale1}, {"shift1", &shift1}, {"scale2", &scale2}, {"shift2", &shift2}});
  if (!needs_autograd("shuffle_cat_pointwise2", {&input1, &weight1, opt(bias1), opt(scale1), opt(shift1), &input2,
                                                 &weight2, opt(bias2), opt(scale2), opt(shift2)})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::shuffle_cat_pointwise2(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2,
                                       groups, shuffle_groups, relu);
  }
  return ShuffleCatPointwise2Function::apply(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2,
                                             shift2, groups, shuffle_groups, relu);
}

at::Tensor shuffle_cat_pointwise_backward_passthrough_autograd(const at::Tensor& grad_output, c10::SymInt channels,
                                                               int64_t shuffle_groups, bool channels_last) {
  if (!needs_autograd("shuffle_cat_pointwise_backward_passthrough", {&grad_output})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::shuffle_cat_pointwise_backward_passthrough(grad_output, channels, shuffle_groups, channels_last);
  }
  return PassthroughBackwardFunction::apply(grad_output, channels, shuffle_groups, channels_last);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, Autograd, m) {
  m.impl("shuffle_cat_pointwise", &shuffle_cat_pointwise_autograd);
  m.impl("shuffle_cat_pointwise2", &shuffle_cat_pointwise2_autograd);
  m.impl("shuffle_cat_pointwise_backward_passthrough", &shuffle_cat_pointwise_backward_passthrough_autograd);
}

}  // namespace cnnkern::autograd
