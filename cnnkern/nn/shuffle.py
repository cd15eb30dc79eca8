"""``cnnkern.nn.ChannelShuffle``: ``torch.nn.ChannelShuffle`` on cnnkern's layout-preserving shuffle."""

from __future__ import annotations

import torch
from torch import Tensor

from cnnkern.ops.channel_shuffle import channel_shuffle


class ChannelShuffle(torch.nn.ChannelShuffle):
    """Drop-in ``torch.nn.ChannelShuffle``; channels_last input stays channels_last."""

    def forward(self, input: Tensor) -> Tensor:
        # torch shuffles dim 1 of any input with >= 3 dims and any dtype; the kernel takes 4-D floats, so
        # 3-D (N, C, L) gets a unit W and other ranks/dtypes stay on torch's shuffle.
        if not input.is_floating_point() or input.dim() not in (3, 4):
            return super().forward(input)
        if input.dim() == 3:
            return channel_shuffle(input.unsqueeze(-1), self.groups).squeeze(-1)
        return channel_shuffle(input, self.groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel=channel_shuffle"
