"""Fused conv + BatchNorm + activation: the public function, its routes, the custom ops and autograd.

Eval: BatchNorm folds into a per-channel scale/shift applied, with the activation, in the conv kernel's
epilogue (one kernel). Training: the conv kernel also emits per-tile channel statistics (count, mean, M2),
merged by Chan's formula on the device; one light pass normalises and activates. The backward reduces the
two per-channel sums BatchNorm needs (sum dz, sum dz*xhat) in one pass over (grad, conv output), forms the
conv's output gradient in a second, then runs the conv's own gradient kernels.

Saved for backward (eager autograd): the input, the weight and 2 x C floats; the conv output is recomputed
in the backward from them (one more conv forward) rather than kept. In a network the input is the previous
layer's output, which autograd keeps anyway, so a fused block then adds no activation of its own to the
saved memory (eager conv -> BN -> ReLU keeps the BN input and the ReLU output). ``CNNKERN_CONV_BN_SAVE=output``
(read at import) keeps the conv output instead: no recompute, one more activation per block. Under
``torch.compile`` the op's own backward keeps the conv output and the compiler's partitioner decides.

The running statistics are updated by the public function from the batch statistics the op returns (so
eager mode, ``torch.compile`` and CUDA graphs all see the same in-place update), exactly as
``F.batch_norm`` updates them: momentum-weighted, with the unbiased variance; ``momentum=None`` is the
cumulative average over ``num_batches_tracked``.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from cnnkern.ops import _autocast, _route
from cnnkern.ops import backend as _backend
from cnnkern.ops._library import define
from cnnkern.ops.conv2d import ConvPlan, _kernel, backward_input, backward_weight, check_spatial, out_channels
from cnnkern.ops.conv2d import _aten as aten_conv
from cnnkern.ops.conv2d import plan_for as conv_plan_for
from cnnkern.problem import memory as _memory
from cnnkern.problem.conv2d import Conv2dProblem, check_tensors, conv2d_spec
from cnnkern.problem.conv_bn import check_activation, check_batch_norm, combine_partials
from cnnkern.reference.conv_bn_relu import activate

__all__ = ["conv_bn_relu"]

_OP = "conv_bn_relu"

# What the eager backward keeps of the conv output (module docstring): "recompute" or "output".
SAVE_POLICIES = ("recompute", "output")
SAVE = os.environ.get("CNNKERN_CONV_BN_SAVE", "recompute")
if SAVE not in SAVE_POLICIES:
    raise ValueError(f"CNNKERN_CONV_BN_SAVE must be one of {SAVE_POLICIES}, got {SAVE!r}")


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class ConvBNPlan:
    """The conv's plan plus the backends of the fused kernels (see ``cnnkern.problem.conv_bn``)."""

    __slots__ = (
        "bwd_apply",
        "bwd_reduce",
        "choices",
        "conv",
        "fwd_act",
        "fwd_stats",
        "normalize",
        "pixels",
        "route",
    )

    def __init__(self, conv: ConvPlan, input, weight, bias, forced):
        self.conv = conv
        operands = (input, weight) if bias is None else (input, weight, bias)
        problem = Conv2dProblem(operands, conv.spec)
        fam = conv.family
        names = {"fwd_act": (fam, f"{fam}_fwd_act"), "fwd_stats": (fam, f"{fam}_fwd_stats"),
                 "normalize": (_OP, f"{_OP}_normalize"), "bwd_reduce": (_OP, f"{_OP}_bwd_reduce"),
                 "bwd_apply": (_OP, f"{_OP}_bwd_apply")}
        self.choices = {k: _backend.choose(f, n, problem, input.device, forced) for k, (f, n) in names.items()}
        for k in names:
            setattr(self, k, _kernel(self.choices[k]))
        backends = {c.backend for c in self.choices.values()} | {c.backend for c in conv.choices.values()}
        self.route = _route.route_for(backends, None)
        self.pixels = conv.out_shape[0] * conv.out_shape[2] * conv.out_shape[3]

    # ---- forward pieces (batched tensors)
    def conv_with_stats(self, x, w, b) -> tuple[Tensor, Tensor, Tensor]:
        """The conv output and the batch statistics (biased variance) of each channel."""
        _backend.record(self.choices["fwd_stats"])
        y = _memory.empty(self.conv.out_shape, x, self.conv.out_format)
        partials = self.fwd_stats(x, w, b, y, self.conv.spec)
        _n, mean, var = combine_partials(partials)
        return y, mean, var

    def conv_only(self, x, w, b) -> Tensor:
        return self.conv.forward(x, w, b)

    def normalized(self, y, a, b, activation) -> Tensor:
        out = _memory.empty(y.shape, y, self.conv.out_format)
        self.normalize(y, a, b, out, activation)
        return out

    def folded(self, x, w, b, scale, shift, activation) -> Tensor:
        _backend.record(self.choices["fwd_act"])
        out = _memory.empty(self.conv.out_shape, x, self.conv.out_format)
        self.fwd_act(x, w, b, scale, shift, out, self.conv.spec, activation)
        return out


