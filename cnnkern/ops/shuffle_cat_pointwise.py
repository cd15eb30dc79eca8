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
import torch.nn.functional as F
from torch import Tensor

from cnnkern.ops import _autocast, _route
from cnnkern.ops import backend as _backend
from cnnkern.ops._library import define
from cnnkern.ops._pointwise_plan import (
    PointwisePlan,
    aten_pointwise,
    channel_map_plan_choice,
    pointwise_grads,
    pointwise_tangent,
)
from cnnkern.ops.channel_shuffle import run_channel_map
from cnnkern.ops.conv2d import _pick_route
from cnnkern.ops.group_pointwise_conv2d import check_no_epilogue_grads, op_pointwise_grads
from cnnkern.problem import channel_map as _args
from cnnkern.problem import memory as _memory
from cnnkern.problem.channel_map import (
    ChannelMap,
    GroupPointwiseSpec,
    check_frozen_epilogue,
    check_group_pointwise,
    check_shuffle_groups,
)

__all__ = ["shuffle_cat_pointwise", "shuffle_cat_pointwise2"]

_CAT, _PAIR = "shuffle_cat_pointwise", "shuffle_cat_pointwise2"


def _check_same_pixels(first: Tensor, second: Tensor, op: str) -> None:
    if first.dim() != 4 or second.dim() != 4 or (first.shape[0], *first.shape[2:]) != (second.shape[0],
                                                                                      *second.shape[2:]):
        raise RuntimeError(f"{op}: the two branches must have the same batch and spatial size to be "
                           f"concatenated, but got {list(first.shape)} and {list(second.shape)}")
    if first.dtype != second.dtype or first.device != second.device:
        raise RuntimeError(f"{op}: the two branches must have the same dtype and device, but got "
                           f"{first.dtype} on {first.device} and {second.dtype} on {second.device}")


def _total(first_channels: int, weight: Tensor, shuffle_groups: int) -> int:
    total = first_channels + weight.shape[0]
    check_shuffle_groups(total, shuffle_groups, "channels (both branches together)")
    return total


def _allocate(total: int, input: Tensor, memory_format) -> Tensor:
    return _memory.empty(_args.out_shape(input.shape, total), input, memory_format)


def _cat_format(input, weight):
    # ATen's convolution rule on the conv branch; the passthrough half is usually a channel slice whose
    # layout says nothing about the wanted format.
    return _memory.conv_output_format(input, weight)


def _pair_format(input1, weight1, input2, weight2):
    """channels_last when either branch's conv would give channels_last."""
    cl = torch.channels_last
    if cl in (_memory.conv_output_format(input1, weight1), _memory.conv_output_format(input2, weight2)):
        return cl
    return torch.contiguous_format


# ----------------------------------------------------------------------------- stride 1: passthrough
def _check_cat(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups) -> int:
    check_group_pointwise(input, weight, bias, scale, shift, groups, _CAT)
    _check_same_pixels(passthrough, input, _CAT)
    return _total(passthrough.shape[1], weight, shuffle_groups)


class CatPlan:
    """The passthrough's channel map and the conv's plan, both storing into one shuffled output."""

    __slots__ = ("cp", "out_format", "pass_choice", "pass_kernel", "pass_map", "pw", "route", "total")

    def __init__(self, passthrough, input, weight, bias, scale, shift, groups, shuffle_groups, relu, forced):
        self.total = _check_cat(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups)
        self.cp = passthrough.shape[1]
        self.pass_map = ChannelMap(self.total, shuffle_groups, 0)
        self.pass_choice, self.pass_kernel = channel_map_plan_choice(passthrough, self.pass_map, forced)
        spec = GroupPointwiseSpec(groups, ChannelMap(self.total, shuffle_groups, self.cp), relu)
        self.pw = PointwisePlan(input, weight, (input, weight, bias, scale, shift), spec, forced)
        self.out_format = _cat_format(input, weight)
        self.route = _pick_route([self.pass_choice, *self.pw.choices.values()], _CAT)

    def forward(self, passthrough, x, w, b, scale, shift) -> Tensor:
        out = _allocate(self.total, x, self.out_format)
        if passthrough.numel() != 0:
            self.pass_kernel(passthrough, out, self.pass_map, True)
        self.pw.forward_into(x, w, b, scale, shift, out)
        return out

    def scatter_passthrough(self, p, like_format) -> Tensor:
        out = _memory.empty(_args.out_shape(p.shape, self.total), p, like_format).zero_()
        if p.numel() != 0:
            self.pass_kernel(p, out, self.pass_map, True)
        return out

    def gather_passthrough(self, grad, like_format) -> Tensor:
        out = _memory.empty(_args.out_shape(grad.shape, self.cp), grad, like_format)
        if out.numel() != 0:
            self.pass_kernel(grad, out, self.pass_map, False)
        return out


