"""Reference conv2d on ATen (``torch.nn.functional`` / ``torch.nn.grad``).

It runs anywhere ATen runs, in every floating dtype, and is the ground truth for tests. Asymmetric padding
(PyTorch's 'same' with an even kernel) is done by padding explicitly, as ATen itself does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnkern.problem.conv2d import Conv2dProblem, Conv2dSpec


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, fp64: bool = False):
    """``F.conv2d``, optionally computed in float64 and returned in float64 (the tolerance baseline)."""
    if fp64:
        input, weight = input.double(), weight.double()
        bias = bias.double() if bias is not None else None
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


def why_not(problem: Conv2dProblem) -> str | None:
    if not problem.dtype.is_floating_point:
        return f"dtype {problem.dtype} is not a floating-point type"
    return None


def _padded(x: torch.Tensor, spec: Conv2dSpec) -> tuple[torch.Tensor, tuple[int, int]]:
    if spec.symmetric:
        return x, (spec.padding[0], spec.padding[2])
    top, bottom, left, right = spec.padding
    return F.pad(x, (left, right, top, bottom)), (0, 0)


def forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    xp, pad = _padded(x, spec)
    out.copy_(F.conv2d(xp, w, bias, spec.stride, pad, spec.dilation, spec.groups))


def backward_input(grad_out, w, grad_in, spec: Conv2dSpec) -> None:
    n, c, h, wd = grad_in.shape
    top, bottom, left, right = spec.padding
    if spec.symmetric:
        grad = torch.nn.grad.conv2d_input(
            grad_in.shape, w, grad_out, spec.stride, (top, left), spec.dilation, spec.groups
        )
    else:
        padded_shape = (n, c, h + top + bottom, wd + left + right)
        grad = torch.nn.grad.conv2d_input(padded_shape, w, grad_out, spec.stride, 0, spec.dilation, spec.groups)
        grad = grad[:, :, top : top + h, left : left + wd]
    grad_in.copy_(grad)


def backward_weight(grad_out, x, grad_w, spec: Conv2dSpec) -> None:
    xp, pad = _padded(x, spec)
    grad = torch.nn.grad.conv2d_weight(xp, grad_w.shape, grad_out, spec.stride, pad, spec.dilation, spec.groups)
    grad_w.copy_(grad)
