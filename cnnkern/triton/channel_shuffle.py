"""Channel permutation in Triton: channel shuffle, the passthrough half of a shuffled concat, and inverses.

Every call is one gather over the destination's columns: ``dst[:, j] = src[:, idx[j]]`` for the columns j
with ``idx[j] >= 0``, where idx is ``ChannelMap.source_index`` (scatter: the stored position's channel) or
``ChannelMap.dest_index`` (gather), built once per map and device. So the destination is always written in
whole runs by one program (no 32-byte sector shared between programs far apart in the grid, which costs a
DRAM read-modify-write), reads go wherever the permutation sends them, and no program divides by the map.

Two kernels, by layout (both keep each tensor's own strides, so channels_last stays channels_last and sliced
inputs need no copy):
  rows    a BLOCK_P pixels x BLOCK_C columns tile; channels-last destinations get 16/8/4-byte stores through
          the ALIGN hint (``vector_align``), and when every column is written (FULL) the mask is per run.
  planes  NCHW-like tensors (each (n, c) plane of H*W contiguous): a plane is one contiguous copy, so a
          program copies BLOCK_HW elements of BLOCK_C destination planes of one image from their sources.
Notes (model, SASS per element): channel_shuffle.md beside this file.
"""

from __future__ import annotations

import triton
import triton.language as tl

from cnnkern.problem.channel_map import ChannelMap
from cnnkern.triton import interpreting, needs_int64, why_not_problem
from cnnkern.triton.tiles import (
    ceil_div,
    cfg,
    channel_mask,
    one_pixel_pitch,
    pix,
    pow2_at_least,
    tile_offsets,
    vector_align,
)

why_not = why_not_problem

_MAX_BLOCK_C = 256  # columns per program; wider rows take adjacent programs


def _row_configs():
    if interpreting():
        return [cfg(1, BLOCK_P=16)]
    return [cfg(4, BLOCK_P=p) for p in (8, 16, 32, 64)] + [cfg(8, BLOCK_P=64)]


def _prune_rows(configs, named_args, **kwargs):
    """Tiles giving a thread 4-32 elements (fewer: the column index loads are not amortised; more: spills),
    the largest of them if none."""
    bc = kwargs["BLOCK_C"]
    kept = [c for c in configs if 4 * 32 * c.num_warps <= c.kwargs["BLOCK_P"] * bc <= 32 * 32 * c.num_warps]
    return kept or configs[-1:]


_prune_rows.reachable = _prune_rows  # triton_sm90_check: what any problem with this BLOCK_C can reach


@triton.autotune(configs=_row_configs(), key=["P", "NCOLS", "FULL", "PITCHED", "ALIGN", "INT64"],
                 prune_configs_by={"early_config_prune": _prune_rows}, cache_results=True)