def _cat_plan(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups, relu) -> CatPlan:
    state = _backend.dispatch_state()
    key = (_CAT, passthrough.shape, passthrough.stride(), passthrough.dtype, passthrough.device, input.shape,
           input.stride(), input.dtype, input.device, weight.shape, weight.stride(), weight.dtype,
           *(None if t is None else (t.shape, t.dtype, t.device) for t in (bias, scale, shift)), groups,
           shuffle_groups, relu, state)
    return _backend.cached_plan(key, lambda: CatPlan(passthrough, input, weight, bias, scale, shift, groups,
                                                    shuffle_groups, relu, state[0]))


@_route.dual_style
class _CatForward(torch.autograd.Function):
    @staticmethod
    def forward(passthrough, x, w, b, scale, shift, plan):
        return plan.forward(passthrough, x, w, b, scale, shift)

    @staticmethod
    def setup_context(ctx, inputs, output):
        passthrough, x, w, b, scale, shift, plan = inputs
        saved_out = output if plan.pw.spec.relu else None
        ctx.save_for_backward(x, w, scale, saved_out)
        ctx.save_for_forward(x, w, b, scale, shift, saved_out)
        ctx.plan = plan
        ctx.pass_format = _memory.format_of(passthrough)

    @staticmethod
    def backward(ctx, grad):
        check_no_epilogue_grads(("scale", "shift"), ctx.needs_input_grad[4:6], _CAT)
        x, w, scale, output = ctx.saved_tensors
        plan = ctx.plan
        grad_pass = passthrough_grad(grad, plan, ctx.pass_format) if ctx.needs_input_grad[0] else None
        grads = pointwise_grads(grad, x, w, output, scale, plan.pw, ctx.needs_input_grad[1:4])
        return (grad_pass, *grads, None, None, None)

    @staticmethod
    def jvp(ctx, dpass, dx, dw, db, dscale, dshift, _plan):
        *primals, output = ctx.saved_tensors
        plan = ctx.plan
        out = pointwise_tangent((dx, dw, db, dscale, dshift), primals, output, plan.pw, plan.out_format)
        if dpass is not None:
            placed = passthrough_scatter(dpass, plan, plan.out_format)
            out = placed if out is None else out + placed
        return out


def passthrough_grad(grad, plan: CatPlan, like_format) -> Tensor:
    """The passthrough's gradient: its channels gathered back out of their slots."""
    if _route.needs_autograd(grad):
        return _route.apply(_PassthroughGather, grad, plan, like_format)
    return plan.gather_passthrough(grad, like_format)


def passthrough_scatter(p, plan: CatPlan, like_format) -> Tensor:
    """The passthrough's channels placed in their slots of a zero output (the forward's linear part)."""
    if _route.needs_autograd(p):
        return _route.apply(_PassthroughScatter, p, plan, like_format)
    return plan.scatter_passthrough(p, like_format)


# Gather and scatter are each other's adjoints, and each is linear: that is all of their autograd.
@_route.dual_style
class _PassthroughGather(torch.autograd.Function):
    @staticmethod
    def forward(grad, plan, like_format):
        return plan.gather_passthrough(grad, like_format)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.plan, ctx.like_format = inputs[1], inputs[2]
        ctx.grad_format = _memory.format_of(inputs[0])

    @staticmethod
    def backward(ctx, h):
        return passthrough_scatter(h, ctx.plan, ctx.grad_format), None, None

    @staticmethod
    def jvp(ctx, dgrad, _plan, _fmt):
        return passthrough_grad(dgrad, ctx.plan, ctx.like_format)


@_route.dual_style
class _PassthroughScatter(torch.autograd.Function):
    @staticmethod
    def forward(p, plan, like_format):
        return plan.scatter_passthrough(p, like_format)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.plan, ctx.like_format = inputs[1], inputs[2]
        ctx.p_format = _memory.format_of(inputs[0])

    @staticmethod
    def backward(ctx, h):
        return passthrough_grad(h, ctx.plan, ctx.p_format), None, None

    @staticmethod
    def jvp(ctx, dp, _plan, _fmt):
        return passthrough_scatter(dp, ctx.plan, ctx.like_format)


