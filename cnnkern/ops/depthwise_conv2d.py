"""Depthwise conv2d: the public function, and how conv2d recognises a depthwise problem.

There is one set of custom ops (``cnnkern::conv2d`` and its two backward ops). A convolution with
``groups == C_in`` is depthwise whichever way it arrives (``cnnkern.depthwise_conv2d``, ``cnnkern.conv2d``
or ``torch.ops.cnnkern.conv2d`` directly): the ops then ask the backends for their ``depthwise_conv2d_*``
kernels instead of the general implicit-GEMM ones, so gradients, ``torch.compile`` and ``opcheck`` behave
exactly as for any other conv2d.
"""

from __future__ import annotations

from torch import Tensor

from cnnkern.ops.conv2d import conv2d
from cnnkern.problem.conv2d import check_tensors

__all__ = ["depthwise_conv2d"]


def check_depthwise_weight(input: Tensor, weight: Tensor) -> None:
    if input.dim() not in (3, 4):
        raise RuntimeError("Expected 3D (unbatched) or 4D (batched) input to depthwise_conv2d, but got input "
                           f"of size: {list(input.shape)}")
    channels = input.shape[-3]
    if weight.dim() != 4 or weight.shape[1] != 1 or channels == 0 or weight.shape[0] % channels != 0:
        raise RuntimeError(
            f"depthwise_conv2d: expected weight of size (C*m, 1, kH, kW) with C={channels} input channels and "
            f"a channel multiplier m >= 1, but got weight of size {list(weight.shape)} for input of size "
            f"{list(input.shape)}"
        )
    if weight.shape[0] == 0:
        raise RuntimeError(f"depthwise_conv2d: the weight has no output channels (size {list(weight.shape)})")


def depthwise_conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     dilation=1) -> Tensor:
    """``F.conv2d(input, weight, bias, stride, padding, dilation, groups=C)`` on depthwise kernels.

    ``weight`` is (C*m, 1, kH, kW) for a channel multiplier m; output channel ``c*m + j`` convolves
    input channel ``c``. Padding may be an int, a pair, 4 explicit sides, 'same' or 'valid'.
    """
    check_tensors(input, weight, bias, "depthwise_conv2d")
    check_depthwise_weight(input, weight)
    return conv2d(input, weight, bias, stride, padding, dilation, groups=input.shape[-3])
