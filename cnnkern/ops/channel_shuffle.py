"""``channel_shuffle`` as a custom op that keeps the input's memory format.

``F.channel_shuffle`` reshapes through a 5-D view and so does not promise channels_last in, channels_last out;
this op is one gather kernel in whatever layout the input has. Its gradient is the inverse permutation,
which is again a channel shuffle: with C channels, shuffling by ``C // groups`` undoes shuffling by ``groups``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cnnkern.ops import backend as _backend
from cnnkern.problem import channel_map as _args
from cnnkern.problem.channel_map import ChannelMap, GroupPointwiseProblem, check_shuffle_groups
from cnnkern.problem.conv2d import suggest_memory_format


def run_channel_map(src: Tensor, dst: Tensor, cmap: ChannelMap, scatter: bool) -> None:
    """scatter: ``dst[:, cmap.dest(c)] = src[:, c]``; gather: ``dst[:, c] = src[:, cmap.dest(c)]``."""
    if src.numel() == 0 or dst.numel() == 0:
        return
    impl = _backend.select("channel_shuffle", GroupPointwiseProblem((src,), cmap), src.device)
    impl(src, dst, cmap, scatter)


def _check(input: Tensor, groups) -> None:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"channel_shuffle: input must be a tensor, got {type(input).__name__}")
    if input.dim() != 4:
        raise RuntimeError(f"channel_shuffle: expected a 4-D (N, C, H, W) input, but got input of size "
                           f"{list(input.shape)}")
    check_shuffle_groups(input.shape[1], groups)


@torch.library.custom_op("cnnkern::channel_shuffle", mutates_args=())
def channel_shuffle_op(input: Tensor, groups: int) -> Tensor:
    _check(input, groups)
    out = _args.allocate(input.shape, input, suggest_memory_format(input))
    run_channel_map(input, out, ChannelMap(input.shape[1], groups), scatter=True)
    return out


@channel_shuffle_op.register_fake
def _(input, groups):
    _check(input, groups)
    return _args.allocate(input.shape, input, suggest_memory_format(input))


def _setup_context(ctx, inputs, output):
    input, groups = inputs
    ctx.inverse_groups = max(1, input.shape[1] // groups)  # no channels: any valid groups will do


def _backward(ctx, grad):
    return torch.ops.cnnkern.channel_shuffle(grad, ctx.inverse_groups), None


torch.library.register_autograd("cnnkern::channel_shuffle", _backward, setup_context=_setup_context)


def channel_shuffle(input: Tensor, groups: int) -> Tensor:
    """``F.channel_shuffle(input, groups)`` for (N, C, H, W) input, returned in the input's memory format."""
    return torch.ops.cnnkern.channel_shuffle(input, groups)
