"""conv2d as ``torch.library`` custom ops (forward, input grad, weight grad) and its autograd Function.

The ops take already-normalised arguments (padding as 4 explicit sides) and pick a backend at run time,
so ``torch.compile`` sees three opaque ops with fake kernels and never breaks the graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from cnnkern.ops import _autocast
from cnnkern.ops import backend as _backend
from cnnkern.problem.conv2d import (
    Conv2dProblem,
    Conv2dSpec,
    check_tensors,
    conv2d_spec,
    kernel_family,
    suggest_memory_format,
)


def _spec(input, weight, bias, stride, padding, dilation, groups) -> Conv2dSpec:
    return conv2d_spec(input.shape, weight.shape, None if bias is None else bias.shape, stride, padding,
                       dilation, groups)


def _empty(shape, like: Tensor, memory_format) -> Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=memory_format)


def _fmt(channels_last: bool):
    return torch.channels_last if channels_last else torch.contiguous_format


# ---------------------------------------------------------------------------------------------- forward
@torch.library.custom_op("cnnkern::conv2d", mutates_args=())
def conv2d_op(input: Tensor, weight: Tensor, bias: Tensor | None, stride: Sequence[int],
              padding: Sequence[int], dilation: Sequence[int], groups: int) -> Tensor:
    check_tensors(input, weight, bias)
    spec = _spec(input, weight, bias, stride, padding, dilation, groups)
    out = _empty((input.shape[0], weight.shape[0], *spec.out_hw), input, suggest_memory_format(input))
    if out.numel() == 0:
        return out
    if input.numel() == 0:
        # No input channels (or an all-padding window): every output is the bias.
        return out.copy_(bias.view(1, -1, 1, 1).expand_as(out)) if bias is not None else out.zero_()
    operands = (input, weight) if bias is None else (input, weight, bias)
    op = kernel_family("conv2d_fwd", input.shape[1], weight.shape, groups)
    impl = _backend.select(op, Conv2dProblem(operands, spec), input.device)
    impl(input, weight, bias, out, spec)
    return out


@conv2d_op.register_fake
def _(input, weight, bias, stride, padding, dilation, groups):
    check_tensors(input, weight, bias)
    spec = _spec(input, weight, bias, stride, padding, dilation, groups)
    return _empty((input.shape[0], weight.shape[0], *spec.out_hw), input, suggest_memory_format(input))


# -------------------------------------------------------------------------------------- input gradient
@torch.library.custom_op("cnnkern::conv2d_backward_input", mutates_args=())
def conv2d_backward_input_op(grad_output: Tensor, weight: Tensor, input_size: Sequence[int],
                             stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                             groups: int, channels_last: bool) -> Tensor:
    check_tensors(grad_output, weight, None, "conv2d_backward_input")
    spec = conv2d_spec(input_size, weight.shape, None, stride, padding, dilation, groups)
    _check_grad_shape(grad_output, (input_size[0], weight.shape[0], *spec.out_hw))
    grad_in = _empty(input_size, grad_output, _fmt(channels_last))
    if grad_in.numel() == 0:
        return grad_in
    if grad_output.numel() == 0 or weight.numel() == 0:
        return grad_in.zero_()
    op = kernel_family("conv2d_bwd_input", input_size[1], weight.shape, groups)
    impl = _backend.select(op, Conv2dProblem((grad_output, weight), spec), grad_output.device)
    impl(grad_output, weight, grad_in, spec)
    return grad_in


@conv2d_backward_input_op.register_fake
def _(grad_output, weight, input_size, stride, padding, dilation, groups, channels_last):
    return _empty(input_size, grad_output, _fmt(channels_last))


# ------------------------------------------------------------------------------------- weight gradient
@torch.library.custom_op("cnnkern::conv2d_backward_weight", mutates_args=())
def conv2d_backward_weight_op(grad_output: Tensor, input: Tensor, weight_size: Sequence[int],
                              stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                              groups: int) -> Tensor:
    check_tensors(grad_output, input, None, "conv2d_backward_weight")
    spec = conv2d_spec(input.shape, weight_size, None, stride, padding, dilation, groups)
    _check_grad_shape(grad_output, (input.shape[0], weight_size[0], *spec.out_hw))
    grad_w = _empty(weight_size, input, torch.contiguous_format)
    if grad_w.numel() == 0:
        return grad_w
    if grad_output.numel() == 0 or input.numel() == 0:
        return grad_w.zero_()
    op = kernel_family("conv2d_bwd_weight", input.shape[1], weight_size, groups)
    impl = _backend.select(op, Conv2dProblem((grad_output, input), spec), input.device)
    impl(grad_output, input, grad_w, spec)
    return grad_w


@conv2d_backward_weight_op.register_fake
def _(grad_output, input, weight_size, stride, padding, dilation, groups):
    return _empty(weight_size, input, torch.contiguous_format)


def _check_grad_shape(grad: Tensor, expected) -> None:
    if tuple(grad.shape) != tuple(expected):
        raise RuntimeError(f"conv2d backward: expected grad_output of size {list(expected)}, "
                           f"got {list(grad.shape)}")


# ------------------------------------------------------------------------------------------- autograd
def _setup_context(ctx, inputs, output):
    input, weight, _bias, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(input, weight)
    ctx.conf = (list(stride), list(padding), list(dilation), groups)
    ctx.input_channels_last = suggest_memory_format(input) == torch.channels_last


def _backward(ctx, grad):
    input, weight = ctx.saved_tensors
    stride, padding, dilation, groups = ctx.conf
    need_in, need_w, need_b = ctx.needs_input_grad[:3]
    grad_in = grad_w = grad_b = None
    if need_in:
        grad_in = torch.ops.cnnkern.conv2d_backward_input(grad, weight, list(input.shape), stride, padding,
                                                          dilation, groups, ctx.input_channels_last)
    if need_w:
        grad_w = torch.ops.cnnkern.conv2d_backward_weight(grad, input, list(weight.shape), stride, padding,
                                                           dilation, groups)
    if need_b:
        grad_b = grad.sum((0, 2, 3))
    return grad_in, grad_w, grad_b, None, None, None, None


# The op itself is differentiable (opcheck checks this; torch.compile can use it directly)...
torch.library.register_autograd("cnnkern::conv2d", _backward, setup_context=_setup_context)


class Conv2dFunction(torch.autograd.Function):
    """...and this is the public Function over the same forward/backward ops."""

    @staticmethod
    def forward(input, weight, bias, stride, padding, dilation, groups):
        return torch.ops.cnnkern.conv2d(input, weight, bias, stride, padding, dilation, groups)

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_backward)


# --------------------------------------------------------------------------------------- public API
def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """``torch.nn.functional.conv2d`` on cnnkern kernels (same arguments, same result, autograd, autocast)."""
    input, weight, bias = _autocast.cast(_autocast.autocast_dtype(input), input, weight, bias)
    check_tensors(input, weight, bias)
    if input.dim() not in (3, 4):
        raise RuntimeError("Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: "
                           f"{list(input.shape)}")
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    spec = _spec(input, weight, bias, stride, padding, dilation, groups)
    out = Conv2dFunction.apply(input, weight, bias, list(spec.stride), list(spec.padding),
                               list(spec.dilation), spec.groups)
    return out.squeeze(0) if unbatched else out


class DispatchReport(dict):
    """op name -> ``Choice``; prints as one line per op plus every rejected backend's reason."""

    def __str__(self) -> str:
        return "\n".join(str(choice) for choice in self.values())


def explain_conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                   dilation=1, groups: int = 1) -> DispatchReport:
    """Which backend each conv2d op (forward, input grad, weight grad) would use here, and why not others."""
    check_tensors(input, weight, bias)
    if input.dim() == 3:
        input = input.unsqueeze(0)
    spec = _spec(input, weight, bias, stride, padding, dilation, groups)
    operands = (input, weight) if bias is None else (input, weight, bias)
    report = DispatchReport()
    for base in ("conv2d_fwd", "conv2d_bwd_input", "conv2d_bwd_weight"):
        op = kernel_family(base, input.shape[1], weight.shape, spec.groups)
        report[op] = _backend.choose(op, Conv2dProblem(operands, spec), input.device)
    return report