# ----------------------------------------------------------------------------- stride 2: two convs
def _check_pair(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2, groups,
                shuffle_groups) -> int:
    check_group_pointwise(input1, weight1, bias1, scale1, shift1, groups, _PAIR)
    check_group_pointwise(input2, weight2, bias2, scale2, shift2, groups, _PAIR)
    _check_same_pixels(input1, input2, _PAIR)
    return _total(weight1.shape[0], weight2, shuffle_groups)


class PairPlan:
    __slots__ = ("out_format", "pw1", "pw2", "route", "total")

    def __init__(self, input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2, groups,
                 shuffle_groups, relu, forced):
        self.total = _check_pair(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2,
                                 groups, shuffle_groups)
        c1 = weight1.shape[0]
        spec1 = GroupPointwiseSpec(groups, ChannelMap(self.total, shuffle_groups, 0), relu)
        spec2 = GroupPointwiseSpec(groups, ChannelMap(self.total, shuffle_groups, c1), relu)
        self.pw1 = PointwisePlan(input1, weight1, (input1, weight1, bias1, scale1, shift1), spec1, forced)
        self.pw2 = PointwisePlan(input2, weight2, (input2, weight2, bias2, scale2, shift2), spec2, forced)
        self.out_format = _pair_format(input1, weight1, input2, weight2)
        self.route = _pick_route([*self.pw1.choices.values(), *self.pw2.choices.values()], _PAIR)

    def forward(self, x1, w1, b1, s1, h1, x2, w2, b2, s2, h2) -> Tensor:
        out = _allocate(self.total, x2, self.out_format)
        self.pw1.forward_into(x1, w1, b1, s1, h1, out)
        self.pw2.forward_into(x2, w2, b2, s2, h2, out)
        return out


def _pair_plan(args, groups, shuffle_groups, relu) -> PairPlan:
    state = _backend.dispatch_state()
    key = (_PAIR, *((None if t is None else (t.shape, t.stride(), t.dtype, t.device)) for t in args), groups,
           shuffle_groups, relu, state)
    return _backend.cached_plan(key, lambda: PairPlan(*args, groups, shuffle_groups, relu, state[0]))


@_route.dual_style
class _PairForward(torch.autograd.Function):
    @staticmethod
    def forward(x1, w1, b1, s1, h1, x2, w2, b2, s2, h2, plan):
        return plan.forward(x1, w1, b1, s1, h1, x2, w2, b2, s2, h2)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x1, w1, b1, s1, h1, x2, w2, b2, s2, h2, plan = inputs
        saved_out = output if plan.pw1.spec.relu else None
        ctx.save_for_backward(x1, w1, s1, x2, w2, s2, saved_out)
        ctx.save_for_forward(x1, w1, b1, s1, h1, x2, w2, b2, s2, h2, saved_out)
        ctx.plan = plan

    @staticmethod
    def backward(ctx, grad):
        needs = ctx.needs_input_grad
        check_no_epilogue_grads(("scale1", "shift1", "scale2", "shift2"), needs[3:5] + needs[8:10], _PAIR)
        x1, w1, s1, x2, w2, s2, output = ctx.saved_tensors
        plan = ctx.plan
        g1 = pointwise_grads(grad, x1, w1, output, s1, plan.pw1, needs[0:3])
        g2 = pointwise_grads(grad, x2, w2, output, s2, plan.pw2, needs[5:8])
        return (*g1, None, None, *g2, None, None, None)

    @staticmethod
    def jvp(ctx, dx1, dw1, db1, ds1, dh1, dx2, dw2, db2, ds2, dh2, _plan):
        saved = ctx.saved_tensors
        output, plan = saved[10], ctx.plan
        t1 = pointwise_tangent((dx1, dw1, db1, ds1, dh1), saved[0:5], output, plan.pw1, plan.out_format)
        t2 = pointwise_tangent((dx2, dw2, db2, ds2, dh2), saved[5:10], output, plan.pw2, plan.out_format)
        return t1 if t2 is None else (t2 if t1 is None else t1 + t2)


# ---------------------------------------------------------------------------------------- custom ops
def _op_cat(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups, relu):
    plan = _cat_plan(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups, relu)
    return plan.forward(passthrough, input, weight, bias, scale, shift)


