"""Transposed conv forward = the input gradient of its equivalent conv2d (``spec``), bias included."""

from __future__ import annotations

import torch

from cnnkern.cuda import why_not_with_op
from cnnkern.problem.conv2d import Conv2dSpec

_GRID_Z_LIMIT = 65535


def why_not(problem) -> str | None:
    reason = why_not_with_op("conv_transpose2d_fwd", "conv_transpose2d", problem)
    if reason is not None:
        return reason
    spec = problem.spec
    if spec.groups * spec.stride[0] * spec.stride[1] > _GRID_Z_LIMIT:
        return (f"groups={spec.groups} times the {spec.stride[0]}x{spec.stride[1]} stride phases exceeds the "
                f"CUDA grid limit {_GRID_Z_LIMIT}")
    return None


def why_not_depthwise(problem) -> str | None:
    reason = why_not_with_op("depthwise_conv2d_bwd_input", "depthwise", problem)
    if reason is not None:
        return reason
    spec = problem.spec
    # The depthwise input-gradient op checks its geometry as a conv2d's: output rows past the reach of
    # every input (output_padding - padding >= stride, possible when dilation > stride) fail that check.
    if spec.padding[1] <= -spec.stride[0] or spec.padding[3] <= -spec.stride[1]:
        return ("output_padding - padding >= stride: output rows past every input's reach are not supported "
                "by the depthwise input-gradient kernel")
    return None


def forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.conv_transpose2d_fwd(x, w, bias, out, list(spec.stride), list(spec.pad_tl),
                                                list(spec.dilation), spec.groups)


def forward_depthwise(x, w, bias, out, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.depthwise_conv2d_bwd_input(x, w, out, list(spec.stride), list(spec.pad_tl),
                                                      list(spec.dilation))
    if bias is not None:
        # A second pass over out: the depthwise kernels have no bias in their input-gradient epilogue, and
        # depthwise transposed convs are rare enough not to warrant one.
        out.add_(bias.view(1, -1, 1, 1))


KERNELS = {"conv_transpose2d_fwd": forward, "depthwise_conv_transpose2d_fwd": forward_depthwise}
WHY_NOT = {"depthwise_conv_transpose2d_fwd": why_not_depthwise}
