"""Reference conv2d on ATen (``torch.nn.functional`` / ``torch.nn.grad``).

It runs anywhere ATen runs, in every floating dtype, and is the ground truth for tests. Asymmetric padding
(PyTorch's 'same' with an even kernel) is done by padding explicitly, as ATen itself does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnkern.problem import memory as _memory
from cnnkern.problem.conv2d import Conv2dProblem, Conv2dSpec
from cnnkern.reference.activation import activate


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


_conv_backward = torch.ops.aten.convolution_backward.default


def backward_input(grad_out, w, grad_in, spec: Conv2dSpec) -> None:
    # ATen's convolution_backward directly (torch.nn.grad's wrappers cost microseconds per call); grad_in
    # stands in for the input, whose shape is all it reads when only the input gradient is asked for.
    top, bottom, left, right = spec.padding
    if spec.symmetric:
        grad = _conv_backward(grad_out, grad_in, w, None, spec.stride, (top, left), spec.dilation, False, (0, 0),
                              spec.groups, (True, False, False))[0]
    else:
        n, c, h, wd = grad_in.shape
        padded = grad_in.new_empty(()).expand(n, c, h + top + bottom, wd + left + right)
        grad = _conv_backward(grad_out, padded, w, None, spec.stride, (0, 0), spec.dilation, False, (0, 0),
                              spec.groups, (True, False, False))[0]
        grad = grad[:, :, top : top + h, left : left + wd]
    grad_in.copy_(grad)


def weight_grad_upcasts(device: torch.device, dtype: torch.dtype, channels_last: bool) -> bool:
    """Whether backward_weight computes in fp32: ATen's CPU bf16 weight gradient with channels_last operands
    (torch 2.11-2.14) leaves taps that only ever see padding holding whatever the memory held (seen in 128
    of 200 seeds at k3/s3/p1 on a 2x2 input, groups 1 and depthwise; NCHW, fp16 and fp32 are right). The
    ops route such problems through these kernels instead of ATen's own autograd."""
    return device.type == "cpu" and dtype == torch.bfloat16 and channels_last


def backward_weight(grad_out, x, grad_w, spec: Conv2dSpec) -> None:
    xp, pad = _padded(x, spec)
    w = grad_w
    if weight_grad_upcasts(x.device, x.dtype, any(_memory.suggests_channels_last(t) for t in (x, grad_out, grad_w))):
        grad_out, xp, w = grad_out.float(), xp.float(), grad_w.float()
    grad = _conv_backward(grad_out, xp, w, None, spec.stride, pad, spec.dilation, False, (0, 0), spec.groups,
                          (False, True, False))[1]
    grad_w.copy_(grad)


def forward_act(x, w, bias, scale, shift, out, spec: Conv2dSpec, activation) -> None:
    """act((conv + bias) * scale + shift), the epilogue in fp32 (fp64) and rounded once (cnnkern.problem.conv_bn)."""
    xp, pad = _padded(x, spec)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    z = F.conv2d(xp, w, bias, spec.stride, pad, spec.dilation, spec.groups).to(acc)
    if scale is not None:
        z = z * scale.to(acc).view(1, -1, 1, 1)
    if shift is not None:
        z = z + shift.to(acc).view(1, -1, 1, 1)
    out.copy_(activate(z, activation))


def forward_stats(x, w, bias, out, spec: Conv2dSpec) -> torch.Tensor:
    """The plain forward, and (count, mean, M2) per channel of the stored output as one set of pixels."""
    forward(x, w, bias, out, spec)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    y = out.to(acc)
    count = torch.full((out.shape[1],), out.shape[0] * out.shape[2] * out.shape[3], dtype=acc, device=out.device)
    mean = y.mean((0, 2, 3))
    m2 = ((y - mean.view(1, -1, 1, 1)) ** 2).sum((0, 2, 3))
    return torch.stack([count, mean, m2], -1).unsqueeze(0)


# The kernels this module gives the registry (cnnkern.ops.registry), by the name the ops ask for.
KERNELS = {"conv2d_fwd": forward, "conv2d_bwd_input": backward_input, "conv2d_bwd_weight": backward_weight,
           "conv2d_fwd_act": forward_act, "conv2d_fwd_stats": forward_stats}
