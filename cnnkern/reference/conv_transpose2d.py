"""Reference transposed conv2d on ATen (``torch.nn.functional.conv_transpose2d``): the ground truth.

The backends receive the equivalent conv2d's ``Conv2dSpec`` (see ``cnnkern.ops.conv_transpose2d``); its
bottom/right padding is ``padding - output_padding``, from which ATen's arguments are recovered.
"""

from __future__ import annotations

import torch.nn.functional as F

from cnnkern.problem.conv2d import Conv2dProblem, Conv2dSpec


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                     *, fp64: bool = False):
    """``F.conv_transpose2d``, optionally computed in float64 and returned in float64."""
    if fp64:
        input, weight = input.double(), weight.double()
        bias = bias.double() if bias is not None else None
    return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)


def why_not(problem: Conv2dProblem) -> str | None:
    if not problem.dtype.is_floating_point:
        return f"dtype {problem.dtype} is not a floating-point type"
    return None


def forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    output_padding = (spec.padding[0] - spec.padding[1], spec.padding[2] - spec.padding[3])
    out.copy_(F.conv_transpose2d(x, w, bias, spec.stride, spec.pad_tl, output_padding, spec.groups,
                                 spec.dilation))


# The kernels this module gives the registry (cnnkern.ops.registry), by the name the ops ask for.
KERNELS = {"conv_transpose2d_fwd": forward, "depthwise_conv_transpose2d_fwd": forward}
