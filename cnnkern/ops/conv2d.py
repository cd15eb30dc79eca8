"""conv2d (direct and depthwise): the public function, its eager routes, custom ops and autograd.

One problem, three kernels: forward, input gradient, weight gradient. A plan (``ConvPlan``) records, for one
problem signature, the validated spec, the output layouts and the backend of each kernel; the public
function finds it in the plan cache and runs one of the routes described in ``cnnkern.ops._route``.

Gradients are convolutions themselves, so each of the three kernels is differentiable in terms of the
other two (``_Forward``, ``_BackwardInput``, ``_BackwardWeight``): double backward and forward-mode AD run on
cnnkern's kernels. The ``torch.ops.cnnkern.conv2d*`` ops get the same formulas through the dispatcher.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnkern.ops import _autocast, _route, autotune
from cnnkern.ops import backend as _backend
from cnnkern.ops._library import define
from cnnkern.problem import memory as _memory
from cnnkern.problem.conv2d import (
    Conv2dProblem,
    Conv2dSpec,
    check_tensors,
    conv2d_spec,
    kernel_family,
)
from cnnkern.reference import conv2d as reference_conv2d

__all__ = ["Conv2dFunction", "conv2d", "explain_conv2d"]

_KERNELS = ("fwd", "bwd_input", "bwd_weight")


def _batched_shape(input_shape, op: str = "conv2d"):
    if len(input_shape) not in (3, 4):
        raise RuntimeError(f"Expected 3D (unbatched) or 4D (batched) input to {op}, but got input of size: "
                           f"{list(input_shape)}")
    return (1, *input_shape) if len(input_shape) == 3 else tuple(input_shape)


def check_spatial(input_shape: Sequence[int]) -> None:
    """ATen's rule: an empty input is allowed only through its batch or channel dimension."""
    n, c, h, w = input_shape
    if (h == 0 or w == 0) and n != 0 and c != 0:
        raise RuntimeError("Only zero batch or zero channel inputs are supported, but got input shape: "
                           f"{list(input_shape)}")


def out_channels(weight_shape: Sequence[int]) -> int:
    """ATen returns no output channels when the weight has no input channels (an (N, 0, H', W') output)."""
    return 0 if weight_shape[1] == 0 else weight_shape[0]


