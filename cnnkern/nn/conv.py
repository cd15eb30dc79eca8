"""``cnnkern.nn.Conv2d``: ``torch.nn.Conv2d`` (same constructor, parameters and state_dict keys) on cnnkern ops.

The module subclasses ``torch.nn.Conv2d``, so ``isinstance`` checks, ``load_state_dict``, weight init,
``reset_parameters`` and every tool that inspects convs keep working; only the convolution itself changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnkern.ops.conv2d import conv2d
from cnnkern.ops.group_pointwise_conv2d import group_pointwise_conv2d
from cnnkern.problem.conv2d import is_depthwise


def conv2d_kernel_family(in_channels: int, weight_shape, groups: int, stride, padding, dilation) -> str:
    """Which cnnkern kernels a conv with this configuration runs on: 'depthwise', 'pointwise' or 'direct'."""
    if is_depthwise(in_channels, weight_shape, groups):
        return "depthwise"
    one = (1, 1)
    if (tuple(weight_shape[2:]) == one and tuple(stride) == one and tuple(dilation) == one
            and (padding == "valid" or padding in ((0, 0), "same"))):
        return "pointwise"
    return "direct"


class Conv2d(torch.nn.Conv2d):
    """Drop-in ``torch.nn.Conv2d``; routes to the direct, depthwise or grouped-pointwise kernels."""

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
        if self.kernel_family == "pointwise":
            return group_pointwise_conv2d(input, weight, bias, groups=self.groups)
        return conv2d(input, weight, bias, self.stride, padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel={self.kernel_family}"
