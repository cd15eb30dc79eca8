"""Grouped 1x1 conv fused with channel shuffle and a folded-BatchNorm/ReLU epilogue, as custom ops.

ShuffleNet's unit is a grouped 1x1 conv followed by a channel shuffle. The shuffle is a permutation of
output channels, so the GEMM epilogue stores channel ``c`` at its shuffled position and the backward reads
the gradient through the same map: no shuffled copy exists in either direction.

Forward, per output channel c:  z = conv(x, w)[c] + bias[c];  z = z * scale[c] + shift[c];  z = relu(z);
stored at ``ChannelMap.dest(c)``. The backward ops take the saved output (ReLU mask: gradient flows where it
is positive) and the scale (multiplies the gradient); scale and shift themselves get no gradient. scale and
shift have the input's dtype, or fp32 with fp16/bf16 input (folded BatchNorm parameters); either way they are
applied on the fp32 accumulator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cnnkern.ops import _autocast
from cnnkern.ops import backend as _backend
from cnnkern.problem import channel_map as _args
from cnnkern.problem.channel_map import (
    ChannelMap,
    GroupPointwiseProblem,
    GroupPointwiseSpec,
    check_frozen_epilogue,
    check_group_pointwise,
    check_shuffle_groups,
    frozen_epilogue_error,
)
from cnnkern.problem.conv2d import check_tensors, suggest_memory_format


def _fmt(channels_last: bool):
    return torch.channels_last if channels_last else torch.contiguous_format


def run_forward(input, weight, bias, scale, shift, out, spec: GroupPointwiseSpec) -> None:
    """Write this conv's channels into their slots of ``out`` (shared with the shuffled-concat ops)."""
    if input.shape[0] * input.shape[2] * input.shape[3] == 0 or weight.shape[0] == 0:
        return
    operands = tuple(t for t in (input, weight, bias, scale, shift) if t is not None)
    impl = _backend.select("group_pointwise_conv2d_fwd", GroupPointwiseProblem(operands, spec), input.device)
    impl(input, weight, bias, scale, shift, out, spec)


def _output_spec(input, weight, bias, scale, shift, groups, shuffle_groups, relu) -> GroupPointwiseSpec:
    check_group_pointwise(input, weight, bias, scale, shift, groups)
    check_shuffle_groups(weight.shape[0], shuffle_groups)
    return GroupPointwiseSpec(groups, ChannelMap(weight.shape[0], shuffle_groups), relu)


# ---------------------------------------------------------------------------------------------- forward
@torch.library.custom_op("cnnkern::group_pointwise_conv2d", mutates_args=())
def group_pointwise_conv2d_op(input: Tensor, weight: Tensor, bias: Tensor | None, scale: Tensor | None,
                              shift: Tensor | None, groups: int, shuffle_groups: int, relu: bool) -> Tensor:
    spec = _output_spec(input, weight, bias, scale, shift, groups, shuffle_groups, relu)
    out = _args.allocate(_args.out_shape(input.shape, weight.shape[0]), input, suggest_memory_format(input))
    run_forward(input, weight, bias, scale, shift, out, spec)
    return out


@group_pointwise_conv2d_op.register_fake
def _(input, weight, bias, scale, shift, groups, shuffle_groups, relu):
    _output_spec(input, weight, bias, scale, shift, groups, shuffle_groups, relu)
    return _args.allocate(_args.out_shape(input.shape, weight.shape[0]), input, suggest_memory_format(input))


# ------------------------------------------------------------------------------------------ backward
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


@torch.library.custom_op("cnnkern::group_pointwise_conv2d_backward_input", mutates_args=())
def group_pointwise_conv2d_backward_input_op(grad_output: Tensor, weight: Tensor, output: Tensor | None,
                                             scale: Tensor | None, groups: int, shuffle_groups: int,
                                             channel_offset: int, channels_last: bool) -> Tensor:
    op = "group_pointwise_conv2d_backward_input"
    check_tensors(grad_output, weight, None, op)
    _check_saved(grad_output, output, scale, weight.shape[0], op)
    spec = _backward_spec(grad_output, groups, shuffle_groups, channel_offset, weight.shape[0], output is not None)
    grad_in = _args.allocate(_args.out_shape(grad_output.shape, weight.shape[1] * groups), grad_output,
                             _fmt(channels_last))
    if grad_in.numel() == 0:
        return grad_in
    if weight.shape[0] == 0:
        return grad_in.zero_()
    operands = tuple(t for t in (grad_output, weight, output, scale) if t is not None)
    impl = _backend.select("group_pointwise_conv2d_bwd_input", GroupPointwiseProblem(operands, spec),
                           grad_output.device)
    impl(grad_output, weight, output, scale, grad_in, spec)
    return grad_in


@group_pointwise_conv2d_backward_input_op.register_fake
def _(grad_output, weight, output, scale, groups, shuffle_groups, channel_offset, channels_last):
    return _args.allocate(_args.out_shape(grad_output.shape, weight.shape[1] * groups), grad_output,
                          _fmt(channels_last))


