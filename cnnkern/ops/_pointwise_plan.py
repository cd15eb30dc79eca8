"""The grouped 1x1 conv's plan and its differentiable kernels, shared by the ops that store into a channel map.

``group_pointwise_conv2d`` writes its channels at ``ChannelMap.dest(c)`` of its own output;
``shuffle_cat_pointwise(2)`` write one or two such convs (and a passthrough) into one shared output. Each conv
is a ``PointwisePlan``: the spec, the backends of its three kernels and the layouts.

The gradient of one conv, seen through the map: ``gz = scale * mask * G[:, dest(c)]`` (mask: stored output
> 0 when the epilogue had a ReLU), then the usual grouped 1x1 input and weight gradients of ``gz``. Both are
bilinear in (G, weight) and (G, input), with the mask and scale as constants, so their own derivatives are
the same kernels again (``_BackwardInput``/``_BackwardWeight``), plus the *linear* forward (no bias, shift or
ReLU; the mask applied after) for the derivative with respect to G.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnkern.ops import _route, autotune
from cnnkern.ops import backend as _backend
from cnnkern.problem import memory as _memory
from cnnkern.problem.channel_map import ChannelMap, GroupPointwiseProblem, GroupPointwiseSpec

_FAMILY = "group_pointwise_conv2d"
_KERNELS = ("fwd", "bwd_input", "bwd_weight")


def _kernel(choice):
    if choice.backend is not None:
        return _backend.implementation(choice)

    def unavailable(*args):
        choice.raise_if_none()

    return unavailable


class PointwisePlan:
    """One grouped 1x1 conv storing into ``spec.channels`` of a ``total``-channel output."""

    __slots__ = (
        "_linear",
        "bwd_input",
        "bwd_weight",
        "c_out",
        "choices",
        "fwd",
        "in_format",
        "in_shape",
        "spec",
        "w_format",
        "w_shape",
    )

    def __init__(self, input, weight, operands, spec: GroupPointwiseSpec, forced):
        self.spec = spec
        self.in_shape, self.w_shape = tuple(input.shape), tuple(weight.shape)
        self.in_format, self.w_format = _memory.format_of(input), _memory.format_of(weight)
        self.c_out = weight.shape[0]
        problem = GroupPointwiseProblem(tuple(t for t in operands if t is not None), spec)
        self.choices = {k: _backend.choose(_FAMILY, f"{_FAMILY}_{k}", problem, input.device, forced)
                        for k in _KERNELS}
        if autotune.applies(input.device, forced):
            self.choices = _measured_choices(self, input, weight, operands, problem)
        self.fwd, self.bwd_input, self.bwd_weight = (_kernel(self.choices[k]) for k in _KERNELS)
        self._linear = None

    @property
    def partial(self) -> bool:
        """The conv fills only some channels of its output (a branch of a shuffled concat)."""
        return self.spec.channels.total != self.c_out

    def linear(self) -> PointwisePlan:
        """The same conv without its ReLU (bias and shift are simply not passed): the derivative in G."""
        if self._linear is None:
            twin = object.__new__(PointwisePlan)
            for name in PointwisePlan.__slots__:
                setattr(twin, name, getattr(self, name))
            twin.spec = GroupPointwiseSpec(self.spec.groups, self.spec.channels, False)
            twin._linear = twin
            self._linear = twin
        return self._linear

    # ---- kernels (batched tensors; outputs allocated here)
    def forward_into(self, x, w, b, scale, shift, out: Tensor) -> bool:
        """Write this conv's channels into ``out``; False when there was nothing to compute."""
        _backend.record(self.choices["fwd"])
        if x.shape[0] * x.shape[2] * x.shape[3] == 0 or w.shape[0] == 0:
            return False
        self.fwd(x, w, b, scale, shift, out, self.spec)
        return True

    def linear_output(self, x, w, scale, memory_format) -> Tensor:
        out = self.allocate_output(x, memory_format)
        if not self.forward_into(x, w, None, scale, None, out) and not self.partial:
            out.zero_()
        return out

    def allocate_output(self, like: Tensor, memory_format) -> Tensor:
        shape = (like.shape[0], self.spec.channels.total, like.shape[2], like.shape[3])
        out = _memory.empty(shape, like, memory_format)
        return out.zero_() if self.partial else out

    def backward_input(self, grad, w, output, scale) -> Tensor:
        shape = (grad.shape[0], self.in_shape[1], grad.shape[2], grad.shape[3])
        grad_in = _memory.empty(shape, grad, self.in_format)
        if grad_in.numel() == 0:
            return grad_in
        if w.shape[0] == 0:
            return grad_in.zero_()
        self.bwd_input(grad, w, output, scale, grad_in, self.spec)
        return grad_in

    def backward_weight(self, grad, x, output, scale) -> Tensor:
        grad_w = _memory.empty(self.w_shape, x, self.w_format)
        if grad_w.numel() == 0:
            return grad_w
        if x.shape[0] * x.shape[2] * x.shape[3] == 0:
            return grad_w.zero_()
        self.bwd_weight(grad, x, output, scale, grad_w, self.spec)
        return grad_w

    def backward_bias(self, grad, output, scale) -> Tensor:
        g = grad if output is None else torch.where(output > 0, grad, 0)
        grad_b = g.sum((0, 2, 3)).index_select(0, self.spec.channels.dest_index(self.c_out, grad.device))
        if scale is not None:  # (an fp32 scale with fp16/bf16 activations: multiplied in fp32, rounded once)
            grad_b = (grad_b.to(scale.dtype) * scale).to(grad.dtype)
        return grad_b


