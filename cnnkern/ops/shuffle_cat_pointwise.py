"""ShuffleNetV2's concat + channel shuffle folded into the branches' last pointwise convs.

A V2 unit ends in ``channel_shuffle(cat([a, b], 1), 2)``: a's channel j lands at 2j, b's at 2j+1. Each op
here allocates that final tensor once and writes every branch straight into its interleaved slots
(``ChannelMap`` with the branch's offset into the concatenation), so neither the concat nor the shuffle
is materialised, forward or backward:

  stride 1:  a = passthrough half of the input, b = pointwise conv   -> ``shuffle_cat_pointwise``
  stride 2:  a and b are both pointwise convs (on different inputs) -> ``shuffle_cat_pointwise2``

The ops are functional (no ``out=``), so autograd and ``torch.compile`` treat them like any other op.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cnnkern.ops import _autocast
from cnnkern.ops.channel_shuffle import run_channel_map
from cnnkern.ops.group_pointwise_conv2d import check_no_epilogue_grads, pointwise_grads, run_forward
from cnnkern.problem import channel_map as _args
from cnnkern.problem.channel_map import (
    ChannelMap,
    GroupPointwiseSpec,
    check_frozen_epilogue,
    check_group_pointwise,
    check_shuffle_groups,
)
from cnnkern.problem.conv2d import suggest_memory_format


def _check_same_pixels(first: Tensor, second: Tensor, op: str) -> None:
    if first.dim() != 4 or second.dim() != 4 or (first.shape[0], *first.shape[2:]) != (second.shape[0],
                                                                                      *second.shape[2:]):
        raise RuntimeError(f"{op}: the two branches must have the same batch and spatial size to be "
                           f"concatenated, but got {list(first.shape)} and {list(second.shape)}")
    if first.dtype != second.dtype or first.device != second.device:
        raise RuntimeError(f"{op}: the two branches must have the same dtype and device, but got "
                           f"{first.dtype} on {first.device} and {second.dtype} on {second.device}")


def _allocate(first_channels: int, input: Tensor, weight: Tensor, shuffle_groups: int) -> Tensor:
    total = first_channels + weight.shape[0]
    check_shuffle_groups(total, shuffle_groups, "channels (both branches together)")
    # The conv input is a fresh activation; the passthrough half is usually a channel slice whose layout
    # says nothing about the wanted format.
    return _args.allocate(_args.out_shape(input.shape, total), input, suggest_memory_format(input))


# ----------------------------------------------------------------------------- stride 1: passthrough
def _check_cat(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups):
    op = "shuffle_cat_pointwise"
    check_group_pointwise(input, weight, bias, scale, shift, groups, op)
    _check_same_pixels(passthrough, input, op)
    return _allocate(passthrough.shape[1], input, weight, shuffle_groups)


@torch.library.custom_op("cnnkern::shuffle_cat_pointwise", mutates_args=())
def shuffle_cat_pointwise_op(passthrough: Tensor, input: Tensor, weight: Tensor, bias: Tensor | None,
                             scale: Tensor | None, shift: Tensor | None, groups: int, shuffle_groups: int,
                             relu: bool) -> Tensor:
    out = _check_cat(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups)
    total, cp = out.shape[1], passthrough.shape[1]
    run_channel_map(passthrough, out, ChannelMap(total, shuffle_groups, 0), scatter=True)
    run_forward(input, weight, bias, scale, shift, out,
                GroupPointwiseSpec(groups, ChannelMap(total, shuffle_groups, cp), relu))
    return out


@shuffle_cat_pointwise_op.register_fake
def _(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups, relu):
    return _check_cat(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups)


@torch.library.custom_op("cnnkern::shuffle_cat_pointwise_backward_passthrough", mutates_args=())
def shuffle_cat_pointwise_backward_passthrough_op(grad_output: Tensor, channels: int, shuffle_groups: int,
                                                  channels_last: bool) -> Tensor:
    """The passthrough's gradient: its channels gathered back out of their interleaved slots."""
    check_shuffle_groups(grad_output.shape[1], shuffle_groups)
    grad = _args.allocate(_args.out_shape(grad_output.shape, channels), grad_output,
                          torch.channels_last if channels_last else torch.contiguous_format)
    run_channel_map(grad_output, grad, ChannelMap(grad_output.shape[1], shuffle_groups, 0), scatter=False)
    return grad