@torch.library.custom_op("cnnkern::group_pointwise_conv2d_backward_weight", mutates_args=())
def group_pointwise_conv2d_backward_weight_op(grad_output: Tensor, input: Tensor, output: Tensor | None,
                                              scale: Tensor | None, groups: int, shuffle_groups: int,
                                              channel_offset: int, out_channels: int) -> Tensor:
    op = "group_pointwise_conv2d_backward_weight"
    check_tensors(grad_output, input, None, op)
    _check_saved(grad_output, output, scale, out_channels, op)
    spec = _backward_spec(grad_output, groups, shuffle_groups, channel_offset, out_channels, output is not None)
    grad_w = _args.allocate((out_channels, input.shape[1] // groups, 1, 1), input, torch.contiguous_format)
    if grad_w.numel() == 0:
        return grad_w
    if input.shape[0] * input.shape[2] * input.shape[3] == 0:
        return grad_w.zero_()
    operands = tuple(t for t in (grad_output, input, output, scale) if t is not None)
    impl = _backend.select("group_pointwise_conv2d_bwd_weight", GroupPointwiseProblem(operands, spec),
                           input.device)
    impl(grad_output, input, output, scale, grad_w, spec)
    return grad_w


@group_pointwise_conv2d_backward_weight_op.register_fake
def _(grad_output, input, output, scale, groups, shuffle_groups, channel_offset, out_channels):
    return _args.allocate((out_channels, input.shape[1] // groups, 1, 1), input, torch.contiguous_format)


def pointwise_grads(grad, input, weight, output, scale, groups: int, cmap: ChannelMap, needs,
                    input_channels_last: bool):
    """(grad_input, grad_weight, grad_bias) of one pointwise conv whose channels sit at ``cmap`` of ``grad``.

    ``output`` is the saved (whole) output when the epilogue had a ReLU, else None.
    """
    grad_in = grad_w = grad_b = None
    if needs[0]:
        grad_in = torch.ops.cnnkern.group_pointwise_conv2d_backward_input(
            grad, weight, output, scale, groups, cmap.shuffle_groups, cmap.offset, input_channels_last)
    if needs[1]:
        grad_w = torch.ops.cnnkern.group_pointwise_conv2d_backward_weight(
            grad, input, output, scale, groups, cmap.shuffle_groups, cmap.offset, weight.shape[0])
    if needs[2]:
        g = grad if output is None else torch.where(output > 0, grad, 0)
        grad_b = g.sum((0, 2, 3)).index_select(0, cmap.dest_index(weight.shape[0], grad.device))
        if scale is not None:  # (an fp32 scale with fp16/bf16 activations: multiplied in fp32, rounded once)
            grad_b = (grad_b.to(scale.dtype) * scale).to(grad.dtype)
    return grad_in, grad_w, grad_b


def check_no_epilogue_grads(names, needs, op: str) -> None:
    """Reached only by calling the op directly with a trainable scale/shift (the public API checks first)."""
    for name, need in zip(names, needs):
        if need:
            raise frozen_epilogue_error(name, op)


# ------------------------------------------------------------------------------------------- autograd
def _setup_context(ctx, inputs, output):
    input, weight, _bias, scale, _shift, groups, shuffle_groups, relu = inputs
    ctx.save_for_backward(input, weight, scale, output if relu else None)
    ctx.conf = (groups, ChannelMap(weight.shape[0], shuffle_groups))
    ctx.input_channels_last = suggest_memory_format(input) == torch.channels_last


def _backward(ctx, grad):
    check_no_epilogue_grads(("scale", "shift"), ctx.needs_input_grad[3:5], "group_pointwise_conv2d")
    input, weight, scale, output = ctx.saved_tensors
    groups, cmap = ctx.conf
    grads = pointwise_grads(grad, input, weight, output, scale, groups, cmap, ctx.needs_input_grad[:3],
                            ctx.input_channels_last)
    return (*grads, None, None, None, None, None)


torch.library.register_autograd("cnnkern::group_pointwise_conv2d", _backward, setup_context=_setup_context)


# --------------------------------------------------------------------------------------- public API
def group_pointwise_conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, groups: int = 1,
                           shuffle_groups: int | None = None, *, scale: Tensor | None = None,
                           shift: Tensor | None = None, relu: bool = False) -> Tensor:
    """Grouped 1x1 conv, optionally fused with a channel shuffle and a folded-BN/ReLU epilogue.

    Equals ``F.channel_shuffle(act(F.conv2d(input, weight, bias, groups=groups) * scale + shift),
    shuffle_groups)`` with ``act`` ReLU if ``relu`` else identity, scale/shift per output channel
    (omitted when None; the input's dtype, or float32 with float16/bfloat16 input, applied in fp32) and no
    shuffle when ``shuffle_groups`` is None. ``weight`` is
    (C_out, C_in/groups, 1, 1). The output keeps the input's memory format (channels_last stays
    channels_last). Differentiable in input, weight and bias; scale/shift are frozen (no gradient). Under
    ``torch.autocast`` input, weight and bias run in the autocast dtype (scale/shift stay as given).
    """
    op = "group_pointwise_conv2d"
    input, weight, bias = _autocast.cast(_autocast.autocast_dtype(input), input, weight, bias)
    check_tensors(input, weight, bias, op)
    input, unbatched = _args.batched(input, op)
    check_frozen_epilogue({"scale": scale, "shift": shift}, op)
    sg = 1 if shuffle_groups is None else shuffle_groups
    out = torch.ops.cnnkern.group_pointwise_conv2d(input, weight, bias, scale, shift, groups, sg, relu)
    return out.squeeze(0) if unbatched else out