class ConvPlan:
    """One conv2d problem signature, validated, with a backend for each kernel (see the module docstring).

    ``family`` is the kernel family (``conv2d`` or ``depthwise_conv2d``); ``choices`` maps each kernel to
    its ``Choice``. Kernels that no backend can run raise when called, not when planned: an inference-only
    caller must not fail because of a missing weight-gradient kernel.
    """

    __slots__ = (
        "bwd_input",
        "bwd_weight",
        "choices",
        "family",
        "fwd",
        "in_format",
        "in_shape",
        "out_format",
        "out_shape",
        "route",
        "spec",
        "w_format",
        "w_shape",
    )

    def __init__(self, input, weight, bias, spec: Conv2dSpec, in_shape, forced):
        self.spec = spec
        self.in_shape = tuple(in_shape)
        self.w_shape = tuple(weight.shape)
        self.family = kernel_family("conv2d", in_shape[1], weight.shape, spec.groups)
        self.out_shape = (in_shape[0], out_channels(weight.shape), *spec.out_hw)
        self.out_format = _memory.conv_output_format(input, weight)
        self.in_format = _memory.format_of(input)
        self.w_format = _memory.format_of(weight)
        operands = (input, weight) if bias is None else (input, weight, bias)
        problem = Conv2dProblem(operands, spec)
        self.choices = {k: _backend.choose(self.family, f"{self.family}_{k}", problem, input.device, forced)
                        for k in _KERNELS}
        if autotune.applies(input.device, forced):
            self.choices = _measured_choices(self, input, weight, bias, problem)
        self.fwd, self.bwd_input, self.bwd_weight = (_kernel(self.choices[k]) for k in _KERNELS)
        self.route = _pick_route(self.choices.values(), "conv2d")
        if self.route == "aten" and reference_conv2d.weight_grad_upcasts(
                input.device, input.dtype, _memory.suggests_channels_last(input) or
                _memory.suggests_channels_last(weight)):
            self.route = "python"  # ATen's own autograd would run its faulty weight gradient (see there)

    # ---- the three kernels on already-batched tensors; outputs allocated here, in ATen's layouts
    def forward(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        _backend.record(self.choices["fwd"])
        out = _memory.empty(self.out_shape, x, self.out_format)
        if out.numel() != 0:
            self.fwd(x, w, b, out, self.spec)
        return out

    def backward_input(self, grad: Tensor, w: Tensor) -> Tensor:
        grad_in = _memory.empty(self.in_shape, grad, self.in_format)
        if grad_in.numel() == 0:
            return grad_in
        if grad.numel() == 0 or w.numel() == 0:
            return grad_in.zero_()
        self.bwd_input(grad, w, grad_in, self.spec)
        return grad_in

    def backward_weight(self, grad: Tensor, x: Tensor) -> Tensor:
        grad_w = _memory.empty(self.w_shape, x, self.w_format)
        if grad_w.numel() == 0:
            return grad_w
        if grad.numel() == 0 or x.numel() == 0:
            return grad_w.zero_()
        self.bwd_weight(grad, x, grad_w, self.spec)
        return grad_w

    def backward_bias(self, grad: Tensor) -> Tensor:
        if grad.shape[1] != self.w_shape[0]:  # no input channels: no output channels, a zero bias gradient
            return grad.new_zeros(self.w_shape[0])
        return grad.sum((0, 2, 3))


def _kernel(choice: _backend.Choice):
    if choice.backend is not None:
        return _backend.implementation(choice)

    def unavailable(*args):
        choice.raise_if_none()

    return unavailable


def _pick_route(choices, cpp_op: str | None) -> str:
    return _route.route_for({c.backend for c in choices}, cpp_op)


def _measured_choices(plan: ConvPlan, input, weight, bias, problem) -> dict:
    """Each kernel timed on every backend that accepts it, on scratch tensors of the problem's shapes and
    layouts; the reference candidate is the ATen call itself (what the aten route would run)."""
    like = {"dtype": input.dtype, "device": input.device}
    x = torch.empty(plan.in_shape, memory_format=plan.in_format, **like).normal_()
    w = torch.empty(plan.w_shape, memory_format=plan.w_format, **like).normal_()
    b = None if bias is None else torch.randn(plan.w_shape[0], **like)
    out = torch.empty(plan.out_shape, memory_format=plan.out_format, **like)
    g = torch.empty(plan.out_shape, memory_format=plan.out_format, **like).normal_()
    gi = torch.empty(plan.in_shape, memory_format=plan.in_format, **like)
    gw = torch.empty(plan.w_shape, memory_format=plan.w_format, **like)
    s = plan.spec
    reference = {
        "fwd": lambda: _aten(x, w, b, s),
        "bwd_input": lambda: _conv_backward(g, gi, w, s, (True, False, False)),
        "bwd_weight": lambda: _conv_backward(g, x, gw, s, (False, True, False)),
    }
    calls = {"fwd": (x, w, b, out, s), "bwd_input": (g, w, gi, s), "bwd_weight": (g, x, gw, s)}
    signature = (f"x{tuple(plan.in_shape)}:{plan.in_format}|w{tuple(plan.w_shape)}:{plan.w_format}|"
                 f"{input.dtype}|bias={bias is not None}|{s}")
    return {k: autotune.choose(plan.family, f"{plan.family}_{k}", problem, input.device, plan.choices[k], signature,
                               lambda b, kernel, k=k: reference[k] if kernel is None else
                               (lambda: kernel(*calls[k])))
            for k in _KERNELS}


def _conv_backward(grad, input, weight, spec: Conv2dSpec, mask):
    """ATen's own convolution backward for one of the two gradients (explicit padding for asymmetric)."""
    if not spec.symmetric:
        top, bottom, left, right = spec.padding
        input = F.pad(input, (left, right, top, bottom))
        return torch.ops.aten.convolution_backward(grad, input, weight, None, spec.stride, (0, 0), spec.dilation,
                                                   False, (0, 0), spec.groups, mask)
    return torch.ops.aten.convolution_backward(grad, input, weight, None, spec.stride, spec.pad_tl, spec.dilation,
                                               False, (0, 0), spec.groups, mask)


# --------------------------------------------------------------------------- differentiable kernel calls
# Each takes the plan of the convolution it belongs to; grad mode decides whether to record a graph.
def forward(x, w, b, plan: ConvPlan) -> Tensor:
    if _route.needs_autograd(x, w, b):
        return _route.apply(_Forward, x, w, b, plan)
    return plan.forward(x, w, b)


def backward_input(grad, w, plan: ConvPlan) -> Tensor:
    if _route.needs_autograd(grad, w):
        return _route.apply(_BackwardInput, grad, w, plan)
    return plan.backward_input(grad, w)


def backward_weight(grad, x, plan: ConvPlan) -> Tensor:
    if _route.needs_autograd(grad, x):
        return _route.apply(_BackwardWeight, grad, x, plan)
    return plan.backward_weight(grad, x)


def _add(a, b):
    return b if a is None else (a if b is None else a + b)


@_route.dual_style
class _Forward(torch.autograd.Function):
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
        return (backward_input(grad, w, plan) if need_x else None,
                backward_weight(grad, x, plan) if need_w else None,
                plan.backward_bias(grad) if need_b else None, None)

    @staticmethod
    def jvp(ctx, dx, dw, db, _plan):
        x, w = ctx.saved_tensors
        plan = ctx.plan
        out = forward(dx, w, None, plan) if dx is not None else None
        out = _add(out, forward(x, dw, None, plan) if dw is not None else None)
        if db is not None:
            out = _add(out, db.view(1, -1, 1, 1).expand(plan.out_shape))
        return out


def _bilinear(name: str, kernel: str, d_first, d_second, call):
    """A Function for ``out = plan.<kernel>(a, b)``, bilinear in (a, b): its backward is ``d_first(h, b, plan)``
    for a and ``d_second(a, h, plan)`` for b, its jvp ``call(da, b) + call(a, db)`` — both convolutions again,
    so every order of derivative runs on cnnkern's kernels."""

    def forward(a, b, plan):
        return getattr(plan, kernel)(a, b)

    def setup_context(ctx, inputs, output):
        a, b, plan = inputs
        ctx.save_for_backward(a, b)
        ctx.save_for_forward(a, b)
        ctx.plan = plan

    def backward(ctx, h):
        a, b = ctx.saved_tensors
        return (d_first(h, b, ctx.plan) if ctx.needs_input_grad[0] else None,
                d_second(a, h, ctx.plan) if ctx.needs_input_grad[1] else None, None)

    def jvp(ctx, da, db, _plan):
        a, b = ctx.saved_tensors
        out = call(da, b, ctx.plan) if da is not None else None
        return _add(out, call(a, db, ctx.plan) if db is not None else None)

    methods = {"forward": forward, "setup_context": setup_context, "backward": backward, "jvp": jvp}
    return _route.dual_style(type(name, (torch.autograd.Function,), {k: staticmethod(f) for k, f in methods.items()}))


# grad_in = B(grad, w): d/dgrad is the forward conv of h with w, d/dw the weight gradient of (grad, h).
_BackwardInput = _bilinear("_BackwardInput", "backward_input", lambda h, w, plan: forward(h, w, None, plan),
                           lambda grad, h, plan: backward_weight(grad, h, plan),
                           lambda a, b, plan: backward_input(a, b, plan))
# grad_w = W(grad, x): d/dgrad is the forward conv of x with h, d/dx the input gradient of (grad, h).
_BackwardWeight = _bilinear("_BackwardWeight", "backward_weight", lambda h, x, plan: forward(x, h, None, plan),
                            lambda grad, h, plan: backward_input(grad, h, plan),
                            lambda a, b, plan: backward_weight(a, b, plan))


# --------------------------------------------------------------------------------------------- plans
def plan_for(input, weight, bias, stride, padding, dilation, groups, in_shape=None) -> ConvPlan:
    """The cached plan of a conv2d (``in_shape`` overrides the input's shape, e.g. for a grad op). A 3-D
    (unbatched) input is planned as its batch of one."""
    state = _backend.dispatch_state()
    shape = in_shape if in_shape is not None else input.shape
    key = ("conv2d", shape, input.stride(), input.dtype, input.device, weight.shape, weight.stride(),
           weight.dtype, weight.device, None if bias is None else (bias.shape, bias.dtype, bias.device),
           _route.hashable(stride), _route.hashable(padding), _route.hashable(dilation), groups, state)
    return _backend.cached_plan(key, lambda: _build(input, weight, bias, stride, padding, dilation, groups,
                                                   shape, state))


def _build(input, weight, bias, stride, padding, dilation, groups, shape, state) -> ConvPlan:
    check_tensors(input, weight, bias)
    shape = _batched_shape(shape)
    if input.dim() == 3:
        input = input.unsqueeze(0)
    spec = conv2d_spec(shape, weight.shape, None if bias is None else bias.shape, stride, padding, dilation,
                       groups)
    check_spatial(shape)
    return ConvPlan(input, weight, bias, spec, shape, state[0])


# ---------------------------------------------------------------------------------------- custom ops
def _op_forward(input, weight, bias, stride, padding, dilation, groups):
    return plan_for(input, weight, bias, stride, padding, dilation, groups).forward(input, weight, bias)


def _op_forward_fake(input, weight, bias, stride, padding, dilation, groups):
    check_tensors(input, weight, bias)
    spec = conv2d_spec(input.shape, weight.shape, None if bias is None else bias.shape, stride, padding,
                       dilation, groups)
    shape = (input.shape[0], out_channels(weight.shape), *spec.out_hw)
    return _memory.empty(shape, input, _memory.conv_output_format(input, weight))


def _grad_plan(grad_output, weight, input_size, stride, padding, dilation, groups, op) -> ConvPlan:
    """The plan of the forward problem a gradient op belongs to (``grad_output`` stands in for its input)."""
    check_tensors(grad_output, weight, None, op)
    plan = plan_for(grad_output, weight, None, stride, padding, dilation, groups, in_shape=tuple(input_size))
    expected = plan.out_shape
    if tuple(grad_output.shape) != tuple(expected):
        raise RuntimeError(f"conv2d backward: expected grad_output of size {list(expected)}, "
                           f"got {list(grad_output.shape)}")
    return plan


def _op_backward_input(grad_output, weight, input_size, stride, padding, dilation, groups, channels_last):
    plan = _grad_plan(grad_output, weight, input_size, stride, padding, dilation, groups,
                      "conv2d_backward_input")
    grad_in = _memory.empty(tuple(input_size), grad_output, _memory.memory_format(channels_last))
    if grad_in.numel() == 0:
        return grad_in
    if grad_output.numel() == 0 or weight.numel() == 0:
        return grad_in.zero_()
    plan.bwd_input(grad_output, weight, grad_in, plan.spec)
    return grad_in


def _op_backward_input_fake(grad_output, weight, input_size, stride, padding, dilation, groups, channels_last):
    return _memory.empty(tuple(input_size), grad_output, _memory.memory_format(channels_last))


def _op_backward_weight(grad_output, input, weight_size, stride, padding, dilation, groups):
    check_tensors(grad_output, input, None, "conv2d_backward_weight")
    # The plan needs the weight's shape, dtype and device only: a zero-stride view allocates nothing.
    w_proxy = input.new_empty(()).expand(tuple(weight_size))
    plan = plan_for(input, w_proxy, None, stride, padding, dilation, groups)
    if tuple(grad_output.shape) != tuple(plan.out_shape):
        raise RuntimeError(f"conv2d backward: expected grad_output of size {list(plan.out_shape)}, "
                           f"got {list(grad_output.shape)}")
    grad_w = _memory.empty(tuple(weight_size), input, torch.contiguous_format)
    if grad_w.numel() == 0:
        return grad_w
    if grad_output.numel() == 0 or input.numel() == 0:
        return grad_w.zero_()
    plan.bwd_weight(grad_output, input, grad_w, plan.spec)
    return grad_w


def _op_backward_weight_fake(grad_output, input, weight_size, stride, padding, dilation, groups):
    return _memory.empty(tuple(weight_size), input, torch.contiguous_format)


def _op_setup_context(ctx, inputs, output):
    input, weight, _bias, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(input, weight)
    ctx.conf = (list(stride), list(padding), list(dilation), groups)
    ctx.input_channels_last = _memory.suggests_channels_last(input)
    ctx.c_out = weight.shape[0]


def _op_backward(ctx, grad):
    input, weight = ctx.saved_tensors
    conf = ctx.conf
    need_in, need_w, need_b = ctx.needs_input_grad[:3]
    grad_in = grad_w = grad_b = None
    if need_in:
        grad_in = conv2d_backward_input_op(grad, weight, list(input.shape), *conf, ctx.input_channels_last)
    if need_w:
        grad_w = conv2d_backward_weight_op(grad, input, list(weight.shape), *conf)
    if need_b:
        grad_b = grad.sum((0, 2, 3)) if grad.shape[1] == ctx.c_out else grad.new_zeros(ctx.c_out)
    return grad_in, grad_w, grad_b, None, None, None, None


def _op_bwd_input_setup(ctx, inputs, output):
    grad, weight, _input_size, *conf = inputs
    ctx.save_for_backward(grad, weight)
    ctx.conf = conf[:4]


def _op_bwd_input_backward(ctx, h):
    grad, weight = ctx.saved_tensors
    dgrad = conv2d_op(h, weight, None, *ctx.conf) if ctx.needs_input_grad[0] else None
    dw = conv2d_backward_weight_op(grad, h, list(weight.shape), *ctx.conf) if ctx.needs_input_grad[1] else None
    return dgrad, dw, None, None, None, None, None, None


def _op_bwd_weight_setup(ctx, inputs, output):
    grad, input, _weight_size, *conf = inputs
    ctx.save_for_backward(grad, input)
    ctx.conf = conf
    ctx.input_channels_last = _memory.suggests_channels_last(input)


def _op_bwd_weight_backward(ctx, h):
    grad, input = ctx.saved_tensors
    dgrad = conv2d_op(input, h, None, *ctx.conf) if ctx.needs_input_grad[0] else None
    dx = (conv2d_backward_input_op(grad, h, list(input.shape), *ctx.conf, ctx.input_channels_last)
          if ctx.needs_input_grad[1] else None)
    return dgrad, dx, None, None, None, None, None


_CONF = "int[2] stride, int[4] padding, int[2] dilation, int groups"
conv2d_op = define(f"conv2d(Tensor input, Tensor weight, Tensor? bias, {_CONF}) -> Tensor",
                   _op_forward, _op_forward_fake, _op_backward, _op_setup_context)
conv2d_backward_input_op = define(
    f"conv2d_backward_input(Tensor grad_output, Tensor weight, SymInt[4] input_size, {_CONF}, "
    "bool channels_last) -> Tensor",
    _op_backward_input, _op_backward_input_fake, _op_bwd_input_backward, _op_bwd_input_setup)
conv2d_backward_weight_op = define(
    f"conv2d_backward_weight(Tensor grad_output, Tensor input, SymInt[4] weight_size, {_CONF}) -> Tensor",
    _op_backward_weight, _op_backward_weight_fake, _op_bwd_weight_backward, _op_bwd_weight_setup)


class Conv2dFunction(torch.autograd.Function):
    """The public autograd Function over the ``torch.ops.cnnkern.conv2d*`` ops (normalised arguments:
    ``padding`` as 4 sides (top, bottom, left, right))."""

    @staticmethod
    def forward(input, weight, bias, stride, padding, dilation, groups):
        return conv2d_op(input, weight, bias, stride, padding, dilation, groups)

    setup_context = staticmethod(_op_setup_context)
    backward = staticmethod(_op_backward)


# --------------------------------------------------------------------------------------- public API
def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """``torch.nn.functional.conv2d`` on cnnkern kernels (same arguments, same result, autograd, autocast).

    ``padding`` also takes 4 explicit sides (top, bottom, left, right) and ``'full'`` (``dilation * (k - 1)``
    on every side: every position where kernel and input overlap gives an output).
    """
    if _autocast.any_enabled():
        input, weight, bias = _autocast.cast(_autocast.autocast_dtype(input), input, weight, bias)
    if not _route.eager(input):
        return _traced(input, weight, bias, stride, padding, dilation, groups)
    try:
        plan = plan_for(input, weight, bias, stride, padding, dilation, groups)
    except AttributeError:  # not tensors: the checks say so in PyTorch's words
        check_tensors(input, weight, bias)
        raise
    route = plan.route
    if route == "aten":
        _backend.record(plan.choices["fwd"])
        return _aten(input, weight, bias, plan.spec)
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    if route == "cuda" and not _route.transformed():
        _backend.record(plan.choices["fwd"])
        s = plan.spec
        out = torch.ops.cnnkern_cuda.conv2d.default(x, weight, bias, s.stride, s.padding, s.dilation, s.groups)
    else:
        out = forward(x, weight, bias, plan)
    return out.squeeze(0) if unbatched else out


def _aten(input, weight, bias, spec: Conv2dSpec) -> Tensor:
    """The reference route: ATen's own conv (and autograd); asymmetric padding ('same' with an even kernel,
    4 explicit sides) is padded first, as ATen itself does for 'same'."""
    if spec.symmetric:
        return F.conv2d(input, weight, bias, spec.stride, spec.pad_tl, spec.dilation, spec.groups)
    top, bottom, left, right = spec.padding
    return F.conv2d(F.pad(input, (left, right, top, bottom)), weight, bias, spec.stride, 0, spec.dilation,
                    spec.groups)


def _traced(input, weight, bias, stride, padding, dilation, groups) -> Tensor:
    """What ``torch.compile`` (and any dispatcher-level tracer) sees: the cnnkern ops."""
    check_tensors(input, weight, bias)
    shape = _batched_shape(input.shape)
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    spec = conv2d_spec(shape, weight.shape, None if bias is None else bias.shape, stride, padding, dilation,
                       groups)
    out = conv2d_op(x, weight, bias, list(spec.stride), list(spec.padding), list(spec.dilation), spec.groups)
    return out.squeeze(0) if unbatched else out


class DispatchReport(dict):
    """kernel name -> ``Choice``; prints as one line per kernel plus every rejected backend's reason."""

    notes: list[str]

    def __str__(self) -> str:
        return "\n".join([str(choice) for choice in self.values()] + list(getattr(self, "notes", [])))


def explain_conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                   dilation=1, groups: int = 1) -> DispatchReport:
    """Which backend each conv2d kernel (forward, input grad, weight grad) would use here, and why not others."""
    check_tensors(input, weight, bias)
    x = input.unsqueeze(0) if input.dim() == 3 else input
    plan = plan_for(x, weight, bias, stride, padding, dilation, groups)
    report = DispatchReport({f"{plan.family}_{k}": plan.choices[k] for k in _KERNELS})
    report.notes = []
    fwd = plan.choices.get("fwd")
    if fwd is not None and fwd.backend == "cuda" and plan.family == "conv2d":
        # Which CUDA forward kernel: the sm_90a wgmma mainloop or the step-1 (sm_80-class) one.
        from cnnkern.cuda.conv2d import sm90_wgmma_why_not

        why = sm90_wgmma_why_not(x, weight, groups)
        report.notes.append("  conv2d_fwd (cuda) variant: " +
                            ("sm_90a wgmma + TMA" if why is None else f"step-1 mma.sync; not sm_90a wgmma: {why}"))
    # Both gradients read grad_out, which has the layout ATen gives the forward output and its gradient
    # (plan.out_format).
    grad_out = _memory.empty(plan.out_shape, x, plan.out_format) if plan.family == "conv2d" else None
    bwd_input = plan.choices.get("bwd_input")
    if bwd_input is not None and bwd_input.backend == "cuda" and plan.family == "conv2d":
        # Each stride phase runs as the sm_90a forward over grad_out.
        from cnnkern.cuda.conv2d import sm90_dgrad_why_not

        why = sm90_dgrad_why_not(grad_out, weight, plan.spec, tuple(x.shape[2:]))
        phases = plan.spec.stride[0] * plan.spec.stride[1]
        report.notes.append("  conv2d_bwd_input (cuda) variant: " + (
            f"sm_90a wgmma forward over grad_out ({phases} stride phase{'s' if phases > 1 else ''})" if why is None
            else f"step-1 mma.sync dgrad; not the sm_90a forward: {why}"))
    bwd_weight = plan.choices.get("bwd_weight")
    if bwd_weight is not None and bwd_weight.backend == "cuda" and plan.family == "conv2d":
        from cnnkern.cuda.conv2d import sm90_wgrad_why_not

        why = sm90_wgrad_why_not(grad_out, x, groups)
        report.notes.append("  conv2d_bwd_weight (cuda) variant: " + (
            "sm_90a wgmma (MN-major operands) + TMA, split-K" if why is None
            else f"step-1 mma.sync wgrad; not sm_90a wgmma: {why}"))
    return report