def affine(mean, var, gamma, beta, eps) -> tuple[Tensor, Tensor, Tensor]:
    """(a, b, invstd) with BatchNorm(y) = y * a + b, in the statistics' precision (fp32 or fp64)."""
    invstd = torch.rsqrt(var + eps)
    a = invstd if gamma is None else invstd * gamma.to(invstd.dtype)
    b = -mean * a
    if beta is not None:
        b = b + beta.to(b.dtype)
    return a, b, invstd


def bn_backward(kernels, grad, y, mean, var, gamma, beta, eps, training: bool, activation):
    """(grad of the conv output y, grad of gamma, grad of beta): BatchNorm's and the activation's backward,
    on ``kernels`` (anything with ``bwd_reduce``/``bwd_apply``: a ConvBNPlan, or _BNKernels)."""
    a, b, invstd = affine(mean, var, gamma, beta, eps)
    sum_dz, sum_dz_xhat = kernels.bwd_reduce(grad, y, a, b, mean, invstd, activation)
    if training:  # the statistics depend on y: dy = a * (dz - mean(dz) - xhat * mean(dz * xhat))
        pixels = y.shape[0] * y.shape[2] * y.shape[3]
        k_one, k_xhat = -a * sum_dz / pixels, -a * sum_dz_xhat / pixels
    else:
        k_one, k_xhat = torch.zeros_like(a), torch.zeros_like(a)
    dy = _memory.empty(y.shape, y, _memory.format_of(y))
    kernels.bwd_apply(grad, y, a, b, mean, invstd, a, k_one, k_xhat, dy, activation)
    return dy, sum_dz_xhat, sum_dz


def _param_grad(value, like):
    return None if like is None else value.to(like.dtype)


@_route.dual_style
class _ConvBN(torch.autograd.Function):
    """(out, mean, var) of the fused op; mean and var are the statistics used (batch or running)."""

    @staticmethod
    def forward(x, w, bias, gamma, beta, plan, running_mean, running_var, training, eps, activation):
        return _forward(plan, x, w, bias, gamma, beta, running_mean, running_var, training, eps, activation,
                        keep_conv_output=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, bias, gamma, beta, plan, _rm, _rv, training, eps, activation = inputs
        _out, y, mean, var = output
        if SAVE == "recompute":  # the bias is a parameter, not an activation: keeping it costs nothing
            ctx.save_for_backward(x, w, bias, None, mean, var, gamma, beta)
        else:
            ctx.save_for_backward(x, w, None, y, mean, var, gamma, beta)
        ctx.conf = (plan, training, eps, activation)
        ctx.mark_non_differentiable(y, mean, var)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, _gy, _gmean, _gvar):
        x, w, bias, y, mean, var, gamma, beta = ctx.saved_tensors
        plan, training, eps, activation = ctx.conf
        if y is None:
            # The forward's conv (training: the statistics variant of the same kernel family) again. A
            # backend's kernels may sum in another order than its statistics variant did: x-hat then
            # differs from the forward's by rounding only (tested against the fp64 reference).
            y = plan.conv_only(x, w, bias)
        dy, dgamma, dbeta = bn_backward(plan, grad, y, mean, var, gamma, beta, eps, training, activation)
        needs = ctx.needs_input_grad
        return (backward_input(dy, w, plan.conv) if needs[0] else None,
                backward_weight(dy, x, plan.conv) if needs[1] else None,
                dy.sum((0, 2, 3)) if needs[2] else None,
                _param_grad(dgamma, gamma) if needs[3] else None,
                _param_grad(dbeta, beta) if needs[4] else None,
                None, None, None, None, None, None)


