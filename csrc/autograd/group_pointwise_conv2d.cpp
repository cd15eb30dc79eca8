// Autograd of the functional grouped-pointwise ops. The forward's gradients are its backward ops (ReLU mask,
// scale and shuffle map folded in); those are linear in grad_output and in the weight / input, so their own
// derivatives are again a grouped-pointwise backward op and a conv2d whose result is scattered back through
// the map (autograd/pointwise_grads.h). scale and shift are frozen (folded inference BatchNorm): asking for
// their gradient is an error, as in the Python ops; the saved output only masks and gets no gradient.
#include <torch/library.h>

#include <ATen/ops/zeros.h>

#include "autograd/common.h"
#include "autograd/pointwise_grads.h"
#include "ops/channel_map.h"
#include "ops/conv2d.h"
#include "ops/group_pointwise_conv2d.h"

namespace cnnkern::autograd {
namespace {

constexpr int64_t kOne[2] = {1, 1};
constexpr int64_t kNoPad[4] = {0, 0, 0, 0};

bool channels_last(const at::Tensor& t) { return t.suggest_memory_format() == at::MemoryFormat::ChannelsLast; }

// conv2d(x, w) of a 1x1 weight, the conv's own channels; none when x has no channels (ATen's rule would
// give a tensor without channels, the pointwise ops' semantics a zero contribution).
at::Tensor pointwise_conv(const at::Tensor& x, const at::Tensor& w, int64_t groups) {
  return ops::conv2d(x, w, std::nullopt, kOne, kNoPad, kOne, groups);
}

// ------------------------------------------------------------------------------ group_pointwise_conv2d
class GroupPointwiseFunction : public torch::autograd::Function<GroupPointwiseFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                            const std::optional<at::Tensor>& shift, int64_t groups, int64_t shuffle_groups, bool relu) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = ops::group_pointwise_conv2d(input, weight, bias, scale, shift, groups, shuffle_groups, relu);
    ctx->save_for_backward({keep_if(weight.requires_grad(), input), keep_if(input.requires_grad(), weight),
                            keep_if(true, scale), keep_if(relu, out)});
    ctx->saved_data["present"] = Present({&input, &weight, opt(bias), opt(scale), opt(shift)}).mask();
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["shuffle_groups"] = shuffle_groups;
    ctx->saved_data["out_channels"] = weight.sym_size(0);
    ctx->saved_data["input_cl"] = channels_last(input);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Present present(ctx->saved_data["present"].toInt());
    const c10::SymInt c_out = ctx->saved_data["out_channels"].toSymInt();
    const ops::ChannelMap map{c_out, ctx->saved_data["shuffle_groups"].toInt(), 0};
    const PointwiseGrads g =
        pointwise_grads(grads[0], saved[0], saved[1], maybe(saved[3]), maybe(saved[2]),
                        ctx->saved_data["groups"].toInt(), map, c_out, present.needs(ctx, 0), present.needs(ctx, 1),
                        present.needs(ctx, 2), ctx->saved_data["input_cl"].toBool());
    return {g.input, g.weight, g.bias, {}, {}, {}, {}, {}};
  }
};

// --------------------------------------------------------------- group_pointwise_conv2d_backward_input
class GroupPointwiseBackwardInputFunction : public torch::autograd::Function<GroupPointwiseBackwardInputFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output, const at::Tensor& weight,
                            const std::optional<at::Tensor>& output, const std::optional<at::Tensor>& scale,
                            int64_t groups, int64_t shuffle_groups, int64_t channel_offset, bool channels_last) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor grad_in = ops::group_pointwise_conv2d_backward_input(grad_output, weight, output, scale, groups,
                                                                    shuffle_groups, channel_offset, channels_last);
    ctx->save_for_backward({keep_if(weight.requires_grad(), grad_output),
                            keep_if(grad_output.requires_grad(), weight), keep_if(true, output),
                            keep_if(true, scale)});
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["shuffle_groups"] = shuffle_groups;
    ctx->saved_data["channel_offset"] = channel_offset;
    ctx->saved_data["grad_output_size"] = grad_output.sym_sizes();
    ctx->saved_data["weight_size"] = weight.sym_sizes();
    return grad_in;
  }

  // d/d grad_output: the map's adjoint of conv2d(gg, weight); d/d weight: the backward-weight op on gg.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &grad_output = saved[0], &weight = saved[1], &gg = grads[0];
    const std::optional<at::Tensor> output = maybe(saved[2]), scale = maybe(saved[3]);
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const std::vector<c10::SymInt> go_size = ctx->saved_data["grad_output_size"].toSymIntVector();
    const std::vector<c10::SymInt> w_size = ctx->saved_data["weight_size"].toSymIntVector();
    const ops::ChannelMap map{go_size[1], ctx->saved_data["shuffle_groups"].toInt(),
                              ctx->saved_data["channel_offset"].toInt()};
    at::Tensor d_grad_output, d_weight;
    if (ctx->needs_input_grad(0)) {
      d_grad_output = w_size[1] == 0 ? at::zeros_symint(go_size, gg.options())
                                     : scatter_to_grad_output(pointwise_conv(gg, weight, groups), output, scale, map,
                                                              go_size);
    }
    if (ctx->needs_input_grad(1)) {
      d_weight = ops::group_pointwise_conv2d_backward_weight(grad_output, gg, output, scale, groups,
                                                             map.shuffle_groups,
                                                             ctx->saved_data["channel_offset"].toInt(), w_size[0]);
    }
    return {d_grad_output, d_weight, {}, {}, {}, {}, {}, {}};
  }
};