def _op_cat_fake(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups, relu):
    return _allocate(_check_cat(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups), input,
                     _cat_format(input, weight))


def _op_cat_setup(ctx, inputs, output):
    passthrough, input, weight, _bias, scale, _shift, groups, shuffle_groups, relu = inputs
    ctx.save_for_backward(input, weight, scale, output if relu else None)
    cp = passthrough.shape[1]
    ctx.conf = (groups, shuffle_groups, cp, ChannelMap(output.shape[1], shuffle_groups, cp))
    ctx.channels_last = tuple(_memory.suggests_channels_last(t) for t in (passthrough, input))


def _op_cat_backward(ctx, grad):
    check_no_epilogue_grads(("scale", "shift"), ctx.needs_input_grad[4:6], _CAT)
    input, weight, scale, output = ctx.saved_tensors
    groups, shuffle_groups, cp, cmap = ctx.conf
    grad_pass = None
    if ctx.needs_input_grad[0]:
        grad_pass = shuffle_cat_pointwise_backward_passthrough_op(grad, cp, shuffle_groups, ctx.channels_last[0])
    grads = op_pointwise_grads(grad, input, weight, output, scale, groups, cmap, ctx.needs_input_grad[1:4],
                               ctx.channels_last[1])
    return (grad_pass, *grads, None, None, None, None, None)


def _op_passthrough_grad(grad_output, channels, shuffle_groups, channels_last):
    check_shuffle_groups(grad_output.shape[1], shuffle_groups)
    grad = _memory.empty(_args.out_shape(grad_output.shape, channels), grad_output,
                         _memory.memory_format(channels_last))
    run_channel_map(grad_output, grad, ChannelMap(grad_output.shape[1], shuffle_groups, 0), scatter=False)
    return grad


def _op_passthrough_grad_fake(grad_output, channels, shuffle_groups, channels_last):
    return _memory.empty(_args.out_shape(grad_output.shape, channels), grad_output,
                         _memory.memory_format(channels_last))


def _op_pair(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2, groups,
             shuffle_groups, relu):
    args = (input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2)
    return _pair_plan(args, groups, shuffle_groups, relu).forward(*args)


def _op_pair_fake(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2, groups,
                  shuffle_groups, relu):
    total = _check_pair(input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2, groups,
                        shuffle_groups)
    return _allocate(total, input2, _pair_format(input1, weight1, input2, weight2))


def _op_pair_setup(ctx, inputs, output):
    input1, weight1, _b1, scale1, _s1, input2, weight2, _b2, scale2, _s2, groups, shuffle_groups, relu = inputs
    ctx.save_for_backward(input1, weight1, scale1, input2, weight2, scale2, output if relu else None)
    total, c1 = output.shape[1], weight1.shape[0]
    ctx.conf = (groups, ChannelMap(total, shuffle_groups, 0), ChannelMap(total, shuffle_groups, c1))
    ctx.channels_last = tuple(_memory.suggests_channels_last(t) for t in (input1, input2))


def _op_pair_backward(ctx, grad):
    needs = ctx.needs_input_grad
    check_no_epilogue_grads(("scale1", "shift1", "scale2", "shift2"), needs[3:5] + needs[8:10], _PAIR)
    input1, weight1, scale1, input2, weight2, scale2, output = ctx.saved_tensors
    groups, cmap1, cmap2 = ctx.conf
    g1 = op_pointwise_grads(grad, input1, weight1, output, scale1, groups, cmap1, needs[0:3], ctx.channels_last[0])
    g2 = op_pointwise_grads(grad, input2, weight2, output, scale2, groups, cmap2, needs[5:8], ctx.channels_last[1])
    return (*g1, None, None, *g2, None, None, None, None, None)


_EPI = "Tensor? bias, Tensor? scale, Tensor? shift"
shuffle_cat_pointwise_op = define(
    f"shuffle_cat_pointwise(Tensor passthrough, Tensor input, Tensor weight, {_EPI}, int groups, "
    "int shuffle_groups, bool relu) -> Tensor", _op_cat, _op_cat_fake, _op_cat_backward, _op_cat_setup)
shuffle_cat_pointwise_backward_passthrough_op = define(
    "shuffle_cat_pointwise_backward_passthrough(Tensor grad_output, int channels, int shuffle_groups, "
    "bool channels_last) -> Tensor", _op_passthrough_grad, _op_passthrough_grad_fake)