def _forward(plan: ConvBNPlan, x, w, bias, gamma, beta, running_mean, running_var, training, eps, activation,
             keep_conv_output: bool):
    """(out, conv output or None, mean, var): the batch statistics in training, the running ones in eval."""
    if training:
        y, mean, var = plan.conv_with_stats(x, w, bias)
        a, b, _ = affine(mean, var, gamma, beta, eps)
        return plan.normalized(y, a, b, activation), y, mean, var
    acc = _acc(x.dtype)
    mean, var = running_mean.to(acc), running_var.to(acc)
    a, b, _ = affine(mean, var, gamma, beta, eps)
    if keep_conv_output:  # a gradient will be wanted: keep the conv output for the backward
        y = plan.conv_only(x, w, bias)
        return plan.normalized(y, a, b, activation), y, mean.clone(), var.clone()
    return plan.folded(x, w, bias, a, b, activation), None, mean, var


def update_running_stats(running_mean, running_var, mean, var, factor, pixels: int) -> None:
    """F.batch_norm's update: momentum-weighted, the unbiased variance (``factor`` may be a device tensor)."""
    with torch.no_grad():
        unbiased = var * (pixels / (pixels - 1))
        running_mean.mul_(1 - factor).add_(mean.to(running_mean.dtype) * factor)
        running_var.mul_(1 - factor).add_(unbiased.to(running_var.dtype) * factor)


# --------------------------------------------------------------------------------------------- plans
def plan_for(input, weight, bias, bn, training, stride, padding, dilation, groups) -> ConvBNPlan:
    """The cached plan; building it runs every check of the problem (BatchNorm's tensors are in the key)."""
    state = _backend.dispatch_state()
    key = (_OP, input.shape, input.stride(), input.dtype, input.device, weight.shape, weight.stride(), weight.dtype,
           weight.device, *(None if t is None else (t.shape, t.dtype, t.device) for t in (bias, *bn)), training,
           _route.hashable(stride), _route.hashable(padding), _route.hashable(dilation), groups, state)
    return _backend.cached_plan(key, lambda: _build(input, weight, bias, bn, training, stride, padding, dilation,
                                                   groups, state))


def _build(input, weight, bias, bn, training, stride, padding, dilation, groups, state) -> ConvBNPlan:
    check_problem(input, weight, bias, bn, training, stride, padding, dilation, groups)
    conv = conv_plan_for(input, weight, bias, stride, padding, dilation, groups)
    return ConvBNPlan(conv, input, weight, bias, state[0])


# ---------------------------------------------------------------------------------------- custom ops
def _op_forward(input, weight, bias, bn_weight, bn_bias, running_mean, running_var, training, eps, stride, padding,
                dilation, groups, activation):
    plan = plan_for(input, weight, bias, (bn_weight, bn_bias, running_mean, running_var), training, stride, padding,
                    dilation, groups)
    out, y, mean, var = _forward(plan, input, weight, bias, bn_weight, bn_bias, running_mean, running_var, training,
                                 eps, activation, keep_conv_output=True)
    return out, y, mean, var


def _op_forward_fake(input, weight, bias, bn_weight, bn_bias, running_mean, running_var, training, eps, stride,
                     padding, dilation, groups, activation):
    check_tensors(input, weight, bias, _OP)
    spec = conv2d_spec(input.shape, weight.shape, None if bias is None else bias.shape, stride, padding,
                       dilation, groups)
    shape = (input.shape[0], out_channels(weight.shape), *spec.out_hw)
    fmt = _memory.conv_output_format(input, weight)
    stats = input.new_empty((shape[1],), dtype=_acc(input.dtype))
    return (_memory.empty(shape, input, fmt), _memory.empty(shape, input, fmt), stats, torch.empty_like(stats))


def _op_setup_context(ctx, inputs, output):
    input, weight, _b, bn_weight, bn_bias, _rm, _rv, training, eps, stride, padding, dilation, groups, act = inputs
    _out, y, mean, var = output
    ctx.save_for_backward(input, weight, y, mean, var, bn_weight, bn_bias)
    ctx.conf = (training, eps, [list(stride), list(padding), list(dilation), groups], act)