@shuffle_cat_pointwise_backward_passthrough_op.register_fake
def _(grad_output, channels, shuffle_groups, channels_last):
    return _args.allocate(_args.out_shape(grad_output.shape, channels), grad_output,
                          torch.channels_last if channels_last else torch.contiguous_format)


def _cat_setup_context(ctx, inputs, output):
    passthrough, input, weight, _bias, scale, _shift, groups, shuffle_groups, relu = inputs
    ctx.save_for_backward(input, weight, scale, output if relu else None)
    cp = passthrough.shape[1]
    ctx.conf = (groups, shuffle_groups, cp, ChannelMap(output.shape[1], shuffle_groups, cp))
    ctx.channels_last = tuple(suggest_memory_format(t) == torch.channels_last for t in (passthrough, input))


def _cat_backward(ctx, grad):
    check_no_epilogue_grads(("scale", "shift"), ctx.needs_input_grad[4:6], "shuffle_cat_pointwise")
    input, weight, scale, output = ctx.saved_tensors
    groups, shuffle_groups, cp, cmap = ctx.conf
    grad_pass = None
    if ctx.needs_input_grad[0]:
        grad_pass = torch.ops.cnnkern.shuffle_cat_pointwise_backward_passthrough(grad, cp, shuffle_groups,
                                                                                 ctx.channels_last[0])
    grads = pointwise_grads(grad, input, weight, output, scale, groups, cmap, ctx.needs_input_grad[1:4],
                            ctx.channels_last[1])
    return (grad_pass, *grads, None, None, None, None, None)


torch.library.register_autograd("cnnkern::shuffle_cat_pointwise", _cat_backward, setup_context=_cat_setup_context)


# ----------------------------------------------------------------------------- stride 2: two convs
def _check_pair(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2, groups,
                shuffle_groups):
    op = "shuffle_cat_pointwise2"
    check_group_pointwise(input1, weight1, bias1, scale1, shift1, groups, op)
    check_group_pointwise(input2, weight2, bias2, scale2, shift2, groups, op)
    _check_same_pixels(input1, input2, op)
    return _allocate(weight1.shape[0], input2, weight2, shuffle_groups)


@torch.library.custom_op("cnnkern::shuffle_cat_pointwise2", mutates_args=())
def shuffle_cat_pointwise2_op(input1: Tensor, weight1: Tensor, bias1: Tensor | None, scale1: Tensor | None,
                              shift1: Tensor | None, input2: Tensor, weight2: Tensor, bias2: Tensor | None,
                              scale2: Tensor | None, shift2: Tensor | None, groups: int, shuffle_groups: int,
                              relu: bool) -> Tensor:
    out = _check_pair(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2, groups,
                      shuffle_groups)
    total, c1 = out.shape[1], weight1.shape[0]
    run_forward(input1, weight1, bias1, scale1, shift1, out,
                GroupPointwiseSpec(groups, ChannelMap(total, shuffle_groups, 0), relu))
    run_forward(input2, weight2, bias2, scale2, shift2, out,
                GroupPointwiseSpec(groups, ChannelMap(total, shuffle_groups, c1), relu))
    return out


@shuffle_cat_pointwise2_op.register_fake
def _(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2, groups, shuffle_groups,
      relu):
    return _check_pair(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2, groups,
                       shuffle_groups)


