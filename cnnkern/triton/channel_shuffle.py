"""Channel permutation in Triton: channel shuffle, the passthrough half of a shuffled concat, and inverses.

A program copies a BLOCK_P pixels x BLOCK_C channels tile, reading and writing through each tensor's own
strides, so the result keeps whatever layout it was allocated in (channels_last stays channels_last) and
sliced inputs need no copy. Only the channel index is permuted (``shuffle_dest``, the same map the fused
pointwise-conv epilogue uses).
"""

from __future__ import annotations

import triton
import triton.language as tl

from cnnkern.problem.channel_map import ChannelMap
from cnnkern.triton import interpreting, needs_int64, why_not_problem
from cnnkern.triton.tiles import cfg, channels_last, pix, shuffle_dest, tile_offsets

why_not = why_not_problem


def _configs():
    if interpreting():
        return [cfg(1, BLOCK_P=64, BLOCK_C=32)]
    return [cfg(4, BLOCK_P=p, BLOCK_C=c) for p, c in ((64, 32), (128, 16), (16, 64))]


@triton.autotune(configs=_configs(), key=["P", "C", "CHANNELS_LAST"], cache_results=True)
@triton.jit
def _channel_map_kernel(
    src_ptr, dst_ptr, H, W, P, C, OFF, CPG, SG,
    ssn, ssc, ssh, ssw, sdn, sdc, sdh, sdw,
    SCATTER: tl.constexpr, CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    offs_p, c = tile_offsets(tl.program_id(0), tl.program_id(1), BLOCK_P, BLOCK_C, INT64)
    mask = (offs_p < P)[:, None] & (c < C)[None, :]
    n, h, w = pix(offs_p, H, W)
    mapped = shuffle_dest(c, OFF, CPG, SG)
    if SCATTER:
        src_c = c
        dst_c = mapped
    else:
        src_c = mapped
        dst_c = c
    v = tl.load(src_ptr + (n * ssn + h * ssh + w * ssw)[:, None] + (src_c * ssc)[None, :], mask=mask)
    tl.store(dst_ptr + (n * sdn + h * sdh + w * sdw)[:, None] + (dst_c * sdc)[None, :], v, mask=mask)


def channel_map(src, dst, cmap: ChannelMap, scatter: bool) -> None:
    """scatter: ``dst[:, dest(c)] = src[:, c]`` for every channel of src; gather: the inverse, for dst's."""
    n, _, h, w = src.shape
    channels = src.shape[1] if scatter else dst.shape[1]
    pixels = n * h * w

    def grid(meta):
        return (triton.cdiv(pixels, meta["BLOCK_P"]), triton.cdiv(channels, meta["BLOCK_C"]))

    _channel_map_kernel[grid](
        src, dst, h, w, pixels, channels, cmap.offset, cmap.per_group, cmap.shuffle_groups,
        *src.stride(), *dst.stride(),
        SCATTER=scatter, CHANNELS_LAST=channels_last(src),
        INT64=needs_int64((src, dst)),
    )


# The kernels this module gives the registry (cnnkern.ops.registry), by the name the ops ask for.
KERNELS = {"channel_shuffle": channel_map}
