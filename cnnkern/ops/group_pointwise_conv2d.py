"""Grouped 1x1 conv fused with channel shuffle and a folded-BatchNorm/ReLU epilogue: public function, ops.

ShuffleNet's unit is a grouped 1x1 conv followed by a channel shuffle. The shuffle is a permutation of
output channels, so the GEMM epilogue stores channel ``c`` at its shuffled position and the backward reads
the gradient through the same map: no shuffled copy exists in either direction.

Forward, per output channel c:  z = conv(x, w)[c] + bias[c];  z = z * scale[c] + shift[c];  z = relu(z);
stored at ``ChannelMap.dest(c)``. The backward takes the saved output (ReLU mask: gradient flows where it is
positive) and the scale (multiplies the gradient); scale and shift themselves get no gradient. scale and
shift have the input's dtype, or fp32 with fp16/bf16 input (folded BatchNorm parameters); either way they are
applied on the fp32 accumulator. The plan and the differentiable kernels live in ``_pointwise_plan``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnkern.ops import _autocast, _route
from cnnkern.ops import backend as _backend
from cnnkern.ops._library import define
from cnnkern.ops._pointwise_plan import PointwisePlan, aten_pointwise, pointwise_grads, pointwise_tangent
from cnnkern.ops.conv2d import _pick_route as pick_route
from cnnkern.problem import channel_map as _args
from cnnkern.problem import memory as _memory
from cnnkern.problem.channel_map import (
    ChannelMap,
    GroupPointwiseProblem,
    GroupPointwiseSpec,
    check_frozen_epilogue,
    check_group_pointwise,
    check_shuffle_groups,
    frozen_epilogue_error,
)
from cnnkern.problem.conv2d import check_tensors

__all__ = ["group_pointwise_conv2d"]

_OP = "group_pointwise_conv2d"


class GroupPointwisePlan:
    __slots__ = ("out_format", "pw", "route")

    def __init__(self, input, weight, bias, scale, shift, groups, shuffle_groups, relu, forced):
        check_group_pointwise(input, weight, bias, scale, shift, groups)
        check_shuffle_groups(weight.shape[0], shuffle_groups)
        spec = GroupPointwiseSpec(groups, ChannelMap(weight.shape[0], shuffle_groups), relu)
        self.pw = PointwisePlan(input, weight, (input, weight, bias, scale, shift), spec, forced)
        self.out_format = _memory.conv_output_format(input, weight)
        self.route = pick_route(self.pw.choices.values(), _OP)

    def forward(self, x, w, b, scale, shift) -> Tensor:
        out = self.pw.allocate_output(x, self.out_format)
        self.pw.forward_into(x, w, b, scale, shift, out)
        return out


def plan_for(input, weight, bias, scale, shift, groups, shuffle_groups, relu) -> GroupPointwisePlan:
    state = _backend.dispatch_state()
    key = (_OP, input.shape, input.stride(), input.dtype, input.device, weight.shape, weight.stride(),
           weight.dtype, weight.device, *(None if t is None else (t.shape, t.dtype, t.device)
                                          for t in (bias, scale, shift)), groups, shuffle_groups, relu, state)
    return _backend.cached_plan(key, lambda: GroupPointwisePlan(input, weight, bias, scale, shift, groups,
                                                               shuffle_groups, relu, state[0]))


def check_no_epilogue_grads(names, needs, op: str) -> None:
    """Reached only by calling an op directly with a trainable scale/shift (the public API checks first)."""
    for name, need in zip(names, needs):
        if need:
            raise frozen_epilogue_error(name, op)


@_route.dual_style
class _Forward(torch.autograd.Function):
    @staticmethod
    def forward(x, w, b, scale, shift, plan):
        return plan.forward(x, w, b, scale, shift)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, b, scale, shift, plan = inputs
        saved_out = output if plan.pw.spec.relu else None
        ctx.save_for_backward(x, w, scale, saved_out)
        ctx.save_for_forward(x, w, b, scale, shift, saved_out)
        ctx.plan = plan

    @staticmethod
    def backward(ctx, grad):
        check_no_epilogue_grads(("scale", "shift"), ctx.needs_input_grad[3:5], _OP)
        x, w, scale, output = ctx.saved_tensors
        grads = pointwise_grads(grad, x, w, output, scale, ctx.plan.pw, ctx.needs_input_grad[:3])
        return (*grads, None, None, None)

    @staticmethod
    def jvp(ctx, dx, dw, db, dscale, dshift, _plan):
        *primals, output = ctx.saved_tensors
        return pointwise_tangent((dx, dw, db, dscale, dshift), primals, output, ctx.plan.pw, ctx.plan.out_format)


# ---------------------------------------------------------------------------------------- custom ops
def _output_spec(input, weight, bias, scale, shift, groups, shuffle_groups, relu) -> GroupPointwiseSpec:
    check_group_pointwise(input, weight, bias, scale, shift, groups)
    check_shuffle_groups(weight.shape[0], shuffle_groups)
    return GroupPointwiseSpec(groups, ChannelMap(weight.shape[0], shuffle_groups), relu)


def _op_forward(input, weight, bias, scale, shift, groups, shuffle_groups, relu):
    return plan_for(input, weight, bias, scale, shift, groups, shuffle_groups, relu).forward(input, weight, bias,
                                                                                            scale, shift)


def _op_forward_fake(input, weight, bias, scale, shift, groups, shuffle_groups, relu):
    _output_spec(input, weight, bias, scale, shift, groups, shuffle_groups, relu)
    return _memory.empty(_args.out_shape(input.shape, weight.shape[0]), input,
                         _memory.conv_output_format(input, weight))


def _backward_spec(grad_output, groups, shuffle_groups, channel_offset, c_out, relu) -> GroupPointwiseSpec:
    total = grad_output.shape[1]
    check_shuffle_groups(total, shuffle_groups)
    if channel_offset < 0 or channel_offset + c_out > total:
        raise RuntimeError(f"group_pointwise_conv2d backward: channels [{channel_offset}, "
                           f"{channel_offset + c_out}) do not fit a grad_output of size {list(grad_output.shape)}")
    return GroupPointwiseSpec(groups, ChannelMap(total, shuffle_groups, channel_offset), relu)


def _check_saved(grad_output, output, scale, c_out, op):
    if output is not None and tuple(output.shape) != tuple(grad_output.shape):
        raise RuntimeError(f"{op}: output {list(output.shape)} and grad_output {list(grad_output.shape)} "
                           "must have the same size")
    if scale is not None and tuple(scale.shape) != (c_out,):
        raise RuntimeError(f"{op}: expected scale of size [{c_out}], got {list(scale.shape)}")


def _op_backward_input(grad_output, weight, output, scale, groups, shuffle_groups, channel_offset, channels_last):
    op = "group_pointwise_conv2d_backward_input"
    check_tensors(grad_output, weight, None, op)
    _check_saved(grad_output, output, scale, weight.shape[0], op)
    spec = _backward_spec(grad_output, groups, shuffle_groups, channel_offset, weight.shape[0], output is not None)
    grad_in = _memory.empty(_args.out_shape(grad_output.shape, weight.shape[1] * groups), grad_output,
                            _memory.memory_format(channels_last))
    if grad_in.numel() == 0:
        return grad_in
    if weight.shape[0] == 0:
        return grad_in.zero_()
    operands = tuple(t for t in (grad_output, weight, output, scale) if t is not None)
    impl = _backend.select(_OP, "group_pointwise_conv2d_bwd_input", GroupPointwiseProblem(operands, spec),
                           grad_output.device)
    impl(grad_output, weight, output, scale, grad_in, spec)
    return grad_in


def _op_backward_input_fake(grad_output, weight, output, scale, groups, shuffle_groups, channel_offset,
                            channels_last):
    return _memory.empty(_args.out_shape(grad_output.shape, weight.shape[1] * groups), grad_output,
                         _memory.memory_format(channels_last))


def _op_backward_weight(grad_output, input, output, scale, groups, shuffle_groups, channel_offset, out_channels):
    op = "group_pointwise_conv2d_backward_weight"
    check_tensors(grad_output, input, None, op)
    _check_saved(grad_output, output, scale, out_channels, op)
    spec = _backward_spec(grad_output, groups, shuffle_groups, channel_offset, out_channels, output is not None)
    grad_w = _memory.empty((out_channels, input.shape[1] // groups, 1, 1), input, torch.contiguous_format)
    if grad_w.numel() == 0:
        return grad_w
    if input.shape[0] * input.shape[2] * input.shape[3] == 0:
        return grad_w.zero_()
    operands = tuple(t for t in (grad_output, input, output, scale) if t is not None)
    impl = _backend.select(_OP, "group_pointwise_conv2d_bwd_weight", GroupPointwiseProblem(operands, spec),
                           input.device)
    impl(grad_output, input, output, scale, grad_w, spec)
    return grad_w


def _op_backward_weight_fake(grad_output, input, output, scale, groups, shuffle_groups, channel_offset,
                             out_channels):
    return _memory.empty((out_channels, input.shape[1] // groups, 1, 1), input, torch.contiguous_format)


def op_pointwise_grads(grad, input, weight, output, scale, groups: int, cmap: ChannelMap, needs,
                       input_channels_last: bool):
    """(grad_input, grad_weight, grad_bias) through the backward ops (what compiled graphs record)."""
    grad_in = grad_w = grad_b = None
    if needs[0]:
        grad_in = group_pointwise_conv2d_backward_input_op(grad, weight, output, scale, groups, cmap.shuffle_groups,
                                                           cmap.offset, input_channels_last)
    if needs[1]:
        grad_w = group_pointwise_conv2d_backward_weight_op(grad, input, output, scale, groups, cmap.shuffle_groups,
                                                           cmap.offset, weight.shape[0])
    if needs[2]:
        g = grad if output is None else torch.where(output > 0, grad, 0)
        grad_b = g.sum((0, 2, 3)).index_select(0, cmap.dest_index(weight.shape[0], grad.device))
        if scale is not None:
            grad_b = (grad_b.to(scale.dtype) * scale).to(grad.dtype)
    return grad_in, grad_w, grad_b


def _op_setup_context(ctx, inputs, output):
    input, weight, _bias, scale, _shift, groups, shuffle_groups, relu = inputs
    ctx.save_for_backward(input, weight, scale, output if relu else None)
    ctx.conf = (groups, ChannelMap(weight.shape[0], shuffle_groups))
    ctx.input_channels_last = _memory.suggests_channels_last(input)


def _op_backward(ctx, grad):
    check_no_epilogue_grads(("scale", "shift"), ctx.needs_input_grad[3:5], _OP)
    input, weight, scale, output = ctx.saved_tensors
    groups, cmap = ctx.conf
    grads = op_pointwise_grads(grad, input, weight, output, scale, groups, cmap, ctx.needs_input_grad[:3],
                               ctx.input_channels_last)
    return (*grads, None, None, None, None, None)


group_pointwise_conv2d_op = define(
    "group_pointwise_conv2d(Tensor input, Tensor weight, Tensor? bias, Tensor? scale, Tensor? shift, int groups, "
    "int shuffle_groups, bool relu) -> Tensor",
    _op_forward, _op_forward_fake, _op_backward, _op_setup_context)
group_pointwise_conv2d_backward_input_op = define(
    "group_pointwise_conv2d_backward_input(Tensor grad_output, Tensor weight, Tensor? output, Tensor? scale, "
    "int groups, int shuffle_groups, int channel_offset, bool channels_last) -> Tensor",
    _op_backward_input, _op_backward_input_fake)
group_pointwise_conv2d_backward_weight_op = define(
    "group_pointwise_conv2d_backward_weight(Tensor grad_output, Tensor input, Tensor? output, Tensor? scale, "
    "int groups, int shuffle_groups, int channel_offset, int out_channels) -> Tensor",
    _op_backward_weight, _op_backward_weight_fake)


# --------------------------------------------------------------------------------------- public API
def group_pointwise_conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, groups: int = 1,
                           shuffle_groups: int | None = None, *, scale: Tensor | None = None,
                           shift: Tensor | None = None, relu: bool = False) -> Tensor:
    """Grouped 1x1 conv, optionally fused with a channel shuffle and a folded-BN/ReLU epilogue.

    Equals ``F.channel_shuffle(act(F.conv2d(input, weight, bias, groups=groups) * scale + shift),
    shuffle_groups)`` with ``act`` ReLU if ``relu`` else identity, scale/shift per output channel
    (omitted when None; the input's dtype, or float32 with float16/bfloat16 input, applied in fp32) and no
    shuffle when ``shuffle_groups`` is None. ``weight`` is (C_out, C_in/groups, 1, 1). The output's memory
    format follows ATen's convolution rule (channels_last when the input or the weight is). Differentiable
    in input, weight and bias (double backward and forward AD too); scale/shift are frozen (no gradient).
    Under ``torch.autocast`` input, weight and bias run in the autocast dtype (scale/shift stay as given).
    """
    if _autocast.any_enabled():
        input, weight, bias = _autocast.cast(_autocast.autocast_dtype(input), input, weight, bias)
    if not isinstance(input, torch.Tensor):
        check_tensors(input, weight, bias, _OP)
    input, unbatched = _args.batched(input, _OP)
    if scale is not None or shift is not None:
        check_frozen_epilogue({"scale": scale, "shift": shift}, _OP)
    sg = 1 if shuffle_groups is None else shuffle_groups
    if not _route.eager(input):
        out = group_pointwise_conv2d_op(input, weight, bias, scale, shift, groups, sg, relu)
        return out.squeeze(0) if unbatched else out
    plan = plan_for(input, weight, bias, scale, shift, groups, sg, relu)
    # No input channels: ATen's answer (an output without channels), whatever the route; no kernel to run.
    if plan.route == "aten" or weight.shape[1] == 0:
        _backend.record(plan.pw.choices["fwd"])
        out = aten_pointwise(input, weight, bias, scale, shift, groups, relu)
        if sg > 1:
            out = F.channel_shuffle(out, sg)
    elif plan.route == "cuda" and not _route.transformed():
        _backend.record(plan.pw.choices["fwd"])
        out = torch.ops.cnnkern_cuda.group_pointwise_conv2d.default(input, weight, bias, scale, shift, groups, sg,
                                                                    relu)
    elif _route.needs_autograd(input, weight, bias):
        out = _route.apply(_Forward, input, weight, bias, scale, shift, plan)
    else:
        out = plan.forward(input, weight, bias, scale, shift)
    return out.squeeze(0) if unbatched else out