def _op_backward(ctx, grad, _gy, _gmean, _gvar):
    input, weight, y, mean, var, bn_weight, bn_bias = ctx.saved_tensors
    training, eps, conv, activation = ctx.conf
    dy, dgamma, dbeta = conv_bn_relu_bn_backward_op(grad, y, mean, var, bn_weight, bn_bias, training, eps,
                                                    activation)
    from cnnkern.ops.conv2d import conv2d_backward_input_op, conv2d_backward_weight_op

    needs = ctx.needs_input_grad
    grad_in = (conv2d_backward_input_op(dy, weight, list(input.shape), *conv, _memory.suggests_channels_last(input))
               if needs[0] else None)
    grad_w = conv2d_backward_weight_op(dy, input, list(weight.shape), *conv) if needs[1] else None
    return (grad_in, grad_w, dy.sum((0, 2, 3)) if needs[2] else None,
            _param_grad(dgamma, bn_weight) if needs[3] else None, _param_grad(dbeta, bn_bias) if needs[4] else None,
            *([None] * 9))


def _op_bn_backward(grad, y, mean, var, bn_weight, bn_bias, training, eps, activation):
    return bn_backward(_bn_plan(y), grad, y, mean, var, bn_weight, bn_bias, eps, training, activation)


class _BNKernels:
    """The two BatchNorm-backward kernels alone (the op-level backward has no conv plan at hand)."""

    def __init__(self, y, forced):
        problem = _Problem(y.dtype, y.device)
        self.choices = {k: _backend.choose(_OP, f"{_OP}_{k}", problem, y.device, forced)
                        for k in ("bwd_reduce", "bwd_apply")}
        self.bwd_reduce, self.bwd_apply = (_kernel(self.choices[k]) for k in ("bwd_reduce", "bwd_apply"))


class _Problem:
    """What the elementwise kernels' ``why_not`` looks at: dtype and device."""

    def __init__(self, dtype, device):
        self.dtype, self.device, self.tensors, self.spec = dtype, device, (), None


def _bn_plan(y) -> _BNKernels:
    state = _backend.dispatch_state()
    return _backend.cached_plan((_OP, "bn", y.dtype, y.device, state), lambda: _BNKernels(y, state[0]))


def _op_bn_backward_fake(grad, y, mean, var, bn_weight, bn_bias, training, eps, activation):
    return _memory.empty(y.shape, y, _memory.format_of(y)), torch.empty_like(mean), torch.empty_like(mean)


_SCHEMA_BN = "Tensor? bn_weight, Tensor? bn_bias, Tensor? running_mean, Tensor? running_var, bool training, float eps"
conv_bn_relu_op = define(
    f"conv_bn_relu(Tensor input, Tensor weight, Tensor? bias, {_SCHEMA_BN}, int[2] stride, int[4] padding, "
    "int[2] dilation, int groups, str? activation) -> (Tensor, Tensor, Tensor, Tensor)",
    _op_forward, _op_forward_fake, _op_backward, _op_setup_context)
conv_bn_relu_bn_backward_op = define(
    "conv_bn_relu_bn_backward(Tensor grad, Tensor conv_output, Tensor mean, Tensor var, Tensor? bn_weight, "
    "Tensor? bn_bias, bool training, float eps, str? activation) -> (Tensor, Tensor, Tensor)",
    _op_bn_backward, _op_bn_backward_fake)


