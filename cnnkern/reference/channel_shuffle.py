"""Reference channel permutation (shuffle, shuffled concat, and their inverses) on ATen."""

from __future__ import annotations

from cnnkern.problem.channel_map import ChannelMap
from cnnkern.reference.group_pointwise_conv2d import why_not  # noqa: F401  (same acceptance rule)


def channel_map(src, dst, cmap: ChannelMap, scatter: bool) -> None:
    """scatter: ``dst[:, dest(c)] = src[:, c]``; gather: ``dst[:, c] = src[:, dest(c)]``."""
    if scatter:
        dst.index_copy_(1, cmap.dest_index(src.shape[1], src.device), src)
    else:
        dst.copy_(src.index_select(1, cmap.dest_index(dst.shape[1], src.device)))


# The kernels this module gives the registry (cnnkern.ops.registry), by the name the ops ask for.
KERNELS = {"channel_shuffle": channel_map}
