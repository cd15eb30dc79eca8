"""``channel_shuffle``: one gather kernel in whatever layout the input has; public function, op, autograd.

Its gradient is the inverse permutation, which is again a channel shuffle: with C channels, shuffling by
``C // groups`` undoes shuffling by ``groups`` (so double backward and forward AD come for free).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnkern.ops import _route
from cnnkern.ops import backend as _backend
from cnnkern.ops._library import define
from cnnkern.ops._pointwise_plan import channel_map_plan_choice
from cnnkern.ops.conv2d import _pick_route
from cnnkern.problem import memory as _memory
from cnnkern.problem.channel_map import ChannelMap, GroupPointwiseProblem, check_shuffle_groups

__all__ = ["channel_shuffle"]

_OP = "channel_shuffle"


def run_channel_map(src: Tensor, dst: Tensor, cmap: ChannelMap, scatter: bool) -> None:
    """scatter: ``dst[:, cmap.dest(c)] = src[:, c]``; gather: ``dst[:, c] = src[:, cmap.dest(c)]`` (chosen per
    call: the compiled-graph path)."""
    if src.numel() == 0 or dst.numel() == 0:
        return
    impl = _backend.select(_OP, _OP, GroupPointwiseProblem((src,), cmap), src.device)
    impl(src, dst, cmap, scatter)


def _check(input: Tensor, groups) -> None:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"channel_shuffle: input must be a tensor, got {type(input).__name__}")
    if input.dim() != 4:
        raise RuntimeError(f"channel_shuffle: expected a 4-D (N, C, H, W) input, but got input of size "
                           f"{list(input.shape)}")
    check_shuffle_groups(input.shape[1], groups)


def inverse_groups(channels: int, groups: int) -> int:
    return max(1, channels // groups)  # no channels: any valid groups will do


class ShufflePlan:
    __slots__ = ("choice", "cmap", "inverse", "kernel", "out_format", "route")

    def __init__(self, input, groups, forced):
        _check(input, groups)
        self.cmap = ChannelMap(input.shape[1], groups)
        self.choice, self.kernel = channel_map_plan_choice(input, self.cmap, forced)
        self.out_format = _memory.format_of(input)
        self.route = _pick_route([self.choice], _OP)
        self.inverse = inverse_groups(input.shape[1], groups)

    def forward(self, x: Tensor) -> Tensor:
        _backend.record(self.choice)
        out = _memory.empty(x.shape, x, self.out_format)
        if out.numel() != 0:
            self.kernel(x, out, self.cmap, True)
        return out


def plan_for(input, groups) -> ShufflePlan:
    state = _backend.dispatch_state()
    key = (_OP, input.shape, input.stride(), input.dtype, input.device, groups, state)
    return _backend.cached_plan(key, lambda: ShufflePlan(input, groups, state[0]))


@_route.dual_style
class _Shuffle(torch.autograd.Function):
    @staticmethod
    def forward(x, plan):
        return plan.forward(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        plan = inputs[1]
        ctx.inverse, ctx.groups = plan.inverse, plan.cmap.shuffle_groups

    @staticmethod
    def backward(ctx, grad):
        return channel_shuffle(grad, ctx.inverse), None

    @staticmethod
    def jvp(ctx, dx, _plan):
        return channel_shuffle(dx, ctx.groups)


# ----------------------------------------------------------------------------------------- custom op
def _op_forward(input, groups):
    return plan_for(input, groups).forward(input)


def _op_forward_fake(input, groups):
    _check(input, groups)
    return _memory.empty(input.shape, input, _memory.format_of(input))


def _op_setup_context(ctx, inputs, output):
    input, groups = inputs
    ctx.inverse_groups = inverse_groups(input.shape[1], groups)


def _op_backward(ctx, grad):
    return channel_shuffle_op(grad, ctx.inverse_groups), None


channel_shuffle_op = define("channel_shuffle(Tensor input, int groups) -> Tensor", _op_forward, _op_forward_fake,
                            _op_backward, _op_setup_context)


def channel_shuffle(input: Tensor, groups: int) -> Tensor:
    """``F.channel_shuffle(input, groups)`` for (N, C, H, W) input, returned in the input's memory format."""
    if not _route.eager(input):
        _check(input, groups)
        return channel_shuffle_op(input, groups)
    try:
        plan = plan_for(input, groups)
    except AttributeError:
        _check(input, groups)
        raise
    if plan.route == "aten":
        _backend.record(plan.choice)
        return F.channel_shuffle(input, groups).contiguous(memory_format=plan.out_format)
    if plan.route == "cuda" and not _route.transformed():
        _backend.record(plan.choice)
        return torch.ops.cnnkern_cuda.channel_shuffle.default(input, groups)
    if _route.needs_autograd(input):
        return _route.apply(_Shuffle, input, plan)
    return plan.forward(input)