@triton.jit
def _channel_rows_kernel(
    src_ptr, dst_ptr, idx_ptr, H, W, P, NCOLS,
    ssn, ssc, ssh, ssw, sdn, sdc, sdh, sdw,
    FULL: tl.constexpr, PITCHED: tl.constexpr, ALIGN: tl.constexpr, INT64: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """dst[p, j] = src[p, idx[j]] for j < NCOLS with idx[j] >= 0 (FULL: all of them).

    ALIGN divides dst's pixel strides and NCOLS with unit channel stride (else 1). PITCHED: src and dst each
    have one pixel pitch (their W stride), so a pixel's offset is a product, not (n, h, w)."""
    col_tiles = tl.cdiv(NCOLS, BLOCK_C)
    pid = tl.program_id(0)
    pid_p = pid // col_tiles
    offs_p, j = tile_offsets(pid_p, pid - pid_p * col_tiles, BLOCK_P, BLOCK_C, INT64)
    in_cols = j < NCOLS
    s = tl.load(idx_ptr + j, mask=in_cols, other=-1)
    if PITCHED:
        src_row = offs_p * ssw
        dst_row = tl.multiple_of(offs_p * sdw, ALIGN)
    else:
        n, h, w = pix(offs_p, H, W)
        src_row = n * ssn + h * ssh + w * ssw
        dst_row = tl.multiple_of(n * sdn + h * sdh + w * sdw, ALIGN)
    if FULL:
        cols = channel_mask(j, NCOLS, ALIGN)
    else:
        cols = in_cols & (s >= 0)
    mask = (offs_p < P)[:, None] & cols[None, :]
    v = tl.load(src_ptr + src_row[:, None] + (s * ssc)[None, :], mask=mask)
    tl.store(dst_ptr + dst_row[:, None] + (j * sdc)[None, :], v, mask=mask)


def _plane_configs():
    if interpreting():
        return [cfg(1, BLOCK_C=4)]
    return [cfg(w, BLOCK_C=c) for w in (4, 8) for c in (1, 2, 4, 8, 16, 32, 64)]


def _prune_planes(configs, named_args, **kwargs):
    """Tiles giving a thread 4-32 elements of BLOCK_C planes x BLOCK_HW (the largest if none), no more planes
    than the image has."""
    hw = kwargs["BLOCK_HW"]
    cap = max(1, pow2_at_least(int(named_args["NCOLS"])))
    kept = [c for c in configs if c.kwargs["BLOCK_C"] <= cap
            and 4 * 32 * c.num_warps <= c.kwargs["BLOCK_C"] * hw <= 32 * 32 * c.num_warps]
    return kept or configs[-1:]


_prune_planes.reachable = _prune_planes  # triton_sm90_check: every config some NCOLS reaches with this BLOCK_HW


@triton.autotune(configs=_plane_configs(), key=["HW", "NCOLS", "FULL", "ALIGN", "INT64"],
                 prune_configs_by={"early_config_prune": _prune_planes}, cache_results=True)
@triton.jit
def _channel_planes_kernel(
    src_ptr, dst_ptr, idx_ptr, HW, NCOLS, ssn, ssc, sdn, sdc,
    FULL: tl.constexpr, ALIGN: tl.constexpr, INT64: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    """dst[n, j, :] = src[n, idx[j], :] over contiguous H*W planes, for idx[j] >= 0: a program copies BLOCK_HW
    elements of BLOCK_C planes of one image (several whole planes when they are small: 49 elements at 7x7).
    ALIGN divides HW and both tensors' N and C strides."""
    hw_tiles = tl.cdiv(HW, BLOCK_HW)
    col_tiles = tl.cdiv(NCOLS, BLOCK_C)
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    n = pid // (hw_tiles * col_tiles)
    rest = pid - n * (hw_tiles * col_tiles)
    ct = rest // hw_tiles
    j = ct * BLOCK_C + tl.arange(0, BLOCK_C)
    hw = (rest - ct * hw_tiles) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    s = tl.load(idx_ptr + j, mask=j < NCOLS, other=-1)
    if FULL:
        cols = j < NCOLS
    else:
        cols = (j < NCOLS) & (s >= 0)
    mask = cols[:, None] & channel_mask(hw, HW, ALIGN)[None, :]
    src = tl.multiple_of(n * ssn + s * ssc, ALIGN)
    dst = tl.multiple_of(n * sdn + j * sdc, ALIGN)
    v = tl.load(src_ptr + src[:, None] + hw[None, :], mask=mask)
    tl.store(dst_ptr + dst[:, None] + hw[None, :], v, mask=mask)


def _planes(t, h: int, w: int) -> bool:
    return t.stride(3) == 1 and t.stride(2) == w


def channel_map(src, dst, cmap: ChannelMap, scatter: bool) -> None:
    """scatter: ``dst[:, dest(c)] = src[:, c]`` for every channel of src; gather: the inverse, for dst's."""
    n, _, h, w = src.shape
    if scatter:
        idx, full = cmap.source_index(src.shape[1], src.device), src.shape[1] == dst.shape[1]
    else:
        idx, full = cmap.dest_index(dst.shape[1], src.device), True
    ncols = idx.shape[0]
    esize = dst.element_size()
    int64 = needs_int64((src, dst))
    if _planes(src, h, w) and _planes(dst, h, w) and not (src.stride(1) == 1 and dst.stride(1) == 1):
        hw = h * w
        align = vector_align(esize, hw, src.stride(0), src.stride(1), dst.stride(0), dst.stride(1))
        block_hw = max(16, min(1024, pow2_at_least(hw)))

        def plane_grid(meta):
            return (n * ceil_div(ncols, meta["BLOCK_C"]) * ceil_div(hw, block_hw),)

        _channel_planes_kernel[plane_grid](src, dst, idx, hw, ncols, src.stride(0), src.stride(1),
                                           dst.stride(0), dst.stride(1), FULL=full, ALIGN=align, INT64=int64,
                                           BLOCK_HW=block_hw)
        return
    pixels = n * h * w
    sd = dst.stride()
    align = vector_align(esize, ncols, sd[0], sd[2], sd[3]) if sd[1] == 1 and full else 1
    block_c = max(16, min(_MAX_BLOCK_C, pow2_at_least(ncols)))

    def grid(meta):
        return (ceil_div(pixels, meta["BLOCK_P"]) * ceil_div(ncols, block_c),)

    _channel_rows_kernel[grid](
        src, dst, idx, h, w, pixels, ncols, *src.stride(), *sd,
        FULL=full, PITCHED=one_pixel_pitch(src.stride(), h, w) and one_pixel_pitch(dst.stride(), h, w), ALIGN=align, INT64=int64,
        BLOCK_C=block_c,
    )


# The kernels this module gives the registry (cnnkern.ops.registry), by the name the ops ask for.
KERNELS = {"channel_shuffle": channel_map}