def _pair_setup_context(ctx, inputs, output):
    input1, weight1, _b1, scale1, _s1, input2, weight2, _b2, scale2, _s2, groups, shuffle_groups, relu = inputs
    ctx.save_for_backward(input1, weight1, scale1, input2, weight2, scale2, output if relu else None)
    total, c1 = output.shape[1], weight1.shape[0]
    ctx.conf = (groups, ChannelMap(total, shuffle_groups, 0), ChannelMap(total, shuffle_groups, c1))
    ctx.channels_last = tuple(suggest_memory_format(t) == torch.channels_last for t in (input1, input2))


def _pair_backward(ctx, grad):
    needs = ctx.needs_input_grad
    check_no_epilogue_grads(("scale1", "shift1", "scale2", "shift2"), needs[3:5] + needs[8:10],
                            "shuffle_cat_pointwise2")
    input1, weight1, scale1, input2, weight2, scale2, output = ctx.saved_tensors
    groups, cmap1, cmap2 = ctx.conf
    g1 = pointwise_grads(grad, input1, weight1, output, scale1, groups, cmap1, needs[0:3], ctx.channels_last[0])
    g2 = pointwise_grads(grad, input2, weight2, output, scale2, groups, cmap2, needs[5:8], ctx.channels_last[1])
    return (*g1, None, None, *g2, None, None, None, None, None)


torch.library.register_autograd("cnnkern::shuffle_cat_pointwise2", _pair_backward,
                                setup_context=_pair_setup_context)


# --------------------------------------------------------------------------------------- public API
def shuffle_cat_pointwise(passthrough: Tensor, input: Tensor, weight: Tensor, bias: Tensor | None = None,
                          groups: int = 1, *, scale: Tensor | None = None, shift: Tensor | None = None,
                          relu: bool = False, shuffle_groups: int = 2) -> Tensor:
    """ShuffleNetV2 stride-1 unit tail without the concat or the shuffle.

    Equals ``F.channel_shuffle(torch.cat([passthrough, group_pointwise_conv2d(input, weight, bias, groups,
    scale=scale, shift=shift, relu=relu)], 1), shuffle_groups)``; the ReLU applies to the conv branch only.
    All tensors are 4-D (N, C, H, W); the result has the memory format of ``input``.
    """
    passthrough, input, weight, bias = _autocast.cast(_autocast.autocast_dtype(input), passthrough, input, weight,
                                                      bias)
    check_frozen_epilogue({"scale": scale, "shift": shift}, "shuffle_cat_pointwise")
    return torch.ops.cnnkern.shuffle_cat_pointwise(passthrough, input, weight, bias, scale, shift, groups,
                                                   shuffle_groups, relu)


def shuffle_cat_pointwise2(input1: Tensor, weight1: Tensor, input2: Tensor, weight2: Tensor, *,
                           bias1: Tensor | None = None, bias2: Tensor | None = None, groups: int = 1,
                           scale1: Tensor | None = None, shift1: Tensor | None = None,
                           scale2: Tensor | None = None, shift2: Tensor | None = None, relu: bool = False,
                           shuffle_groups: int = 2) -> Tensor:
    """ShuffleNetV2 stride-2 unit tail: both branches' last pointwise convs write one shuffled output.

    Equals ``F.channel_shuffle(torch.cat([pw(input1, weight1, bias1, scale1, shift1),
    pw(input2, weight2, bias2, scale2, shift2)], 1), shuffle_groups)`` where ``pw`` is
    ``group_pointwise_conv2d(..., groups=groups, relu=relu)``. The result has the memory format of ``input2``.
    """
    input1, weight1, bias1, input2, weight2, bias2 = _autocast.cast(_autocast.autocast_dtype(input2), input1,
                                                                    weight1, bias1, input2, weight2, bias2)
    check_frozen_epilogue({"scale1": scale1, "shift1": shift1, "scale2": scale2, "shift2": shift2},
                          "shuffle_cat_pointwise2")
    return torch.ops.cnnkern.shuffle_cat_pointwise2(input1, weight1, bias1, scale1, shift1, input2, weight2,
                                                    bias2, scale2, shift2, groups, shuffle_groups, relu)
