"""Transposed conv2d: the public function, its eager routes, the custom op and autograd.

A transposed convolution is the input gradient of its "equivalent conv2d" (``cnnkern.problem.
conv_transpose2d``), computed as a gather: each output pixel visits the inputs that reach it, no zeros are
inserted. The backward is made of that conv2d's differentiable kernels (``cnnkern.ops.conv2d``): grad_input
is its forward applied to grad_out, grad_weight its weight gradient with grad_out as its input and x as its
output gradient; so double backward and forward AD work here too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnkern.ops import _autocast, _route, autotune
from cnnkern.ops import backend as _backend
from cnnkern.ops._library import define
from cnnkern.ops.conv2d import (
    ConvPlan,
    DispatchReport,
    _add,
    _kernel,
    _pick_route,
    backward_weight,
    check_spatial,
    conv2d_backward_weight_op,
    conv2d_op,
)
from cnnkern.ops.conv2d import forward as conv_forward
from cnnkern.problem import memory as _memory
from cnnkern.problem.conv2d import Conv2dProblem, check_tensors, conv2d_spec, kernel_family
from cnnkern.problem.conv_transpose2d import conv_transpose2d_spec, equivalent_conv2d_padding

__all__ = ["ConvTranspose2dFunction", "conv_transpose2d", "explain_conv_transpose2d"]

_OP = "conv_transpose2d"


class TransposePlan:
    """One transposed-conv signature: the equivalent conv2d's spec, layouts, and the backends of the forward
    gather and of the equivalent conv2d (``eq``) that the gradients run on."""

    __slots__ = (
        "eq",
        "fwd",
        "fwd_choice",
        "in_shape",
        "keep",
        "out_format",
        "out_shape",
        "route",
        "spec",
        "user_args",
    )

    def __init__(self, input, weight, bias, spec, out_shape, user_args, forced):
        self.spec, self.out_shape, self.user_args = spec, tuple(out_shape), user_args
        self.in_shape = tuple(input.shape)
        self.out_format = _memory.conv_output_format(input, weight)
        operands = (input, weight) if bias is None else (input, weight, bias)
        fwd_op = kernel_family("conv_transpose2d_fwd", out_shape[1], weight.shape, spec.groups)
        problem = Conv2dProblem(operands, spec)
        self.fwd_choice = _backend.choose(_OP, fwd_op, problem, input.device, forced)
        if autotune.applies(input.device, forced):
            self.fwd_choice = _measured_forward(self, fwd_op, problem, input, weight, bias, user_args)
        self.fwd = _kernel(self.fwd_choice)
        # The equivalent conv2d over (the reached part of) y; its output is x's gradient, in x's layout.
        pads, self.keep = equivalent_conv2d_padding(spec, out_shape[2:])
        eq_shape = (out_shape[0], out_shape[1], *self.keep)
        eq_spec = conv2d_spec(eq_shape, weight.shape, None, spec.stride, pads, spec.dilation, spec.groups)
        y_proxy = input.new_empty(()).expand(eq_shape)
        self.eq = ConvPlan(y_proxy, weight, None, eq_spec, eq_shape, forced)
        self.eq.out_format = _memory.format_of(input)
        choices = [self.fwd_choice, *self.eq.choices.values()]
        self.route = _pick_route(choices, "conv_transpose2d")

    def forward(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        _backend.record(self.fwd_choice)
        out = _memory.empty(self.out_shape, x, self.out_format)
        if out.numel() != 0:
            self.fwd(x, w, b, out, self.spec)
        return out

    def reached(self, grad: Tensor) -> Tensor:
        """The part of y's gradient that reaches x (rows past every input's reach only feed the bias)."""
        if self.keep != tuple(self.out_shape[2:]):
            return grad[:, :, : self.keep[0], : self.keep[1]]
        return grad


def _measured_forward(plan: TransposePlan, name, problem, input, weight, bias, user_args):
    """The gather timed on every accepting backend; the reference candidate is F.conv_transpose2d itself."""
    like = {"dtype": input.dtype, "device": input.device}
    x = torch.empty(plan.in_shape, memory_format=_memory.format_of(input), **like).normal_()
    w = torch.empty(tuple(weight.shape), memory_format=_memory.format_of(weight), **like).normal_()
    b = None if bias is None else torch.randn(bias.shape[0], **like)
    out = torch.empty(plan.out_shape, memory_format=plan.out_format, **like)
    s, p, op, g, d = user_args
    signature = f"x{plan.in_shape}:{_memory.format_of(input)}|w{tuple(w.shape)}|{input.dtype}|bias={b is not None}|{plan.spec}"
    return autotune.choose(_OP, name, problem, input.device, plan.fwd_choice, signature,
                           lambda backend, kernel: (lambda: F.conv_transpose2d(x, w, b, s, p, op, g, d))
                           if kernel is None else (lambda: kernel(x, w, b, out, plan.spec)))


def transpose_forward(x, w, b, plan: TransposePlan) -> Tensor:
    if _route.needs_autograd(x, w, b):
        return _route.apply(_TransposeForward, x, w, b, plan)
    return plan.forward(x, w, b)


@_route.dual_style
class _TransposeForward(torch.autograd.Function):
    @staticmethod
    def forward(x, w, b, plan):
        return plan.forward(x, w, b)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, _b, plan = inputs
        ctx.save_for_backward(x, w)
        ctx.save_for_forward(x, w)
        ctx.plan = plan

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        plan = ctx.plan
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        reached = plan.reached(grad)
        grad_x = conv_forward(reached, w, None, plan.eq) if need_x else None
        grad_w = backward_weight(x, reached, plan.eq) if need_w else None
        return grad_x, grad_w, grad.sum((0, 2, 3)) if need_b else None, None

    @staticmethod
    def jvp(ctx, dx, dw, db, _plan):
        x, w = ctx.saved_tensors
        plan = ctx.plan
        out = transpose_forward(dx, w, None, plan) if dx is not None else None
        out = _add(out, transpose_forward(x, dw, None, plan) if dw is not None else None)
        if db is not None:
            out = _add(out, db.view(1, -1, 1, 1).expand(plan.out_shape))
        return out


# --------------------------------------------------------------------------------------------- plans
def _batched(input):
    if input.dim() not in (3, 4):
        raise RuntimeError(f"Expected 3D (unbatched) or 4D (batched) input to {_OP}, but got input of size: "
                           f"{list(input.shape)}")
    return input.unsqueeze(0) if input.dim() == 3 else input


def plan_for(input, weight, bias, stride, padding, output_padding, dilation, groups) -> TransposePlan:
    state = _backend.dispatch_state()
    key = (_OP, input.shape, input.stride(), input.dtype, input.device, weight.shape, weight.stride(),
           weight.dtype, weight.device, None if bias is None else (bias.shape, bias.dtype, bias.device),
           _route.hashable(stride), _route.hashable(padding), _route.hashable(output_padding),
           _route.hashable(dilation), groups, state)
    return _backend.cached_plan(key, lambda: _build(input, weight, bias, stride, padding, output_padding,
                                                   dilation, groups, state))


def _build(input, weight, bias, stride, padding, output_padding, dilation, groups, state) -> TransposePlan:
    check_tensors(input, weight, bias, _OP)
    x = _batched(input)
    spec, out_shape = conv_transpose2d_spec(x.shape, weight.shape, None if bias is None else bias.shape, stride,
                                            padding, output_padding, dilation, groups)
    check_spatial(x.shape)
    user_args = (spec.stride, spec.pad_tl, (spec.padding[0] - spec.padding[1], spec.padding[2] - spec.padding[3]),
                 spec.groups, spec.dilation)
    return TransposePlan(x, weight, bias, spec, out_shape, user_args, state[0])


# ----------------------------------------------------------------------------------------- custom op
def _op_forward(input, weight, bias, stride, padding, output_padding, dilation, groups):
    return plan_for(input, weight, bias, stride, padding, output_padding, dilation, groups).forward(input, weight,
                                                                                                    bias)


def _op_forward_fake(input, weight, bias, stride, padding, output_padding, dilation, groups):
    check_tensors(input, weight, bias, _OP)
    _, out_shape = conv_transpose2d_spec(input.shape, weight.shape, None if bias is None else bias.shape, stride,
                                         padding, output_padding, dilation, groups)
    return _memory.empty(out_shape, input, _memory.conv_output_format(input, weight))


def _op_setup_context(ctx, inputs, output):
    input, weight, _bias, stride, padding, output_padding, dilation, groups = inputs
    ctx.save_for_backward(input, weight)
    ctx.conf = (stride, padding, output_padding, dilation, groups)
    ctx.input_format = _memory.format_of(input)


def _op_backward(ctx, grad):
    input, weight = ctx.saved_tensors
    stride, padding, output_padding, dilation, groups = ctx.conf
    need_in, need_w, need_b = ctx.needs_input_grad[:3]
    spec, out_shape = conv_transpose2d_spec(input.shape, weight.shape, None, stride, padding, output_padding,
                                            dilation, groups)
    pads, keep = equivalent_conv2d_padding(spec, out_shape[2:])
    reached = grad[:, :, : keep[0], : keep[1]] if keep != tuple(out_shape[2:]) else grad
    conv = (list(spec.stride), pads, list(spec.dilation), spec.groups)
    grad_in = grad_w = grad_b = None
    if need_in:
        grad_in = conv2d_op(reached, weight, None, *conv).contiguous(memory_format=ctx.input_format)
    if need_w:
        grad_w = conv2d_backward_weight_op(input, reached, list(weight.shape), *conv)
    if need_b:
        grad_b = grad.sum((0, 2, 3))
    return grad_in, grad_w, grad_b, None, None, None, None, None


conv_transpose2d_op = define(
    "conv_transpose2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
    "int[2] output_padding, int[2] dilation, int groups) -> Tensor",
    _op_forward, _op_forward_fake, _op_backward, _op_setup_context)


class ConvTranspose2dFunction(torch.autograd.Function):
    """The public autograd Function over ``torch.ops.cnnkern.conv_transpose2d`` (same forward and backward)."""

    @staticmethod
    def forward(input, weight, bias, stride, padding, output_padding, dilation, groups):
        return conv_transpose2d_op(input, weight, bias, stride, padding, output_padding, dilation, groups)

    setup_context = staticmethod(_op_setup_context)
    backward = staticmethod(_op_backward)


# --------------------------------------------------------------------------------------- public API
def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """``torch.nn.functional.conv_transpose2d`` on cnnkern kernels (same arguments and order, autograd).

    ``weight`` is (C_in, C_out/groups, kH, kW); 3-D input is treated as one unbatched image. Under
    ``torch.autocast`` it runs in the autocast dtype, as ATen's does.
    """
    if _autocast.any_enabled():
        input, weight, bias = _autocast.cast(_autocast.autocast_dtype(input), input, weight, bias)
    if not _route.eager(input):
        return _traced(input, weight, bias, stride, padding, output_padding, groups, dilation)
    try:
        plan = plan_for(input, weight, bias, stride, padding, output_padding, dilation, groups)
    except AttributeError:
        check_tensors(input, weight, bias, _OP)
        raise
    route = plan.route
    if route == "aten":
        _backend.record(plan.fwd_choice)
        s, p, op, g, d = plan.user_args
        return F.conv_transpose2d(input, weight, bias, s, p, op, g, d)
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    if route == "cuda" and not _route.transformed():
        _backend.record(plan.fwd_choice)
        s, p, op, g, d = plan.user_args
        out = torch.ops.cnnkern_cuda.conv_transpose2d.default(x, weight, bias, s, p, op, d, g)
    else:
        out = transpose_forward(x, weight, bias, plan)
    return out.squeeze(0) if unbatched else out


def _traced(input, weight, bias, stride, padding, output_padding, groups, dilation) -> Tensor:
    check_tensors(input, weight, bias, _OP)
    unbatched = input.dim() == 3
    x = _batched(input)
    spec, _ = conv_transpose2d_spec(x.shape, weight.shape, None if bias is None else bias.shape, stride, padding,
                                    output_padding, dilation, groups)
    out_pad = [spec.padding[0] - spec.padding[1], spec.padding[2] - spec.padding[3]]
    out = conv_transpose2d_op(x, weight, bias, list(spec.stride), list(spec.pad_tl), out_pad, list(spec.dilation),
                              spec.groups)
    return out.squeeze(0) if unbatched else out


def explain_conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                             output_padding=0, groups: int = 1, dilation=1):
    """Which backend the forward and each gradient would use here, and why not the others."""
    check_tensors(input, weight, bias, _OP)
    plan = plan_for(_batched(input), weight, bias, stride, padding, output_padding, dilation, groups)
    report = DispatchReport({plan.fwd_choice.op: plan.fwd_choice})
    for kernel in ("fwd", "bwd_weight"):
        choice = plan.eq.choices[kernel]
        report[choice.op] = choice
    return report
