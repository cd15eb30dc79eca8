"""Transposed conv2d as a ``torch.library`` custom op with autograd, computed as a gather.

A transposed convolution is the input gradient of its "equivalent conv2d": the conv2d whose input is the
transposed conv's output y (C_out channels) and whose output is x (C_in channels), with the same weight
(C_in, C_out/groups, kH, kW), stride, dilation and groups, and top/left padding = ``padding``. So the
backends get that conv2d's ``Conv2dSpec`` (out_hw = x's size) and each output pixel of y gathers the inputs
that reach it; no zeros are ever inserted. The bottom/right padding in the spec is ``padding -
output_padding`` and may be negative: output_padding rows lie past the last input's reach.

The backward is made of conv2d ops: grad_input is the equivalent conv2d's forward applied to grad_out,
grad_weight is its weight gradient with grad_out as its input and x as its output gradient.
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
    kernel_family,
    suggest_memory_format,
)
from cnnkern.problem.conv_transpose2d import conv_transpose2d_spec

_OP = "conv_transpose2d"


def _spec(input, weight, bias, stride, padding, output_padding, dilation, groups):
    return conv_transpose2d_spec(input.shape, weight.shape, None if bias is None else bias.shape, stride,
                                 padding, output_padding, dilation, groups)


def _empty(shape, like: Tensor, memory_format) -> Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=memory_format)


# ---------------------------------------------------------------------------------------------- forward
@torch.library.custom_op("cnnkern::conv_transpose2d", mutates_args=())
def conv_transpose2d_op(input: Tensor, weight: Tensor, bias: Tensor | None, stride: Sequence[int],
                        padding: Sequence[int], output_padding: Sequence[int], dilation: Sequence[int],
                        groups: int) -> Tensor:
    check_tensors(input, weight, bias, _OP)
    spec, out_shape = _spec(input, weight, bias, stride, padding, output_padding, dilation, groups)
    out = _empty(out_shape, input, suggest_memory_format(input))
    if out.numel() == 0:
        return out
    if input.numel() == 0:
        # No input channels: nothing reaches any output pixel but the bias.
        return out.copy_(bias.view(1, -1, 1, 1).expand_as(out)) if bias is not None else out.zero_()
    operands = (input, weight) if bias is None else (input, weight, bias)
    op = kernel_family("conv_transpose2d_fwd", out_shape[1], weight.shape, spec.groups)
    impl = _backend.select(op, Conv2dProblem(operands, spec), input.device)
    impl(input, weight, bias, out, spec)
    return out


@conv_transpose2d_op.register_fake
def _(input, weight, bias, stride, padding, output_padding, dilation, groups):
    check_tensors(input, weight, bias, _OP)
    _, out_shape = _spec(input, weight, bias, stride, padding, output_padding, dilation, groups)
    return _empty(out_shape, input, suggest_memory_format(input))


# ------------------------------------------------------------------------------------------- autograd
def _equivalent_conv2d_args(spec: Conv2dSpec, out_hw) -> tuple[list[int], tuple[int, int]]:
    """4-sided padding for the equivalent conv2d over y, and how many bottom/right rows of y to drop.

    The conv2d ops reject negative padding; any bottom padding in [p - op, p - op + s - 1] gives the same
    output size, so a non-negative one is used where it exists, else the rows past the reach are cropped.
    """
    pads, keep = [], []
    for axis in (0, 1):
        top, bottom = spec.padding[2 * axis], spec.padding[2 * axis + 1]
        stride = spec.stride[axis]
        if bottom >= 0:
            pads += [top, bottom]
            keep.append(out_hw[axis])
        elif bottom + stride - 1 >= 0:
            pads += [top, 0]
            keep.append(out_hw[axis])
        else:
            pads += [top, 0]
            keep.append(out_hw[axis] + bottom)
    return pads, tuple(keep)


def _setup_context(ctx, inputs, output):
    input, weight, _bias, stride, padding, output_padding, dilation, groups = inputs
    ctx.save_for_backward(input, weight)
    ctx.conf = (stride, padding, output_padding, dilation, groups)
    ctx.input_format = suggest_memory_format(input)


def _backward(ctx, grad):
    input, weight = ctx.saved_tensors
    stride, padding, output_padding, dilation, groups = ctx.conf
    need_in, need_w, need_b = ctx.needs_input_grad[:3]
    spec, out_shape = conv_transpose2d_spec(input.shape, weight.shape, None, stride, padding, output_padding,
                                            dilation, groups)
    pads, keep = _equivalent_conv2d_args(spec, out_shape[2:])
    # Rows past every input's reach (only where output_padding >= stride) have no gradient but the bias's.
    reached = grad[:, :, : keep[0], : keep[1]] if keep != tuple(out_shape[2:]) else grad
    conv = (list(spec.stride), pads, list(spec.dilation), spec.groups)
    grad_in = grad_w = grad_b = None
    if need_in:
        grad_in = torch.ops.cnnkern.conv2d(reached, weight, None, *conv)
        grad_in = grad_in.contiguous(memory_format=ctx.input_format)
    if need_w:
        grad_w = torch.ops.cnnkern.conv2d_backward_weight(input, reached, list(weight.shape), *conv)
    if need_b:
        grad_b = grad.sum((0, 2, 3))
    return grad_in, grad_w, grad_b, None, None, None, None, None


torch.library.register_autograd("cnnkern::conv_transpose2d", _backward, setup_context=_setup_context)


class ConvTranspose2dFunction(torch.autograd.Function):
    """The public autograd Function over the custom op (same forward and backward)."""

    @staticmethod
    def forward(input, weight, bias, stride, padding, output_padding, dilation, groups):
        return torch.ops.cnnkern.conv_transpose2d(input, weight, bias, stride, padding, output_padding,
                                                  dilation, groups)

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_backward)


# --------------------------------------------------------------------------------------- public API
def _normalise(input, weight, bias, stride, padding, output_padding, groups, dilation):
    check_tensors(input, weight, bias, _OP)
    if input.dim() not in (3, 4):
        raise RuntimeError(f"Expected 3D (unbatched) or 4D (batched) input to {_OP}, but got input of size: "
                           f"{list(input.shape)}")
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    spec, _ = _spec(input, weight, bias, stride, padding, output_padding, dilation, groups)
    out_pad = [spec.padding[0] - spec.padding[1], spec.padding[2] - spec.padding[3]]
    args = (list(spec.stride), list(spec.pad_tl), out_pad, list(spec.dilation), spec.groups)
    return input, unbatched, spec, args


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """``torch.nn.functional.conv_transpose2d`` on cnnkern kernels (same arguments and order, autograd).

    ``weight`` is (C_in, C_out/groups, kH, kW); 3-D input is treated as one unbatched image. Under
    ``torch.autocast`` it runs in the autocast dtype, as ATen's does.
    """
    input, weight, bias = _autocast.cast(_autocast.autocast_dtype(input), input, weight, bias)
    input, unbatched, _, args = _normalise(input, weight, bias, stride, padding, output_padding, groups,
                                           dilation)
    out = ConvTranspose2dFunction.apply(input, weight, bias, *args)
    return out.squeeze(0) if unbatched else out


def explain_conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                             output_padding=0, groups: int = 1, dilation=1):
    """Which backend the forward and each gradient would use here, and why not the others."""
    from cnnkern.ops.conv2d import DispatchReport

    input, _, spec, _ = _normalise(input, weight, bias, stride, padding, output_padding, groups, dilation)
    c_out = weight.shape[1] * spec.groups
    operands = (input, weight) if bias is None else (input, weight, bias)
    report = DispatchReport()
    fwd = kernel_family("conv_transpose2d_fwd", c_out, weight.shape, spec.groups)
    report[fwd] = _backend.choose(fwd, Conv2dProblem(operands, spec), input.device)
    # The gradients run the equivalent conv2d's ops; backends judge them by dtype and device alone.
    for base in ("conv2d_fwd", "conv2d_bwd_weight"):
        op = kernel_family(base, c_out, weight.shape, spec.groups)
        report[op] = _backend.choose(op, Conv2dProblem((input, weight), spec), input.device)
    return report