def aten_pointwise(input, weight, bias, scale, shift, groups, relu) -> Tensor:
    """The reference route: ATen's conv, the epilogue on an fp32 (fp64) copy rounded once, ATen's autograd."""
    z = F.conv2d(input, weight, bias, groups=groups)
    if scale is None and shift is None:
        return F.relu(z) if relu else z
    acc = torch.float64 if z.dtype == torch.float64 else torch.float32
    e = z.to(acc)
    if scale is not None:
        e = e * scale.to(acc).view(1, -1, 1, 1)
    if shift is not None:
        e = e + shift.to(acc).view(1, -1, 1, 1)
    if relu:
        e = F.relu(e)
    return e.to(z.dtype)


def _measured_choices(plan: PointwisePlan, input, weight, operands, problem) -> dict:
    """Each kernel timed on every accepting backend (scratch activations, the caller's epilogue vectors). The
    reference forward of a whole output is ATen's conv + epilogue + channel_shuffle; the rest time the
    reference kernels."""
    from cnnkern.ops.registry import BACKENDS

    _x, _w, b, scale, shift = operands
    like = {"dtype": input.dtype, "device": input.device}
    spec, cm = plan.spec, plan.spec.channels
    x = torch.empty(plan.in_shape, memory_format=plan.in_format, **like).normal_()
    w = torch.empty(plan.w_shape, memory_format=plan.w_format, **like).normal_()
    out_shape = (plan.in_shape[0], cm.total, plan.in_shape[2], plan.in_shape[3])
    out = torch.empty(out_shape, **like)
    g = torch.randn(out_shape, **like)
    output = torch.randn(out_shape, **like) if spec.relu else None
    gi = torch.empty(plan.in_shape, memory_format=plan.in_format, **like)
    gw = torch.empty(plan.w_shape, memory_format=plan.w_format, **like)
    calls = {"fwd": (x, w, b, scale, shift, out, spec), "bwd_input": (g, w, output, scale, gi, spec),
             "bwd_weight": (g, x, output, scale, gw, spec)}

    def aten_forward():
        y = aten_pointwise(x, w, b, scale, shift, spec.groups, spec.relu)
        return F.channel_shuffle(y, cm.shuffle_groups) if cm.shuffle_groups > 1 else y

    def candidate(k, kernel):
        if kernel is None:
            if k == "fwd" and not plan.partial:
                return aten_forward
            kernel = BACKENDS["reference"].kernel(_FAMILY, f"{_FAMILY}_{k}")
        return lambda: kernel(*calls[k])

    signature = (f"x{plan.in_shape}:{plan.in_format}|w{plan.w_shape}|{input.dtype}|"
                 f"{[None if t is None else t.dtype for t in (b, scale, shift)]}|{spec}")
    return {k: autotune.choose(_FAMILY, f"{_FAMILY}_{k}", problem, input.device, plan.choices[k], signature,
                               lambda backend, kernel, k=k: candidate(k, kernel))
            for k in _KERNELS}


# --------------------------------------------------------------------------- differentiable kernel calls
def linear_forward(x, w, scale, output, plan: PointwisePlan, memory_format) -> Tensor:
    """mask * P(scale * conv(x, w)) into a zeroed output-sized tensor: d(gradient)/dG applied to x."""
    lin = plan.linear()
    if _route.needs_autograd(x, w):
        out = _route.apply(_LinearForward, x, w, scale, lin, memory_format)
    else:
        out = lin.linear_output(x, w, scale, memory_format)
    return out if output is None else torch.where(output > 0, out, 0)


@_route.dual_style
class _LinearForward(torch.autograd.Function):
    @staticmethod
    def forward(x, w, scale, plan, memory_format):
        return plan.linear_output(x, w, scale, memory_format)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, scale, plan, _fmt = inputs
        ctx.save_for_backward(x, w, scale)
        ctx.plan = plan

    @staticmethod
    def backward(ctx, g):
        x, w, scale = ctx.saved_tensors
        plan = ctx.plan
        return (backward_input(g, w, None, scale, plan) if ctx.needs_input_grad[0] else None,
                backward_weight(g, x, None, scale, plan) if ctx.needs_input_grad[1] else None, None, None, None)