# --------------------------------------------------------------------------------------- public API
def conv_bn_relu(x: Tensor, weight: Tensor, bias: Tensor | None, bn_weight: Tensor | None, bn_bias: Tensor | None,
                 running_mean: Tensor | None, running_var: Tensor | None, training: bool, momentum=0.1,
                 eps: float = 1e-5, stride=1, padding=0, dilation=1, groups: int = 1, activation="relu", *,
                 num_batches_tracked: Tensor | None = None) -> Tensor:
    """``act(F.batch_norm(F.conv2d(x, weight, bias, stride, padding, dilation, groups), running_mean,
    running_var, bn_weight, bn_bias, training, momentum, eps))`` as one fused op.

    ``activation`` is "relu", "relu6", "silu" or None; padding also takes 'same', 'valid' and 'full'. In
    training the running statistics (if given) are updated in place exactly as ``F.batch_norm`` does;
    ``momentum=None`` is the cumulative average, which needs ``num_batches_tracked`` (a one-element tensor,
    incremented here as ``nn.BatchNorm2d`` does). Gradients flow to x, weight, bias, bn_weight and bn_bias.
    """
    check_activation(activation)
    if _autocast.any_enabled():
        x, weight, bias = _autocast.cast(_autocast.autocast_dtype(x), x, weight, bias)
    if not isinstance(x, Tensor) or not isinstance(weight, Tensor):
        check_tensors(x, weight, bias, _OP)
    unbatched = x.dim() == 3
    xb = x.unsqueeze(0) if unbatched else x
    training = bool(training)
    bn = (bn_weight, bn_bias, running_mean, running_var)
    check_scalars(momentum, eps)
    if not _route.eager(xb):
        spec, pixels = check_problem(xb, weight, bias, bn, training, stride, padding, dilation, groups)
        factor = _momentum_factor(training, momentum, running_mean, num_batches_tracked)
        out, _y, mean, var = conv_bn_relu_op(xb, weight, bias, *bn, training, float(eps), list(spec.stride),
                                             list(spec.padding), list(spec.dilation), spec.groups, activation)
    else:
        plan = plan_for(xb, weight, bias, bn, training, stride, padding, dilation, groups)
        pixels = plan.pixels
        factor = _momentum_factor(training, momentum, running_mean, num_batches_tracked)
        if plan.route == "aten":
            _backend.record(plan.conv.choices["fwd"])
            if isinstance(factor, Tensor):
                factor = float(factor)  # F.batch_norm takes a Python float (nn.BatchNorm2d synchronises too)
            y = F.batch_norm(aten_conv(xb, weight, bias, plan.conv.spec), running_mean, running_var, bn_weight,
                             bn_bias, training, 0.0 if factor is None else factor, eps)
            out = activate(y, activation)
            return out.squeeze(0) if unbatched else out
        if _route.needs_autograd(xb, weight, bias, bn_weight, bn_bias):
            out, _y, mean, var = _route.apply(_ConvBN, xb, weight, bias, bn_weight, bn_bias, plan, running_mean,
                                               running_var, training, eps, activation)
        else:
            out, _y, mean, var = _forward(plan, xb, weight, bias, bn_weight, bn_bias, running_mean, running_var,
                                          training, eps, activation, keep_conv_output=False)
    if training and running_mean is not None:
        update_running_stats(running_mean, running_var, mean, var, factor, pixels)
    return out.squeeze(0) if unbatched else out


def check_scalars(momentum, eps) -> None:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
        raise ValueError(f"conv_bn_relu: eps must be a positive number, got {eps!r}")
    if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, (int, float))
                                 or not 0.0 <= momentum <= 1.0):
        raise ValueError(f"conv_bn_relu: momentum must be a number in [0, 1] or None (cumulative average), "
                         f"got {momentum!r}")


def check_problem(xb, weight, bias, bn, training, stride, padding, dilation, groups):
    """Every check of the fused problem; returns the conv's spec and the pixels per channel."""
    check_tensors(xb, weight, bias, _OP)
    if xb.dim() != 4:
        raise RuntimeError(f"Expected 3D (unbatched) or 4D (batched) input to {_OP}, but got input of size: "
                           f"{list(xb.shape)}")
    spec = conv2d_spec(xb.shape, weight.shape, None if bias is None else bias.shape, stride, padding, dilation,
                       groups)
    check_spatial(xb.shape)
    names = ("bn_weight", "bn_bias", "running_mean", "running_var")
    check_batch_norm(xb, out_channels(weight.shape), dict(zip(names, bn)), training)
    pixels = xb.shape[0] * spec.out_hw[0] * spec.out_hw[1]
    if training and pixels <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                         f"{[xb.shape[0], out_channels(weight.shape), *spec.out_hw]}")
    return spec, pixels


def _momentum_factor(training, momentum, running_mean, num_batches_tracked):
    """The running-statistics factor: ``momentum``, or 1 / num_batches_tracked for the cumulative average
    (a device tensor: no synchronisation). ``num_batches_tracked`` is incremented in training."""
    if not training:
        return None
    if num_batches_tracked is not None:
        with torch.no_grad():
            num_batches_tracked.add_(1)
    if momentum is not None or running_mean is None:
        return momentum
    if num_batches_tracked is None:
        raise ValueError("conv_bn_relu: momentum=None (cumulative average) needs num_batches_tracked")
    return 1.0 / num_batches_tracked.to(running_mean.dtype)