// -------------------------------------------------------------- group_pointwise_conv2d_backward_weight
class GroupPointwiseBackwardWeightFunction : public torch::autograd::Function<GroupPointwiseBackwardWeightFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_output, const at::Tensor& input,
                            const std::optional<at::Tensor>& output, const std::optional<at::Tensor>& scale,
                            int64_t groups, int64_t shuffle_groups, int64_t channel_offset,
                            c10::SymInt out_channels) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor grad_w = ops::group_pointwise_conv2d_backward_weight(grad_output, input, output, scale, groups,
                                                                    shuffle_groups, channel_offset, out_channels);
    ctx->save_for_backward({keep_if(input.requires_grad(), grad_output), keep_if(grad_output.requires_grad(), input),
                            keep_if(true, output), keep_if(true, scale)});
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["shuffle_groups"] = shuffle_groups;
    ctx->saved_data["channel_offset"] = channel_offset;
    ctx->saved_data["grad_output_size"] = grad_output.sym_sizes();
    ctx->saved_data["input_cl"] = channels_last(input);
    ctx->saved_data["in_channels"] = input.sym_size(1);
    return grad_w;
  }

  // d/d grad_output: the map's adjoint of conv2d(input, gg); d/d input: the backward-input op with gg.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &grad_output = saved[0], &input = saved[1], &gg = grads[0];
    const std::optional<at::Tensor> output = maybe(saved[2]), scale = maybe(saved[3]);
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const std::vector<c10::SymInt> go_size = ctx->saved_data["grad_output_size"].toSymIntVector();
    const ops::ChannelMap map{go_size[1], ctx->saved_data["shuffle_groups"].toInt(),
                              ctx->saved_data["channel_offset"].toInt()};
    at::Tensor d_grad_output, d_input;
    if (ctx->needs_input_grad(0)) {
      d_grad_output = ctx->saved_data["in_channels"].toSymInt() == 0
                          ? at::zeros_symint(go_size, gg.options())
                          : scatter_to_grad_output(pointwise_conv(input, gg, groups), output, scale, map, go_size);
    }
    if (ctx->needs_input_grad(1)) {
      d_input = ops::group_pointwise_conv2d_backward_input(grad_output, gg, output, scale, groups, map.shuffle_groups,
                                                           ctx->saved_data["channel_offset"].toInt(),
                                                           ctx->saved_data["input_cl"].toBool());
    }
    return {d_grad_output, d_input, {}, {}, {}, {}, {}, {}};
  }
};

// ------------------------------------------------------------------------------- Autograd kernels
at::Tensor group_pointwise_conv2d_autograd(const at::Tensor& input, const at::Tensor& weight,
                                           const std::optional<at::Tensor>& bias,
                                           const std::optional<at::Tensor>& scale,
                                           const std::optional<at::Tensor>& shift, int64_t groups,
                                           int64_t shuffle_groups, bool relu) {
  check_frozen("group_pointwise_conv2d", {{"scale", &scale}, {"shift", &shift}});
  if (!needs_autograd("group_pointwise_conv2d", {&input, &weight, opt(bias), opt(scale), opt(shift)})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::group_pointwise_conv2d(input, weight, bias, scale, shift, groups, shuffle_groups, relu);
  }
  return GroupPointwiseFunction::apply(input, weight, bias, scale, shift, groups, shuffle_groups, relu);
}

at::Tensor group_pointwise_conv2d_backward_input_autograd(const at::Tensor& grad_output, const at::Tensor& weight,
                                                          const std::optional<at::Tensor>& output,
                                                          const std::optional<at::Tensor>& scale, int64_t groups,
                                                          int64_t shuffle_groups, int64_t channel_offset,
                                                          bool channels_last) {
  check_frozen("group_pointwise_conv2d_backward_input", {{"scale", &scale}});
  // The saved output only masks: it gets no gradient, and alone it needs no graph.
  if (!needs_autograd("group_pointwise_conv2d_backward_input", {&grad_output, &weight})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::group_pointwise_conv2d_backward_input(grad_output, weight, output, scale, groups, shuffle_groups,
                                                      channel_offset, channels_last);
  }
  return GroupPointwiseBackwardInputFunction::apply(grad_output, weight, output, scale, groups, shuffle_groups,
                                                    channel_offset, channels_last);
}

at::Tensor group_pointwise_conv2d_backward_weight_autograd(const at::Tensor& grad_output, const at::Tensor& input,
                                                           const std::optional<at::Tensor>& output,
                                                           const std::optional<at::Tensor>& scale, int64_t groups,
                                                           int64_t shuffle_groups, int64_t channel_offset,
                                                           c10::SymInt out_channels) {
  check_frozen("group_pointwise_conv2d_backward_weight", {{"scale", &scale}});
  if (!needs_autograd("group_pointwise_conv2d_backward_weight", {&grad_output, &input})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::group_pointwise_conv2d_backward_weight(grad_output, input, output, scale, groups, shuffle_groups,
                                                       channel_offset, out_channels);
  }
  return GroupPointwiseBackwardWeightFunction::apply(grad_output, input, output, scale, groups, shuffle_groups,
                                                     channel_offset, out_channels);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, Autograd, m) {
  m.impl("group_pointwise_conv2d", &group_pointwise_conv2d_autograd);
  m.impl("group_pointwise_conv2d_backward_input", &group_pointwise_conv2d_backward_input_autograd);
  m.impl("group_pointwise_conv2d_backward_weight", &group_pointwise_conv2d_backward_weight_autograd);
}

}  // namespace cnnkern::autograd