def backward_input(grad, w, output, scale, plan: PointwisePlan) -> Tensor:
    if _route.needs_autograd(grad, w):
        return _route.apply(_BackwardInput, grad, w, output, scale, plan)
    return plan.backward_input(grad, w, output, scale)


def backward_weight(grad, x, output, scale, plan: PointwisePlan) -> Tensor:
    if _route.needs_autograd(grad, x):
        return _route.apply(_BackwardWeight, grad, x, output, scale, plan)
    return plan.backward_weight(grad, x, output, scale)


@_route.dual_style
class _BackwardInput(torch.autograd.Function):
    @staticmethod
    def forward(grad, w, output, scale, plan):
        return plan.backward_input(grad, w, output, scale)

    @staticmethod
    def setup_context(ctx, inputs, out):
        grad, w, output, scale, plan = inputs
        ctx.save_for_backward(grad, w, output, scale)
        ctx.plan = plan
        ctx.grad_format = _memory.format_of(grad)

    @staticmethod
    def backward(ctx, h):
        grad, w, output, scale = ctx.saved_tensors
        plan = ctx.plan
        need_g, need_w = ctx.needs_input_grad[:2]
        return (linear_forward(h, w, scale, output, plan, ctx.grad_format) if need_g else None,
                backward_weight(grad, h, output, scale, plan) if need_w else None, None, None, None)


@_route.dual_style
class _BackwardWeight(torch.autograd.Function):
    @staticmethod
    def forward(grad, x, output, scale, plan):
        return plan.backward_weight(grad, x, output, scale)

    @staticmethod
    def setup_context(ctx, inputs, out):
        grad, x, output, scale, plan = inputs
        ctx.save_for_backward(grad, x, output, scale)
        ctx.plan = plan
        ctx.grad_format = _memory.format_of(grad)

    @staticmethod
    def backward(ctx, h):
        grad, x, output, scale = ctx.saved_tensors
        plan = ctx.plan
        need_g, need_x = ctx.needs_input_grad[:2]
        return (linear_forward(x, h, scale, output, plan, ctx.grad_format) if need_g else None,
                backward_input(grad, h, output, scale, plan) if need_x else None, None, None, None)


def pointwise_grads(grad, x, w, output, scale, plan: PointwisePlan, needs):
    """(grad_input, grad_weight, grad_bias) of one conv whose channels sit at ``plan.spec.channels`` of grad;
    ``output`` is the saved (whole) output when the epilogue had a ReLU, else None."""
    return (backward_input(grad, w, output, scale, plan) if needs[0] else None,
            backward_weight(grad, x, output, scale, plan) if needs[1] else None,
            plan.backward_bias(grad, output, scale) if needs[2] else None)


def _placed(vec, plan: PointwisePlan, like) -> Tensor:
    """A per-output-channel vector broadcast over pixels at its stored channels (zero elsewhere)."""
    cm = plan.spec.channels
    placed = vec.new_zeros(cm.total).index_copy(0, cm.dest_index(plan.c_out, vec.device), vec)
    return placed.view(1, -1, 1, 1).expand(like.shape[0], cm.total, like.shape[2], like.shape[3])


def _scaled(vec, scale):
    return vec if scale is None else (vec.to(scale.dtype) * scale).to(vec.dtype)


def pointwise_tangent(tangents, primals, output, plan: PointwisePlan, memory_format) -> Tensor | None:
    """The forward-mode derivative of one conv's stored channels (zero elsewhere), ReLU mask included.

    ``tangents`` and ``primals`` are (x, w, bias, scale, shift); the output is
    mask * P((conv(x, w) + bias) * scale + shift), so every input contributes one linear term.
    """
    dx, dw, db, dscale, dshift = tangents
    x, w, b, scale, _shift = primals
    terms = []
    if dx is not None:
        terms.append(linear_forward(dx, w, scale, None, plan, memory_format))
    if dw is not None:
        terms.append(linear_forward(x, dw, scale, None, plan, memory_format))
    if db is not None:
        terms.append(_placed(_scaled(db, scale), plan, x))
    if dscale is not None:
        terms.append(linear_forward(x, w, dscale, None, plan, memory_format))
        if b is not None:
            terms.append(_placed(_scaled(b, dscale), plan, x))
    if dshift is not None:
        terms.append(_placed(dshift.to(x.dtype), plan, x))
    if not terms:
        return None
    out = terms[0]
    for term in terms[1:]:
        out = out + term
    return out if output is None else torch.where(output > 0, out, 0)


def channel_map_plan_choice(src, cmap: ChannelMap, forced):
    """The backend of the channel-permutation kernel (the passthrough of a shuffled concat, channel_shuffle)."""
    choice = _backend.choose("channel_shuffle", "channel_shuffle", GroupPointwiseProblem((src,), cmap), src.device,
                             forced)
    return choice, _kernel(choice)
