#include "cpu/group_pointwise.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

namespace cnnkern::cpu {

namespace {

at::ScalarType acc_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace

void group_pointwise_store(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                           int64_t groups, const ops::ChannelMap& map, bool relu, const at::Tensor& out) {
  const int64_t c_out = weight.size(0);
  if (c_out == 0 || input.size(0) * input.size(2) * input.size(3) == 0) return;
  const at::ScalarType acc = acc_dtype(input.scalar_type());
  at::Tensor z;
  if (weight.size(1) == 0) {  // no input channels: the epilogue of the bias alone (ATen would drop the channels)
    z = at::zeros({input.size(0), c_out, input.size(2), input.size(3)}, input.options().dtype(acc));
    if (bias.has_value() && bias->defined()) z = z + bias->to(acc).view({1, -1, 1, 1});
  } else {
    const int64_t one[2] = {1, 1}, zero[2] = {0, 0};
    z = at::convolution(input, weight, bias, one, zero, one, false, zero, groups).to(acc);
  }
  if (scale.has_value() && scale->defined()) z = z * scale->to(acc).view({1, -1, 1, 1});
  if (shift.has_value() && shift->defined()) z = z + shift->to(acc).view({1, -1, 1, 1});
  if (relu) z = at::relu(z);
  out.index_copy_(1, ops::dest_index(map, c_out, out.device()), z.to(out.scalar_type()));
}

at::Tensor group_pointwise_grad_z(const at::Tensor& grad_output, const std::optional<at::Tensor>& output,
                                  const std::optional<at::Tensor>& scale, int64_t out_channels,
                                  const ops::ChannelMap& map) {
  const at::Tensor dest = ops::dest_index(map, out_channels, grad_output.device());
  at::Tensor g = grad_output.index_select(1, dest);
  if (output.has_value() && output->defined()) g = at::where(output->index_select(1, dest) > 0, g, 0);
  if (scale.has_value() && scale->defined()) {  // in fp32 (an fp32 scale with fp16/bf16 grads), rounded once
    const at::ScalarType acc = acc_dtype(g.scalar_type());
    g = (g.to(acc) * scale->to(acc).view({1, -1, 1, 1})).to(g.scalar_type());
  }
  return g;
}

void channel_map(const at::Tensor& src, const at::Tensor& dst, const ops::ChannelMap& map, bool scatter) {
  if (src.numel() == 0 || dst.numel() == 0) return;
  if (scatter) {
    dst.index_copy_(1, ops::dest_index(map, src.size(1), src.device()), src);
  } else {
    dst.copy_(src.index_select(1, ops::dest_index(map, dst.size(1), src.device())));
  }
}

}  // namespace cnnkern::cpu
