"""``cnnkern.nn.Conv2d``: ``torch.nn.Conv2d`` (same constructor, parameters and state_dict keys) on cnnkern ops.

The module subclasses ``torch.nn.Conv2d``, so ``isinstance`` checks, ``load_state_dict``, weight init,
``reset_parameters`` and every tool that inspects convs keep working; only the convolution itself changes.
It also takes ``padding='full'`` (cnnkern's third padding mode: ``dilation * (kernel - 1)`` on every side),
stored as those explicit sizes so that the module stays a valid ``torch.nn.Conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnkern.ops.conv2d import conv2d
from cnnkern.ops.group_pointwise_conv2d import group_pointwise_conv2d
from cnnkern.problem.conv2d import is_depthwise

_ONE = (1, 1)


def conv2d_kernel_family(in_channels: int, weight_shape, groups: int, stride, padding, dilation) -> str:
    """Which cnnkern kernels a conv with this configuration runs on: 'depthwise', 'pointwise' or 'direct'."""
    if is_depthwise(in_channels, weight_shape, groups):
        return "depthwise"
    if (tuple(weight_shape[2:]) == _ONE and tuple(stride) == _ONE and tuple(dilation) == _ONE
            and (padding == "valid" or padding in ((0, 0), "same"))):
        return "pointwise"
    return "direct"


def _full_padding(kernel_size, dilation) -> tuple[int, int]:
    k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    d = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    return tuple(di * (ki - 1) for ki, di in zip(k, d))


class Conv2d(torch.nn.Conv2d):
    """Drop-in ``torch.nn.Conv2d``; routes to the direct, depthwise or grouped-pointwise kernels."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        if isinstance(padding, str) and padding == "full":
            padding = _full_padding(kernel_size, dilation)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)

    @property
    def kernel_family(self) -> str:
        padding = self.padding if isinstance(self.padding, str) else tuple(self.padding)
        if self.padding_mode != "zeros":
            padding = (0, 0)  # the padding is done by F.pad before the conv
        return conv2d_kernel_family(self.in_channels, self.weight.shape, self.groups, self.stride, padding,
                                    self.dilation)

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = (0, 0)
        else:
            padding = self.padding
        # The pointwise test of ``kernel_family``, inlined: this runs on every call.
        if (self.kernel_size == _ONE and self.stride == _ONE and self.dilation == _ONE
                and (padding == (0, 0) or padding == "valid" or padding == "same")
                and not (self.groups == self.in_channels and weight.shape[1] == 1)):
            return group_pointwise_conv2d(input, weight, bias, groups=self.groups)
        return conv2d(input, weight, bias, self.stride, padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel={self.kernel_family}"
