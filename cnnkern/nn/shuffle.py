"""``cnnkern.nn.ChannelShuffle``: ``torch.nn.ChannelShuffle`` on cnnkern's layout-preserving shuffle."""

from __future__ import annotations

import torch
from torch import Tensor

from cnnkern.ops.channel_shuffle import channel_shuffle


class ChannelShuffle(torch.nn.ChannelShuffle):
    """Drop-in ``torch.nn.ChannelShuffle``; channels_last input stays channels_last."""

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() == 3:  # unbatched (C, H, W), as torch accepts
            return channel_shuffle(input.unsqueeze(0), self.groups).squeeze(0)
        return channel_shuffle(input, self.groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel=channel_shuffle"
