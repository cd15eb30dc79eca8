"""Channel permutation in Triton: channel shuffle, the passthrough half of a shuffled concat, and inverses.

A program copies a BLOCK_P pixels x BLOCK_C channels tile, reading and writing through each tensor's own
strides, so the result keeps whatever layout it was allocated in (channels_last stays channels_last) and
sliced inputs need no copy. Only the channel index is permuted (``_dest``, the same map the fused
pointwise-conv epilogue uses).
"""

from __future__ import annotations

import triton
import triton.language as tl

from cnnkern.problem.channel_map import ChannelMap
from cnnkern.triton import interpreting, needs_int64, why_not_problem
from cnnkern.triton.depthwise_conv2d import _pix
from cnnkern.triton.group_pointwise_conv2d import _dest

why_not = why_not_problem


def _configs():
    if interpreting():
        return [triton.Config({"BLOCK_P": 64, "BLOCK_C": 32}, num_warps=1)]
    return [triton.Config({"BLOCK_P": p, "BLOCK_C": c}, num_warps=4) for p, c in ((64, 32), (128, 16), (16, 64))]


@triton.autotune(configs=_configs(), key=["P", "C", "CHANNELS_LAST"], cache_results=True)
@triton.jit
def _channel_map_kernel(
    src_ptr, dst_ptr, H, W, P, C, OFF, CPG, SG,
    ssn, ssc, ssh, ssw, sdn, sdc, sdh, sdw,
    SCATTER: tl.constexpr, CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    offs_p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    if INT64:
        offs_p = offs_p.to(tl.int64)
        c = c.to(tl.int64)
    mask = (offs_p < P)[:, None] & (c < C)[None, :]
    n, h, w = _pix(offs_p, H, W)
    mapped = _dest(c, OFF, CPG, SG)
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
        SCATTER=scatter, CHANNELS_LAST=src.stride(1) == 1 and src.shape[1] > 1,
        INT64=needs_int64((src, dst)),
    )