shuffle_cat_pointwise2_op = define(
    "shuffle_cat_pointwise2(Tensor input1, Tensor weight1, Tensor? bias1, Tensor? scale1, Tensor? shift1, "
    "Tensor input2, Tensor weight2, Tensor? bias2, Tensor? scale2, Tensor? shift2, int groups, "
    "int shuffle_groups, bool relu) -> Tensor", _op_pair, _op_pair_fake, _op_pair_backward, _op_pair_setup)


# --------------------------------------------------------------------------------------- public API
def shuffle_cat_pointwise(passthrough: Tensor, input: Tensor, weight: Tensor, bias: Tensor | None = None,
                          groups: int = 1, *, scale: Tensor | None = None, shift: Tensor | None = None,
                          relu: bool = False, shuffle_groups: int = 2) -> Tensor:
    """ShuffleNetV2 stride-1 unit tail without the concat or the shuffle.

    Equals ``F.channel_shuffle(torch.cat([passthrough, group_pointwise_conv2d(input, weight, bias, groups,
    scale=scale, shift=shift, relu=relu)], 1), shuffle_groups)``; the ReLU applies to the conv branch only.
    All tensors are 4-D (N, C, H, W); the result has the memory format of ``input``.
    """
    if _autocast.any_enabled():
        passthrough, input, weight, bias = _autocast.cast(_autocast.autocast_dtype(input), passthrough, input,
                                                          weight, bias)
    if scale is not None or shift is not None:
        check_frozen_epilogue({"scale": scale, "shift": shift}, _CAT)
    if not (_route.eager(input) and type(passthrough) is torch.Tensor):
        return shuffle_cat_pointwise_op(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups,
                                        relu)
    plan = _cat_plan(passthrough, input, weight, bias, scale, shift, groups, shuffle_groups, relu)
    if plan.route == "aten":
        _backend.record(plan.pw.choices["fwd"])
        branch = aten_pointwise(input, weight, bias, scale, shift, groups, relu)
        out = F.channel_shuffle(torch.cat([passthrough, branch], 1), shuffle_groups)
        return out.contiguous(memory_format=plan.out_format)
    if plan.route == "cuda" and not _route.transformed():
        _backend.record(plan.pw.choices["fwd"])
        return torch.ops.cnnkern_cuda.shuffle_cat_pointwise.default(passthrough, input, weight, bias, scale, shift,
                                                                    groups, shuffle_groups, relu)
    if _route.needs_autograd(passthrough, input, weight, bias):
        return _route.apply(_CatForward, passthrough, input, weight, bias, scale, shift, plan)
    return plan.forward(passthrough, input, weight, bias, scale, shift)


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
    if _autocast.any_enabled():
        input1, weight1, bias1, input2, weight2, bias2 = _autocast.cast(
            _autocast.autocast_dtype(input2), input1, weight1, bias1, input2, weight2, bias2)
    epilogue = {"scale1": scale1, "shift1": shift1, "scale2": scale2, "shift2": shift2}
    if any(v is not None for v in epilogue.values()):
        check_frozen_epilogue(epilogue, _PAIR)
    args = (input1, weight1, bias1, scale1, shift1, input2, weight2, bias2, scale2, shift2)
    if not (_route.eager(input2) and type(input1) is torch.Tensor):
        return shuffle_cat_pointwise2_op(*args, groups, shuffle_groups, relu)
    plan = _pair_plan(args, groups, shuffle_groups, relu)
    if plan.route == "aten":
        _backend.record(plan.pw2.choices["fwd"])
        a = aten_pointwise(input1, weight1, bias1, scale1, shift1, groups, relu)
        b = aten_pointwise(input2, weight2, bias2, scale2, shift2, groups, relu)
        out = F.channel_shuffle(torch.cat([a, b], 1), shuffle_groups)
        return out.contiguous(memory_format=plan.out_format)
    if plan.route == "cuda" and not _route.transformed():
        _backend.record(plan.pw2.choices["fwd"])
        return torch.ops.cnnkern_cuda.shuffle_cat_pointwise2.default(*args, groups, shuffle_groups, relu)
    if _route.needs_autograd(input1, weight1, bias1, input2, weight2, bias2):
        return _route.apply(_PairForward, *args, plan)
    return plan.forward(*args)
