"""``cnnkern.nn.ConvTranspose2d``: ``torch.nn.ConvTranspose2d`` (same constructor, parameters, state_dict keys).

Like ``cnnkern.nn.Conv2d`` it subclasses its torch counterpart and changes only the convolution, so
``isinstance`` checks, weight init and ``load_state_dict`` behave as in torch, and ``forward(input,
output_size=None)`` resolves ``output_size`` with torch's own ``_output_padding`` (same rules, same errors).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cnnkern.ops.conv_transpose2d import conv_transpose2d
from cnnkern.problem.conv2d import is_depthwise


def conv_transpose2d_kernel_family(out_channels: int, weight_shape, groups: int) -> str:
    """'depthwise-transposed' or 'transposed'.

    A transposed conv is run as the gather of its equivalent conv2d, whose input channels are the transposed
    conv's *output* channels: it is depthwise when every output channel is its own group.
    """
    return "depthwise-transposed" if is_depthwise(out_channels, weight_shape, groups) else "transposed"


class ConvTranspose2d(torch.nn.ConvTranspose2d):
    """Drop-in ``torch.nn.ConvTranspose2d`` on cnnkern's transposed-conv kernels."""

    @property
    def kernel_family(self) -> str:
        return conv_transpose2d_kernel_family(self.out_channels, self.weight.shape, self.groups)

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTranspose2d")
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size,
                                              2, self.dilation)
        return conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                self.groups, self.dilation)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel={self.kernel_family}"
