"""The channel-permutation copy kernel (channel_shuffle, and the passthrough of a shuffled concat)."""

from __future__ import annotations

import torch

from cnnkern.cuda import why_not_with_op


def why_not(problem) -> str | None:
    return why_not_with_op("channel_map", "channel_shuffle", problem)


def channel_map(src, dst, cmap, scatter: bool) -> None:
    torch.ops.cnnkern_cuda.channel_map(src, dst, cmap.shuffle_groups, cmap.offset, scatter)


KERNELS = {"channel_shuffle": channel_map}
