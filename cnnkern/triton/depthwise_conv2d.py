"""Depthwise conv2d in Triton: forward, input gradient, weight gradient.

Depthwise convolution does ~2*KH*KW flops per element it moves, so it is bound by memory, not math:
the kernels are plain loads and FMAs (no ``tl.dot``), shaped so that every load is coalesced in the
tensor's own layout rather than converting one layout into the other:

  pixel-contiguous (NCHW): a program owns a BLOCK_H x BLOCK_W spatial tile of one (n, channel) plane;
      neighbouring lanes read neighbouring W, and the halo that tiles share is served from L1/L2.
  channel-contiguous (channels_last): a program owns BLOCK_P pixels x BLOCK_C channels; lanes run along
      C, so each tap is a run of vector loads.

Output channel ``co`` reads input channel ``co // MULT`` (the channel multiplier). Every kernel goes
through explicit strides, so sliced views run without copies. The weight gradient is a reduction over
N*OH*OW; it is split over programs and combined either with fp32 atomics (fast) or, when PyTorch's
deterministic mode is on, through per-split partials summed in a fixed order. Stride 1 with channels-last
input and gradient walks down image rows instead (forward and weight gradient; notes in depthwise_conv2d.md).

Both forward kernels carry the conv + BatchNorm epilogues as constexpr flags (``forward_act``: scale, shift
and activation on the fp32 accumulator; ``forward_stats``: per-tile channel statistics of the stored values,
one row per pixel tile, or per (image, spatial tile) in the NCHW kernel); see ``cnnkern.problem.conv_bn``.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from cnnkern.problem.conv2d import Conv2dSpec
from cnnkern.triton import interpreting, tiles, why_not_problem
from cnnkern.triton.tiles import (
    LaunchedBlocks,
    acc_dtype,
    acc_empty,
    activation_code,
    affine_act,
    ceil_div,
    cfg,
    channel_mask,
    channels_last,
    conv_epilogue,
    conv_geometry,
    dense,
    fma_flags,
    moments,
    pix,
    pow2_at_least,
    prune_to_problem,
    reduction_splits,
    split_chunks,
    store_moments,
    store_tile,
    sum_splits,
    vector_align,
)

why_not = why_not_problem


def _spatial_configs():
    if interpreting():
        # Interpreted programs cost per operation, not per element: few large tiles run fastest.
        return [cfg(1, BLOCK_H=16, BLOCK_W=16)]
    return [cfg(4, BLOCK_H=8, BLOCK_W=32), cfg(4, BLOCK_H=16, BLOCK_W=32), cfg(8, BLOCK_H=16, BLOCK_W=64),
            cfg(4, BLOCK_H=4, BLOCK_W=64), cfg(8, BLOCK_H=32, BLOCK_W=32), cfg(2, BLOCK_H=4, BLOCK_W=16)]


def _channel_configs():
    if interpreting():
        return [cfg(1, BLOCK_P=64, BLOCK_C=16)]
    # The last three give a thread 2-4 pixels of its 16-byte channel run (16-bit): the per-tap filter loads
    # and the pixel's index math serve more outputs (sm_90 SASS, bf16 dw32 3x3: 51.8 -> 45.9 instructions
    # per output; dw96 7x7: 234 -> 200). Where they spill, the prune keeps them off (_reachable_channels).
    return [cfg(4, BLOCK_P=16, BLOCK_C=64), cfg(4, BLOCK_P=32, BLOCK_C=32), cfg(8, BLOCK_P=32, BLOCK_C=64),
            cfg(4, BLOCK_P=8, BLOCK_C=128), cfg(8, BLOCK_P=64, BLOCK_C=32), cfg(2, BLOCK_P=16, BLOCK_C=16),
            cfg(4, BLOCK_P=32, BLOCK_C=64), cfg(4, BLOCK_P=64, BLOCK_C=64), cfg(4, BLOCK_P=128, BLOCK_C=32)]


# The pitch of _taps_by_channel's filter is a multiple of this: every BLOCK_C divides it.
_WIDEST_BLOCK_C = max(c.kwargs["BLOCK_C"] for c in _channel_configs())
# Channel blocks far wider than the channel count only waste lanes.
_prune_channel_blocks = prune_to_problem({"BLOCK_C": "C_BLOCKED"})


def _at_most_8_per_thread(configs, pixels: str) -> list:
    """The configs whose (pixels x BLOCK_C) tile gives a thread at most 8 outputs."""
    return [c for c in configs if c.kwargs[pixels] * c.kwargs["BLOCK_C"] <= 8 * 32 * c.num_warps]


def _reachable_channels(configs, named_args, **kwargs):
    """The tiles that give a thread more than 8 outputs only where they compile without spilling, whatever the
    problem size (sm_90: fp64, 64-bit indexing, the scale/shift and statistics epilogues spill there, and
    accesses narrower than 8 bytes: ALIGN 1 at 16 bit spills 300-400 bytes)."""
    esize = named_args[next(iter(named_args))].element_size()
    keep_small = esize == 8 or kwargs.get("ALIGN", 1) * esize < 8 or any(
        kwargs.get(flag, False) for flag in ("INT64", "STATS", "HAS_SCALE", "HAS_SHIFT"))
    small = _at_most_8_per_thread(configs, "BLOCK_P")
    return small if keep_small and small else configs


def _prune_channels(configs, named_args, **kwargs):
    """Channel blocks up to the channel count, among the reachable tiles."""
    return _prune_channel_blocks(_reachable_channels(configs, named_args, **kwargs), named_args, **kwargs)


# scripts/triton_sm90_check.py compiles every config a launch can reach on some problem: these.
_prune_channels.reachable = _reachable_channels


_PRUNE_CHANNELS = {"early_config_prune": _prune_channels}


_KEY = ["C_BLOCKED", "MULT", "KH", "KW", "stride_h", "stride_w", "OW"]
# The forward kernels' epilogue (affine + activation, statistics) is tuned per variant.
_FWD_KEY = [*_KEY, "ACT", "STATS"]
# The channels kernels' prune (_reachable_channels) also depends on these: a config tuned without them must
# not be reused for a launch whose prune would have dropped it.
_CHANNELS_FWD_KEY = [*_FWD_KEY, "HAS_SCALE", "HAS_SHIFT", "INT64", "ALIGN"]
_CHANNELS_DGRAD_KEY = [*_KEY, "INT64", "ALIGN"]


@triton.jit
def _plane_tile(C_BLOCKED, EXT_H, EXT_W, INT64: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """(n, channel, rows, cols, tile, tiles) of this program's BLOCK_H x BLOCK_W tile of one (n, channel)
    plane; ``tile`` is its index among the plane's ``tiles``.

    One grid axis of planes x tiles: CUDA caps grid axes 1 and 2 at 65535, which a large plane's tiles pass
    (8192 x 8200 in 32 x 32 tiles is 65,792), while axis 0 takes 2^31 - 1 programs.
    """
    tiles_w = tl.cdiv(EXT_W, BLOCK_W)
    tiles = tl.cdiv(EXT_H, BLOCK_H) * tiles_w
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    plane = pid // tiles
    tile = pid % tiles
    rows = (tile // tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)
    cols = (tile % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)
    return plane // C_BLOCKED, plane % C_BLOCKED, rows, cols, tile, tiles


@triton.jit
def _pixel_channel_tile(P_TOTAL, C_BLOCKED, EXT_H, EXT_W, INT64: tl.constexpr, BLOCK_P: tl.constexpr,
                        BLOCK_C: tl.constexpr):
    """(n, row, col, channel, pixel mask, channel mask) of this program's BLOCK_P x BLOCK_C tile."""
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    if INT64:
        p = p.to(tl.int64)
    n, row, col = pix(p, EXT_H, EXT_W)
    return n, row, col, c, p < P_TOTAL, c < C_BLOCKED


# ------------------------------------------------------------------------------------------- forward
@triton.jit
def _band_strip(BANDS, COLS_TOTAL, INT64: tl.constexpr, ROWS: tl.constexpr, BLOCK_W: tl.constexpr):
    """(outer index, first row, columns) of this program's strip: program_id(0) enumerates (outer index,
    one of BANDS bands of ROWS rows, block of BLOCK_W columns) with column blocks fastest (neighbours share
    their halo)."""
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    col_blocks = tl.cdiv(COLS_TOTAL, BLOCK_W)
    n = pid // (BANDS * col_blocks)
    row0 = (pid // col_blocks) % BANDS * ROWS
    return n, row0, (pid % col_blocks) * BLOCK_W + tl.arange(0, BLOCK_W)


@triton.autotune(configs=_spatial_configs(), key=_FWD_KEY, cache_results=True)
@triton.jit
def _dw_fwd_spatial_kernel(
    x_ptr, w_ptr, b_ptr, scale_ptr, shift_ptr, y_ptr, part_ptr,
    H, W, OH, OW, C_BLOCKED, MULT,
    sxn, sxc, sxh, sxw, swo, swh, sww, syn, syc, syh, syw,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    KH: tl.constexpr, KW: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr, ACT: tl.constexpr, STATS: tl.constexpr, INT64: tl.constexpr,
    ACC_DTYPE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    n, co, oh, ow, tile, tiles = _plane_tile(C_BLOCKED, OH, OW, INT64, BLOCK_H, BLOCK_W)
    x_plane = x_ptr + n * sxn + (co // MULT) * sxc
    ih0 = oh * stride_h - pad_h
    iw0 = ow * stride_w - pad_w
    acc = tl.zeros((BLOCK_H, BLOCK_W), dtype=ACC_DTYPE)
    for r in range(KH):
        ih = ih0 + r * dil_h
        x_row = x_plane + (ih * sxh)[:, None]
        ok_h = ((ih >= 0) & (ih < H))[:, None]
        w_row = w_ptr + co * swo + r * swh
        for s in tl.static_range(KW):
            iw = iw0 + s * dil_w
            ok = ok_h & ((iw >= 0) & (iw < W))[None, :]
            xv = tl.load(x_row + (iw * sxw)[None, :], mask=ok, other=0.0)
            acc += xv.to(ACC_DTYPE) * tl.load(w_row + s * sww).to(ACC_DTYPE)
    # One channel per program: its per-channel values are scalars (the mask is always true).
    acc = affine_act(acc, b_ptr, scale_ptr, shift_ptr, co, co < C_BLOCKED, HAS_BIAS, HAS_SCALE, HAS_SHIFT,
                     ACT, ACC_DTYPE)
    y = acc.to(y_ptr.dtype.element_ty)
    mask = (oh < OH)[:, None] & (ow < OW)[None, :]
    y_off = n * syn + co * syc + (oh * syh)[:, None] + (ow * syw)[None, :]
    tl.store(y_ptr + y_off, y, mask=mask)
    if STATS:
        # Statistics row (n, spatial tile): partials are (N * spatial tiles, C, 3).
        row = n * tiles + tile
        count, mean, m2 = moments(y.to(ACC_DTYPE), mask, None)
        store_moments(part_ptr + (row * C_BLOCKED + co) * 3, count, mean, m2, co < C_BLOCKED)


@triton.autotune(configs=_channel_configs(), key=_CHANNELS_FWD_KEY, prune_configs_by=_PRUNE_CHANNELS,
                 cache_results=True)
@triton.jit
def _dw_fwd_channels_kernel(
    x_ptr, wt_ptr, b_ptr, scale_ptr, shift_ptr, y_ptr, part_ptr,
    H, W, OH, OW, C_BLOCKED, MULT, P_TOTAL, WT_PITCH,
    sxn, sxc, sxh, sxw, syn, syc, syh, syw,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    KH: tl.constexpr, KW: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr, ACT: tl.constexpr, STATS: tl.constexpr, INT64: tl.constexpr,
    ACC_DTYPE: tl.constexpr, ALIGN: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    n, oh, ow, co, mask_p, mask_c = _pixel_channel_tile(P_TOTAL, C_BLOCKED, OH, OW, INT64, BLOCK_P, BLOCK_C)
    # ALIGN (host: _pixel_align): every pixel offset of x and y and the channel count are multiples of it.
    # Triton proves alignment only from arguments divisible by 16, which ShuffleNetV2's 58/116/232 channels
    # are not: without the hints their loads and stores are one element each. The channel mask is taken in
    # units of ALIGN so that Triton sees it constant over a vector (the same mask, as C_BLOCKED % ALIGN == 0).
    mask_c = channel_mask(co, C_BLOCKED, ALIGN)
    x_chan = x_ptr + ((co // MULT) * sxc)[None, :]
    ih0 = oh * stride_h - pad_h
    iw0 = ow * stride_w - pad_w
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=ACC_DTYPE)
    for r in range(KH):
        ih = ih0 + r * dil_h
        ok_h = mask_p & (ih >= 0) & (ih < H)
        x_row = n * sxn + ih * sxh
        # wt: (KH * KW, WT_PITCH) in ACC_DTYPE, covering every channel a block names (_taps_by_channel), so a
        # tap's channels are one unmasked, aligned run (vector loads, no zero fill, no convert).
        w_row = wt_ptr + (r * KW) * WT_PITCH + co
        for s in tl.static_range(KW):
            iw = iw0 + s * dil_w
            ok = ok_h & (iw >= 0) & (iw < W)
            x_pix = tl.multiple_of(x_row + iw * sxw, ALIGN)
            xv = tl.load(x_chan + x_pix[:, None], mask=ok[:, None] & mask_c[None, :], other=0.0)
            wv = tl.load(w_row + s * WT_PITCH)
            acc += xv.to(ACC_DTYPE) * wv[None, :]
    # Statistics rows are the pixel tiles (program_id 0).
    y_pix = tl.multiple_of(n * syn + oh * syh + ow * syw, ALIGN)
    conv_epilogue(acc, b_ptr, scale_ptr, shift_ptr, y_ptr, part_ptr, y_pix, co, syc,
                  mask_p, mask_c, tl.program_id(0), C_BLOCKED, HAS_BIAS, HAS_SCALE, HAS_SHIFT, ACT, STATS,
                  INT64, ACC_DTYPE)


# The row walk (stride 1, dilation 1, one filter per channel, KH <= _ROWS_MAX_KH, no statistics): a program
# owns one image's BLOCK_W x BLOCK_C strip of ROWS output rows and walks down the input rows it needs. Each
# input row's KW windows are loaded and converted once and feed the KH output rows that use that row,
# whose sums wait in a ring of KH accumulators (a tuple carried by the loop; the oldest completes and is
# stored, then the ring turns). The channels kernel loads and converts every input element KH x KW times.
_ROWS_MAX_KH = 7


def _row_configs():
    if interpreting():
        return [cfg(1, BLOCK_W=8, BLOCK_C=16, ROWS=4)]
    return [cfg(4, BLOCK_W=16, BLOCK_C=64, ROWS=16), cfg(4, BLOCK_W=32, BLOCK_C=32, ROWS=16),
            cfg(4, BLOCK_W=32, BLOCK_C=64, ROWS=8), cfg(4, BLOCK_W=64, BLOCK_C=32, ROWS=8),
            cfg(4, BLOCK_W=8, BLOCK_C=128, ROWS=16), cfg(2, BLOCK_W=16, BLOCK_C=16, ROWS=8)]


_prune_row_blocks = prune_to_problem({"BLOCK_C": "C_BLOCKED", "BLOCK_W": "OW"}, floor=8)


def _reachable_rows(configs, named_args, **kwargs):
    """fp64 keeps the tiles of at most 8 outputs per thread and row (sm_90: the ring of 16 spills)."""
    if named_args[next(iter(named_args))].element_size() != 8:
        return configs
    return _at_most_8_per_thread(configs, "BLOCK_W") or configs


def _prune_rows(configs, named_args, **kwargs):
    return _prune_row_blocks(_reachable_rows(configs, named_args, **kwargs), named_args, **kwargs)


_prune_rows.reachable = _reachable_rows
_PRUNE_ROWS = {"early_config_prune": _prune_rows}


@triton.autotune(configs=_row_configs(), key=[*_CHANNELS_FWD_KEY, "OH"], prune_configs_by=_PRUNE_ROWS,
                 cache_results=True)
@triton.jit
def _dw_fwd_rows_kernel(
    x_ptr, wt_ptr, b_ptr, scale_ptr, shift_ptr, y_ptr,
    H, W, OH, OW, C_BLOCKED, WT_PITCH,
    sxn, sxh, sxw, syn, syh, syw, pad_h, pad_w,
    KH: tl.constexpr, KW: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr, ACT: tl.constexpr, INT64: tl.constexpr, ACC_DTYPE: tl.constexpr,
    ALIGN: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr, ROWS: tl.constexpr,
):
    n, oh0, ow = _band_strip(tl.cdiv(OH, ROWS), OW, INT64, ROWS, BLOCK_W)
    co = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = channel_mask(co, C_BLOCKED, ALIGN)
    mask_w = ow < OW
    x_img = x_ptr + n * sxn + co[None, :]
    y_img = y_ptr + n * syn + co[None, :]
    w_tap = wt_ptr + co  # + (r * KW + s) * WT_PITCH: tap (r, s), unmasked (_taps_by_channel)
    ring = ()
    for j in tl.static_range(KH):
        ring = ring + (tl.zeros((BLOCK_W, BLOCK_C), dtype=ACC_DTYPE),)
    # Input row ih = oh0 - pad_h + i feeds output rows oh0 + i - r (tap r); ring slot j holds output row
    # oh0 + i - (KH - 1) + j, so slot 0 takes its last row (r = KH - 1) now and is complete.
    # (a chunk may hold fewer than ROWS rows: the last one, or maps shorter than ROWS)
    for i in range(tl.minimum(ROWS, OH - oh0) + KH - 1):
        ih = oh0 - pad_h + i
        ok_h = (ih >= 0) & (ih < H)
        for s in tl.static_range(KW):
            iw = ow - pad_w + s
            ok = ok_h & (iw >= 0) & (iw < W)
            x_pix = tl.multiple_of(ih * sxh + iw * sxw, ALIGN)
            xv = tl.load(x_img + x_pix[:, None], mask=ok[:, None] & mask_c[None, :], other=0.0).to(ACC_DTYPE)
            turned = ()
            for j in tl.static_range(KH):
                wv = tl.load(w_tap + ((KH - 1 - j) * KW + s) * WT_PITCH)
                turned = turned + (ring[j] + xv * wv[None, :],)
            ring = turned
        oh = oh0 + i - (KH - 1)
        done = affine_act(ring[0], b_ptr, scale_ptr, shift_ptr, co[None, :], mask_c[None, :], HAS_BIAS, HAS_SCALE,
                          HAS_SHIFT, ACT, ACC_DTYPE)
        y_pix = tl.multiple_of(oh * syh + ow * syw, ALIGN)
        ok_out = (oh >= oh0) & (oh < OH)
        tl.store(y_img + y_pix[:, None], done.to(y_ptr.dtype.element_ty),
                 mask=(ok_out & mask_w)[:, None] & mask_c[None, :])
        rest = ()
        for j in tl.static_range(1, KH):
            rest = rest + (ring[j],)
        ring = rest + (tl.zeros((BLOCK_W, BLOCK_C), dtype=ACC_DTYPE),)


# The NCHW row walk (same routes as _row_walk, any strides within the plane): a program owns one (image,
# channel) plane's BLOCK_W output columns over ROWS output rows, lanes along W. The filter is KH x KW scalars
# loaded once; each input row's KW windows are loaded and converted once and feed the KH output rows that use
# the row through a ring of KH accumulators, as in _dw_fwd_rows_kernel. _dw_fwd_spatial_kernel loads and
# converts every input element KH x KW times with a bounds test each (sm_90, bf16 3x3: 98 SASS per output).
def _plane_row_configs():
    if interpreting():
        return [cfg(1, BLOCK_W=8, ROWS=4)]
    # 1-4 pixels per thread: the windows are unaligned 2-byte loads anyway (shifted by one column each).
    return [cfg(1, BLOCK_W=128, ROWS=16), cfg(1, BLOCK_W=64, ROWS=16), cfg(2, BLOCK_W=256, ROWS=8),
            cfg(2, BLOCK_W=128, ROWS=32), cfg(4, BLOCK_W=512, ROWS=8), cfg(1, BLOCK_W=32, ROWS=32)]


_PRUNE_PLANE_ROWS = {"early_config_prune": prune_to_problem({"BLOCK_W": "OW"}, floor=32)}


@triton.autotune(configs=_plane_row_configs(), key=["OH", "OW", "KH", "KW", "HAS_BIAS", "HAS_SCALE", "HAS_SHIFT",
                                                   "ACT", "INT64"], prune_configs_by=_PRUNE_PLANE_ROWS,
                 cache_results=True)
@triton.jit
def _dw_fwd_plane_rows_kernel(
    x_ptr, w_ptr, b_ptr, scale_ptr, shift_ptr, y_ptr,
    H, W, OH, OW, C_OUT, MULT,
    sxn, sxc, sxh, sxw, swo, swh, sww, syn, syc, syh, syw, pad_h, pad_w,
    KH: tl.constexpr, KW: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr, ACT: tl.constexpr, INT64: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_W: tl.constexpr, ROWS: tl.constexpr,
):
    plane, oh0, ow = _band_strip(tl.cdiv(OH, ROWS), OW, INT64, ROWS, BLOCK_W)  # plane n * C_OUT + co
    n = plane // C_OUT
    co = plane % C_OUT
    mask_w = ow < OW
    x_plane = x_ptr + n * sxn + (co // MULT) * sxc
    y_plane = y_ptr + n * syn + co * syc
    taps = ()
    for k in tl.static_range(KH * KW):
        taps = taps + (tl.load(w_ptr + co * swo + (k // KW) * swh + (k % KW) * sww).to(ACC_DTYPE),)
    ring = ()
    for j in tl.static_range(KH):
        ring = ring + (tl.zeros((BLOCK_W,), dtype=ACC_DTYPE),)
    # Input row ih = oh0 - pad_h + i feeds output rows oh0 + i - r (tap r); ring slot j holds output row
    # oh0 + i - (KH - 1) + j, so slot 0 takes its last row (r = KH - 1) now and is complete.
    for i in range(tl.minimum(ROWS, OH - oh0) + KH - 1):
        ih = oh0 - pad_h + i
        ok_h = (ih >= 0) & (ih < H)
        for s in tl.static_range(KW):
            iw = ow - pad_w + s
            xv = tl.load(x_plane + ih * sxh + iw * sxw, mask=ok_h & (iw >= 0) & (iw < W), other=0.0).to(ACC_DTYPE)
            turned = ()
            for j in tl.static_range(KH):
                turned = turned + (ring[j] + xv * taps[(KH - 1 - j) * KW + s],)
            ring = turned
        oh = oh0 + i - (KH - 1)
        done = affine_act(ring[0], b_ptr, scale_ptr, shift_ptr, co, co < C_OUT, HAS_BIAS, HAS_SCALE, HAS_SHIFT,
                          ACT, ACC_DTYPE)
        tl.store(y_plane + oh * syh + ow * syw, done.to(y_ptr.dtype.element_ty),
                 mask=(oh >= oh0) & (oh < OH) & mask_w)
        rest = ()
        for j in tl.static_range(1, KH):
            rest = rest + (ring[j],)
        ring = rest + (tl.zeros((BLOCK_W,), dtype=ACC_DTYPE),)

# ------------------------------------------------------------------------------------ input gradient
# grad_in[n, c, h, w] = sum_j sum_(r,s) grad_out[n, c*MULT + j, oh, ow] * w[c*MULT + j, r, s]
# over the taps with h = oh*stride_h - pad_h + r*dil_h (and likewise for w): a gather, so no atomics.
@triton.jit
def _tap_source(i, pad, r, dil, stride, OUT, UNIT_STRIDE: tl.constexpr):
    """Output coordinate that reads input coordinate ``i`` through tap ``r``, and whether it exists."""
    num = i + pad - r * dil
    if UNIT_STRIDE:
        return num, (num >= 0) & (num < OUT)
    o = num // stride
    # `num >= 0` matters: integer division truncates towards zero, so negative num must be masked.
    return o, (num >= 0) & (num - o * stride == 0) & (o < OUT)


@triton.autotune(configs=_spatial_configs(), key=_KEY, cache_results=True)
@triton.jit
def _dw_dgrad_spatial_kernel(
    go_ptr, w_ptr, gi_ptr,
    H, W, OH, OW, C_BLOCKED, MULT,
    sgn, sgc, sgh, sgw, swo, swh, sww, sin, sic, sih, siw,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    KH: tl.constexpr, KW: tl.constexpr, UNIT_STRIDE: tl.constexpr, INT64: tl.constexpr,
    ACC_DTYPE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    n, c, h, w, _tile, _tiles = _plane_tile(C_BLOCKED, H, W, INT64, BLOCK_H, BLOCK_W)
    acc = tl.zeros((BLOCK_H, BLOCK_W), dtype=ACC_DTYPE)
    for j in range(MULT):
        co = c * MULT + j
        go_plane = go_ptr + n * sgn + co * sgc
        for r in range(KH):
            oh, ok_h = _tap_source(h, pad_h, r, dil_h, stride_h, OH, UNIT_STRIDE)
            go_row = go_plane + (oh * sgh)[:, None]
            w_row = w_ptr + co * swo + r * swh
            for s in tl.static_range(KW):
                ow, ok_w = _tap_source(w, pad_w, s, dil_w, stride_w, OW, UNIT_STRIDE)
                g = tl.load(go_row + (ow * sgw)[None, :], mask=ok_h[:, None] & ok_w[None, :], other=0.0)
                acc += g.to(ACC_DTYPE) * tl.load(w_row + s * sww).to(ACC_DTYPE)
    mask = (h < H)[:, None] & (w < W)[None, :]
    gi_off = n * sin + c * sic + (h * sih)[:, None] + (w * siw)[None, :]
    tl.store(gi_ptr + gi_off, acc.to(gi_ptr.dtype.element_ty), mask=mask)


@triton.autotune(configs=_channel_configs(), key=_CHANNELS_DGRAD_KEY, prune_configs_by=_PRUNE_CHANNELS,
                 cache_results=True)
@triton.jit
def _dw_dgrad_channels_kernel(
    go_ptr, wt_ptr, gi_ptr,
    H, W, OH, OW, C_BLOCKED, MULT, P_TOTAL, WT_PITCH,
    sgn, sgc, sgh, sgw, sin, sic, sih, siw,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    KH: tl.constexpr, KW: tl.constexpr, UNIT_STRIDE: tl.constexpr, INT64: tl.constexpr,
    ACC_DTYPE: tl.constexpr, ALIGN: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    n, h, w, c, mask_p, mask_c = _pixel_channel_tile(P_TOTAL, C_BLOCKED, H, W, INT64, BLOCK_P, BLOCK_C)
    mask_c = channel_mask(c, C_BLOCKED, ALIGN)
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=ACC_DTYPE)
    for j in range(MULT):
        co = c * MULT + j
        go_chan = go_ptr + (co * sgc)[None, :]
        for r in range(KH):
            oh, ok_h = _tap_source(h, pad_h, r, dil_h, stride_h, OH, UNIT_STRIDE)
            ok_h = ok_h & mask_p
            go_row = n * sgn + oh * sgh
            w_row = wt_ptr + (r * KW) * WT_PITCH + co  # (see the forward: one unmasked run per tap)
            for s in tl.static_range(KW):
                ow, ok_w = _tap_source(w, pad_w, s, dil_w, stride_w, OW, UNIT_STRIDE)
                ok = ok_h & ok_w
                go_pix = tl.multiple_of(go_row + ow * sgw, ALIGN)
                g = tl.load(go_chan + go_pix[:, None], mask=ok[:, None] & mask_c[None, :], other=0.0)
                wv = tl.load(w_row + s * WT_PITCH)
                acc += g.to(ACC_DTYPE) * wv[None, :]
    store_tile(gi_ptr, tl.multiple_of(n * sin + h * sih + w * siw, ALIGN), c, sic, acc, mask_p, mask_c)


# Strided input gradient, by phases (equal strides S >= 2, dilation 1, one filter per channel, both tensors
# channels-last; _phase_walk). Write the padding as pad = S * PQ + PH (0 <= PH < S): input row S*i + qh
# reads grad_out rows i + PQ + (qh + PH - r) / S through exactly the taps r with qh + PH - r divisible by S,
# and likewise for columns. So input rows and columns split into S x S phases, each a small dense
# correlation of grad_out (3x3 at stride 2: phases of 1, 2, 2 and 4 taps), and grad_out pixel (i + dr, j + dc)
# serves every phase of input block (i, j) that needs offset (dr, dc). A program owns BLOCK_W blocks j of one
# image's ROWS block rows i (BLOCK_C channels): per block row it loads and converts each grad_out window
# (dr, dc) once, then computes and stores the S x S phases. The channels kernel instead tests all KH x KW
# taps of every input pixel (a division and a mask per tap), 68 SASS per input-gradient element at 3x3 / 2.
@triton.constexpr_function
def _phase_window(row_num, col_num, S, DR0, DC0, NDC):
    """Index in the kernel's windows tuple of grad_out offset (row_num / S, col_num / S)."""
    return (row_num // S - DR0) * NDC + col_num // S - DC0


@triton.jit
def _dw_dgrad_phases_kernel(
    go_ptr, wt_ptr, gi_ptr,
    H, W, OH, OW, C_BLOCKED, WT_PITCH, ROW_BLOCKS,
    sgn, sgh, sgw, sin, sih, siw, PQ_H, PQ_W,
    KH: tl.constexpr, KW: tl.constexpr, S: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,
    DR0: tl.constexpr, NDR: tl.constexpr, DC0: tl.constexpr, NDC: tl.constexpr,
    INT64: tl.constexpr, ACC_DTYPE: tl.constexpr, ALIGN: tl.constexpr, BLOCK_W: tl.constexpr,
    BLOCK_C: tl.constexpr, ROWS: tl.constexpr,
):
    # DR0 .. DR0 + NDR - 1: the grad_out row offsets any phase reads ((q + PH - r) / S over q < S, r < KH;
    # _phase_offsets); DC0, NDC the same for columns.
    n, i0, j = _band_strip(ROW_BLOCKS, tl.cdiv(W, S), INT64, ROWS, BLOCK_W)
    co = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = channel_mask(co, C_BLOCKED, ALIGN)
    g_img = go_ptr + n * sgn + co[None, :]
    i_img = gi_ptr + n * sin + co[None, :]
    w_tap = wt_ptr + co  # + (r * KW + s) * WT_PITCH (_taps_by_channel)
    for i in range(i0, tl.minimum(i0 + ROWS, tl.cdiv(H, S))):
        windows = ()
        for dr in tl.static_range(NDR):
            oh = i + PQ_H + DR0 + dr
            ok_h = (oh >= 0) & (oh < OH)
            for dc in tl.static_range(NDC):
                ow = j + PQ_W + DC0 + dc
                ok = ok_h & (ow >= 0) & (ow < OW)
                g_pix = tl.multiple_of(oh * sgh + ow * sgw, ALIGN)
                windows = windows + (tl.load(g_img + g_pix[:, None], mask=ok[:, None] & mask_c[None, :],
                                             other=0.0).to(ACC_DTYPE),)
        for qh in tl.static_range(S):
            for qw in tl.static_range(S):
                acc = tl.zeros((BLOCK_W, BLOCK_C), dtype=ACC_DTYPE)
                for r in tl.static_range(KH):
                    if (qh + PH - r) % S == 0:
                        for s in tl.static_range(KW):
                            if (qw + PW - s) % S == 0:
                                wv = tl.load(w_tap + (r * KW + s) * WT_PITCH)
                                acc += windows[_phase_window(qh + PH - r, qw + PW - s, S, DR0, DC0, NDC)] * wv[None, :]
                ih = i * S + qh
                iw = j * S + qw
                ok = (ih < H) & (iw < W)
                i_pix = tl.multiple_of(ih * sih + iw * siw, ALIGN)
                tl.store(i_img + i_pix[:, None], acc.to(gi_ptr.dtype.element_ty), mask=ok[:, None] & mask_c[None, :])

# ----------------------------------------------------------------------------------- weight gradient
# grad_w[co, r, s] = sum over (n, oh, ow) of grad_out[n, co, oh, ow] * x[n, co // MULT, ih, iw].
# A program owns BLOCK_C channels x BLOCK_T taps and one contiguous chunk of the flattened pixels; it
# reads each grad_out tile once and gathers the input at all its taps as one 3-D tile, so the reduction
# over pixels happens in registers and only [BLOCK_T, BLOCK_C] sums leave the program.
def _wgrad_configs():
    if interpreting():
        return [cfg(1, BLOCK_P=32, BLOCK_C=4)]
    # The input tile is BLOCK_T x BLOCK_P x BLOCK_C (BLOCK_T is up to 16 taps): keep it near 8K elements.
    return [cfg(8, BLOCK_P=16, BLOCK_C=32), cfg(8, BLOCK_P=32, BLOCK_C=16), cfg(8, BLOCK_P=8, BLOCK_C=64),
            cfg(4, BLOCK_P=64, BLOCK_C=4), cfg(4, BLOCK_P=128, BLOCK_C=2), cfg(4, BLOCK_P=256, BLOCK_C=1)]


def _prune_wgrad(configs, named_args, **kwargs):
    cap = max(2, triton.next_power_of_2(named_args["C_BLOCKED"]))
    chunk = named_args["P_CHUNK"]
    kept = [c for c in configs if c.kwargs["BLOCK_C"] <= cap and chunk % c.kwargs["BLOCK_P"] == 0]
    return kept or configs[-1:]


@triton.autotune(configs=_wgrad_configs(), key=[*_KEY, "CHANNELS_LAST", "ATOMIC", "ALIGN"],
                 prune_configs_by={"early_config_prune": _prune_wgrad}, cache_results=True,
                 reset_to_zero=["dw_ptr"])
@triton.jit
def _dw_wgrad_kernel(
    go_ptr, x_ptr, dw_ptr,
    H, W, OH, OW, C_BLOCKED, MULT, P_TOTAL, P_CHUNK,
    sgn, sgc, sgh, sgw, sxn, sxc, sxh, sxw,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    KH: tl.constexpr, KW: tl.constexpr, BLOCK_T: tl.constexpr, CHANNELS_LAST: tl.constexpr,
    ATOMIC: tl.constexpr, INT64: tl.constexpr, ACC_DTYPE: tl.constexpr, ALIGN: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # ALIGN (host: _pixel_align; 1 unless both tensors are channels-last with unit channel stride): every
    # pixel offset and the channel count are multiples of it, so ShuffleNetV2's 58 / 116 / 232 channels load
    # 4 / 8 / 16 bytes at a time instead of 2 (as in the forward's channels kernel).
    co = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    split = tl.program_id(2)
    mask_c = channel_mask(co, C_BLOCKED, ALIGN)
    mask_t = t < KH * KW
    r = t // KW
    s = t % KW
    ci = co // MULT
    start = split * P_CHUNK
    if INT64:
        start = start.to(tl.int64)
    # Products summed per pixel lane in the loop, over the lanes once after it: a sum over BLOCK_P in every
    # trip was a cross-thread reduction (sm_90: 128 SHFL.BFLY + 128 FADD against 32 FFMA a trip, ~280
    # instructions per gradient element at 3x3; 119 without). Not with 64-bit offsets: the per-lane sums
    # beside them spilled 100-750 B on sm_90 (tensors past 2^31 elements, where speed matters less).
    if INT64:
        acc = tl.zeros((BLOCK_T, BLOCK_C), dtype=ACC_DTYPE)
    else:
        acc = tl.zeros((BLOCK_T, BLOCK_P, BLOCK_C), dtype=ACC_DTYPE)
    for p0 in range(0, P_CHUNK, BLOCK_P):
        p = start + p0 + tl.arange(0, BLOCK_P)
        mask_p = p < P_TOTAL
        n, oh, ow = pix(p, OH, OW)
        g = tl.load(go_ptr + tl.multiple_of(n * sgn + oh * sgh + ow * sgw, ALIGN)[:, None] + (co * sgc)[None, :],
                    mask=mask_p[:, None] & mask_c[None, :], other=0.0).to(ACC_DTYPE)
        ih = (oh * stride_h - pad_h)[None, :] + (r * dil_h)[:, None]  # [T, P]
        iw = (ow * stride_w - pad_w)[None, :] + (s * dil_w)[:, None]
        ok = mask_t[:, None] & mask_p[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        x_off = tl.multiple_of((n * sxn)[None, :] + ih * sxh + iw * sxw, [ALIGN, ALIGN])
        xv = tl.load(x_ptr + x_off[:, :, None] + (ci * sxc)[None, None, :],
                     mask=ok[:, :, None] & mask_c[None, None, :], other=0.0)
        if INT64:
            acc += tl.sum(xv.to(ACC_DTYPE) * g[None, :, :], axis=1)
        else:
            acc += xv.to(ACC_DTYPE) * g[None, :, :]
    if INT64:
        sums = acc
    else:
        sums = tl.sum(acc, axis=1)
    # dw is [splits, C_out, KH*KW] (or [C_out, KH*KW] accumulated atomically), fp32/fp64.
    dw_off = split * (C_BLOCKED * KH * KW) + co[None, :] * (KH * KW) + t[:, None]
    mask = mask_t[:, None] & mask_c[None, :]
    if ATOMIC:
        tl.atomic_add(dw_ptr + co[None, :] * (KH * KW) + t[:, None], sums, mask=mask)
    else:
        tl.store(dw_ptr + dw_off, sums, mask=mask)


# The weight gradient's row walk (one filter per channel, channels-last x and gradient with unit channel
# stride, KW <= _WGRAD_ROWS_MAX_KW; _wgrad_row_walk): a program owns BLOCK_C channels, TR of the KH tap rows
# (all of them, or one where all would not fit in registers) and a chunk of strips, a strip being one
# image's BLOCK_W output columns over a band of output rows. Products accumulate per lane (TR x KW tiles of
# BLOCK_W x BLOCK_C) across all the program's strips and are summed over the lanes once at the end: no
# per-pixel (n, oh, ow) division and no tap padding (9 -> 16) as in _dw_wgrad_kernel.
#   RING (stride 1, dilation 1): the program walks down the band's input rows; each input row's KW windows
#       are loaded and converted once and meet the TR gradient rows that pair with the row through some tap
#       row, which wait in a ring (a tuple carried by the loop: one row loaded per step, the oldest dropped).
#       An input element is converted once per TR taps.
#   otherwise (strides, dilations): the program walks down the band's gradient rows; each meets the KW
#       windows of its TR input rows, converted once per tap (stride 2 shares little between rows).
@triton.jit
def _dw_wgrad_rows_kernel(
    go_ptr, x_ptr, dw_ptr,
    H, W, OH, OW, C_BLOCKED, STRIPS, STRIP_CHUNK, BANDS, BAND_ROWS,
    sgn, sgc, sgh, sgw, sxn, sxc, sxh, sxw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    KH: tl.constexpr, KW: tl.constexpr, TR: tl.constexpr, RING: tl.constexpr, ATOMIC: tl.constexpr,
    INT64: tl.constexpr, ACC_DTYPE: tl.constexpr, ALIGN: tl.constexpr, BLOCK_W: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    co = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    r0 = tl.program_id(1) * TR  # this program's first tap row
    split = tl.program_id(2)
    mask_c = channel_mask(co, C_BLOCKED, ALIGN)
    col_blocks = tl.cdiv(OW, BLOCK_W)
    acc = ()
    for k in tl.static_range(TR * KW):
        acc = acc + (tl.zeros((BLOCK_W, BLOCK_C), dtype=ACC_DTYPE),)
    first = split * STRIP_CHUNK
    for strip in range(first, tl.minimum(first + STRIP_CHUNK, STRIPS)):
        # (image, band, column block), column blocks fastest (neighbours share their halo in L2).
        u = strip
        if INT64:
            u = u.to(tl.int64)
        n = u // (BANDS * col_blocks)
        oh0 = (u // col_blocks) % BANDS * BAND_ROWS
        ow = (u % col_blocks) * BLOCK_W + tl.arange(0, BLOCK_W)
        rows = tl.minimum(BAND_ROWS, OH - oh0)
        mask_w = ow < OW
        g_img = go_ptr + n * sgn + (co * sgc)[None, :]
        x_img = x_ptr + n * sxn + (co * sxc)[None, :]
        if RING:
            ring = ()
            for t in tl.static_range(TR):
                ring = ring + (tl.zeros((BLOCK_W, BLOCK_C), dtype=ACC_DTYPE),)
            # Step i loads gradient row oh0 + i into slot 0; slot t then holds row oh0 + i - t, which meets
            # input row ih = oh0 + i - pad_h + r0 through tap row r0 + t (the same ih for every slot). The
            # last TR - 1 steps load nothing (rows past the band) and let the ring's last rows meet theirs.
            for i in range(rows + TR - 1):
                oh = oh0 + i
                g_pix = tl.multiple_of(oh * sgh + ow * sgw, ALIGN)
                gv = tl.load(g_img + g_pix[:, None], mask=((i < rows) & mask_w)[:, None] & mask_c[None, :],
                             other=0.0).to(ACC_DTYPE)
                turned = (gv,)
                for t in tl.static_range(TR - 1):
                    turned = turned + (ring[t],)
                ring = turned
                windows = _input_windows(x_img, oh - pad_h + r0, ow - pad_w, H, W, sxh, sxw, 1, mask_c, KW,
                                         ACC_DTYPE, ALIGN)
                summed = ()
                for k in tl.static_range(TR * KW):
                    summed = summed + (acc[k] + ring[k // KW] * windows[k % KW],)
                acc = summed
        else:
            for i in range(rows):
                oh = oh0 + i
                g_pix = tl.multiple_of(oh * sgh + ow * sgw, ALIGN)
                gv = tl.load(g_img + g_pix[:, None], mask=mask_w[:, None] & mask_c[None, :],
                             other=0.0).to(ACC_DTYPE)
                summed = ()
                for t in tl.static_range(TR):
                    windows = _input_windows(x_img, oh * stride_h - pad_h + (r0 + t) * dil_h,
                                             ow * stride_w - pad_w, H, W, sxh, sxw, dil_w, mask_c, KW,
                                             ACC_DTYPE, ALIGN)
                    for s in tl.static_range(KW):
                        summed = summed + (acc[t * KW + s] + gv * windows[s],)
                acc = summed
    # dw is [splits, C_out, KH*KW] (or [C_out, KH*KW] accumulated atomically), fp32/fp64.
    for k in tl.static_range(TR * KW):
        tap = (r0 + k // KW) * KW + k % KW
        total = tl.sum(acc[k], axis=0)
        if ATOMIC:
            tl.atomic_add(dw_ptr + co * (KH * KW) + tap, total, mask=mask_c)
        else:
            tl.store(dw_ptr + split * (C_BLOCKED * KH * KW) + co * (KH * KW) + tap, total, mask=mask_c)


@triton.jit
def _input_windows(x_img, ih, iw0, H, W, sxh, sxw, dil_w, mask_c, KW: tl.constexpr, ACC_DTYPE: tl.constexpr,
                   ALIGN: tl.constexpr):
    """The KW windows of input row ih that tap columns 0..KW-1 read: window s at columns iw0 + s * dil_w
    (iw0 per lane), zero outside the image, converted to the accumulator's dtype."""
    ok_h = (ih >= 0) & (ih < H)
    windows = ()
    for s in tl.static_range(KW):
        iw = iw0 + s * dil_w
        ok = ok_h & (iw >= 0) & (iw < W)
        x_pix = tl.multiple_of(ih * sxh + iw * sxw, ALIGN)
        windows = windows + (tl.load(x_img + x_pix[:, None], mask=ok[:, None] & mask_c[None, :],
                                     other=0.0).to(ACC_DTYPE),)
    return windows


# ------------------------------------------------------------------------------------- host wrappers
def _w_strides(w: torch.Tensor) -> tuple[int, int, int]:
    return (w.stride(0), w.stride(2), w.stride(3))


def _taps_by_channel(w: torch.Tensor, c_in: int) -> torch.Tensor:
    """The filter as the channels kernels read it: (KH * KW, pitch), tap-major, in the accumulator's dtype
    (exact). A tap's channels are then one aligned run loaded without a mask: vectors instead of one element
    per channel at the filter's stride of KH * KW, and no convert in the loop. Costs one small copy kernel
    per call (C_out * KH * KW elements).

    The pitch covers every output channel c * MULT + j a launched channel block can name: blocks of C_out
    (forward) or of C_in, each reading MULT filters (input gradient), so C_in rounded up to a multiple of
    every BLOCK_C, times MULT. Past C_out the rows are left unwritten: those channels are masked at every
    store and in the statistics (tl.where), so their values never reach a result."""
    c_out, _, kh, kw = w.shape
    pitch = triton.cdiv(c_in, _WIDEST_BLOCK_C) * _WIDEST_BLOCK_C * (c_out // c_in)
    wt = w.new_empty((kh * kw, pitch), dtype=acc_dtype(w.dtype))
    wt[:, :c_out].copy_(w.reshape(c_out, kh * kw).t())
    return wt


def _pixel_align(c_in: int, c_out: int, esize: int, *strides: tuple[int, ...]) -> int:
    """The largest of 8, 4, 2, 1 elements (at most 16 bytes) dividing the channel count and every pixel stride
    (N, H, W) of the channels-last tensors with these (N, C, H, W) strides, with unit channel stride and one
    filter per channel: each pixel's channel run then starts at a multiple of it from the tensor's base (the
    kernels' ALIGN hint). Per call, so kept to integer arithmetic."""
    if c_out != c_in or any(s[1] != 1 for s in strides):
        return 1
    return vector_align(esize, c_in, *(v for s in strides for v in (s[0], s[2], s[3])))


def _row_walk(spec: Conv2dSpec, c_in: int, c_out: int, kh: int, stats: bool) -> bool:
    """Whether a channels-last forward takes _dw_fwd_rows_kernel (else the channels kernel)."""
    return (spec.stride == (1, 1) and spec.dilation == (1, 1) and c_in == c_out and kh <= _ROWS_MAX_KH
            and not stats and ROW_WALK[0])


# Tests switch the row walk off to compare with the channels kernel.
ROW_WALK = [True]


def _rows(x, wt, bias, scale, shift, out, pad_tl, consts) -> None:
    """_dw_fwd_rows_kernel over x (channels-last, unit channel stride) into out (the same), with wt from
    _taps_by_channel; bias/scale/shift are placeholders (any tensor) where their flag is off."""
    n, c, h, wd = x.shape
    _, _, oh, ow = out.shape

    def grid(meta):
        return (n * ceil_div(oh, meta["ROWS"]) * ceil_div(ow, meta["BLOCK_W"]), ceil_div(c, meta["BLOCK_C"]))

    align = _pixel_align(c, c, x.element_size(), x.stride(), out.stride())
    sxn, _, sxh, sxw = x.stride()
    syn, _, syh, syw = out.stride()
    _dw_fwd_rows_kernel[grid](x, wt, bias, scale, shift, out, h, wd, oh, ow, c, wt.stride(0), sxn, sxh, sxw,
                              syn, syh, syw, *pad_tl, ALIGN=align, **consts)


def _plane_row_walk(spec: Conv2dSpec, kh: int, stats: bool) -> bool:
    """Whether a forward that is not channels-last takes _dw_fwd_plane_rows_kernel (else the spatial kernel)."""
    return spec.stride == (1, 1) and spec.dilation == (1, 1) and kh <= _ROWS_MAX_KH and not stats and ROW_WALK[0]


def _plane_rows(x, w, bias, scale, shift, out, pad_tl, consts) -> None:
    """_dw_fwd_plane_rows_kernel over x into out (any strides), with the (C_out, 1, KH, KW) filter w;
    bias/scale/shift are placeholders (any tensor) where their flag is off."""
    n, c_in, h, wd = x.shape
    _, c_out, oh, ow = out.shape

    def grid(meta):
        return (n * c_out * ceil_div(oh, meta["ROWS"]) * ceil_div(ow, meta["BLOCK_W"]),)

    _dw_fwd_plane_rows_kernel[grid](x, w, bias, scale, shift, out, h, wd, oh, ow, c_out, c_out // c_in,
                                    *x.stride(), *_w_strides(w), *out.stride(), *pad_tl, **consts)


def _spatial_tiles(oh: int, ow: int, blocks: dict) -> int:
    return triton.cdiv(oh, blocks["BLOCK_H"]) * triton.cdiv(ow, blocks["BLOCK_W"])


def _forward(x, w, bias, out, spec: Conv2dSpec, scale=None, shift=None, activation=None, stats=False):
    """The forward launch with its epilogue; with ``stats`` returns the (tiles, C_out, 3) partials, whose rows
    are pixel tiles (channels_last) or (image, spatial tile) pairs (NCHW)."""
    bias, scale, shift = dense(bias, scale, shift)
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    _, _, oh, ow = out.shape
    nhwc = channels_last(x)
    pixels = n * oh * ow
    kernel = _dw_fwd_channels_kernel if nhwc else _dw_fwd_spatial_kernel

    def tiles(blocks):
        return triton.cdiv(pixels, blocks["BLOCK_P"]) if nhwc else n * _spatial_tiles(oh, ow, blocks)

    # Sized for the most tiles any config makes; the launch's own count is kept.
    partials = acc_empty((max(tiles(c.kwargs) for c in kernel.configs), c_out, 3), x) if stats else None
    if nhwc:
        w = _taps_by_channel(w, c_in)
    args = (x, w, bias if bias is not None else w, scale if scale is not None else w,
            shift if shift is not None else w, out, partials if stats else out, h, wd, oh, ow, c_out,
            c_out // c_in)
    w_strides = () if nhwc else _w_strides(w)
    strides = (*x.stride(), *w_strides, *out.stride(), *conv_geometry(spec))
    consts = {"KH": kh, "KW": kw, "HAS_BIAS": bias is not None, "HAS_SCALE": scale is not None,
              "HAS_SHIFT": shift is not None, "ACT": activation_code(activation), "STATS": stats,
              **fma_flags(x.dtype, (x, w, out) + ((partials,) if stats else ()))}
    launched = LaunchedBlocks()
    if nhwc and _row_walk(spec, c_in, c_out, kh, stats) and channels_last(out):
        del consts["STATS"]
        _rows(x, w, *args[2:6], spec.pad_tl, consts)
    elif not nhwc and _plane_row_walk(spec, kh, stats):
        del consts["STATS"]
        _plane_rows(x, w, *args[2:6], spec.pad_tl, consts)
    elif nhwc:
        def grid(meta):
            return (triton.cdiv(pixels, meta["BLOCK_P"]), triton.cdiv(c_out, meta["BLOCK_C"]))

        align = _pixel_align(c_in, c_out, x.element_size(), x.stride(), out.stride())
        kernel[launched.grid(grid)](*args, pixels, w.stride(0), *strides, ALIGN=align, **consts)
    else:
        def grid(meta):
            return (n * c_out * _spatial_tiles(oh, ow, meta),)

        kernel[launched.grid(grid)](*args, *strides, **consts)
    if not stats:
        return None
    # No record when nothing ran the grid (a launch that was only compiled): keep every row there may be.
    return partials[: tiles(launched)] if launched else partials


def forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    _forward(x, w, bias, out, spec)


def forward_act(x, w, bias, scale, shift, out, spec: Conv2dSpec, activation) -> None:
    """out = act((conv + bias) * scale + shift), one rounding (the eval-mode fused conv + BN + activation)."""
    _forward(x, w, bias, out, spec, scale, shift, activation)


def forward_stats(x, w, bias, out, spec: Conv2dSpec) -> torch.Tensor:
    """out = conv + bias, and the (count, mean, M2) per tile of pixels and channel of out as stored."""
    return _forward(x, w, bias, out, spec, stats=True)


def backward_input(grad_out, w, grad_in, spec: Conv2dSpec) -> None:
    n, c_in, h, wd = grad_in.shape
    c_out, _, kh, kw = w.shape
    _, _, oh, ow = grad_out.shape
    consts = {"KH": kh, "KW": kw, "UNIT_STRIDE": spec.stride == (1, 1),
              **fma_flags(grad_out.dtype, (grad_out, w, grad_in))}
    if channels_last(grad_in) and channels_last(grad_out) and _row_walk(spec, c_in, c_out, kh, False):
        # Stride 1: the input gradient is a forward convolution of grad_out with the filter turned by 180
        # degrees and padding KH - 1 - pad (top/left), over H x W outputs: the forward's row walk.
        wt = _taps_by_channel(w.flip((2, 3)), c_in)
        flags = {"HAS_BIAS": False, "HAS_SCALE": False, "HAS_SHIFT": False, "ACT": activation_code(None)}
        del consts["UNIT_STRIDE"]
        _rows(grad_out, wt, wt, wt, wt, grad_in, (kh - 1 - spec.pad_tl[0], kw - 1 - spec.pad_tl[1]),
              {**consts, **flags})
    elif channels_last(grad_in) and channels_last(grad_out) and _phase_walk(spec, c_in, c_out, kh, kw):
        _backward_input_phases(grad_out, w, grad_in, spec, consts)
    elif channels_last(grad_in):
        pixels = n * h * wd
        wt = _taps_by_channel(w, c_in)
        strides = (*grad_out.stride(), *grad_in.stride(), *conv_geometry(spec))

        def grid(meta):
            return (triton.cdiv(pixels, meta["BLOCK_P"]), triton.cdiv(c_in, meta["BLOCK_C"]))

        align = _pixel_align(c_in, c_out, grad_in.element_size(), grad_out.stride(), grad_in.stride())
        _dw_dgrad_channels_kernel[grid](grad_out, wt, grad_in, h, wd, oh, ow, c_in, c_out // c_in, pixels,
                                        wt.stride(0), *strides, ALIGN=align, **consts)
    elif c_in == c_out and _plane_row_walk(spec, kh, False):
        # Stride 1, as above: the forward's (plane) row walk with the filter turned and padding KH - 1 - pad.
        flags = {"HAS_BIAS": False, "HAS_SCALE": False, "HAS_SHIFT": False, "ACT": activation_code(None)}
        del consts["UNIT_STRIDE"]
        turned = w.flip((2, 3))
        _plane_rows(grad_out, turned, turned, turned, turned, grad_in,
                    (kh - 1 - spec.pad_tl[0], kw - 1 - spec.pad_tl[1]), {**consts, **flags})
    else:
        args = (grad_out, w, grad_in, h, wd, oh, ow, c_in, c_out // c_in)
        strides = (*grad_out.stride(), *_w_strides(w), *grad_in.stride(), *conv_geometry(spec))
        def grid(meta):
            return (n * c_in * triton.cdiv(h, meta["BLOCK_H"]) * triton.cdiv(wd, meta["BLOCK_W"]),)

        _dw_dgrad_spatial_kernel[grid](*args, *strides, **consts)


def _phase_walk(spec: Conv2dSpec, c_in: int, c_out: int, kh: int, kw: int) -> bool:
    """Whether a channels-last input gradient takes _dw_dgrad_phases_kernel."""
    return (spec.stride[0] == spec.stride[1] > 1 and spec.dilation == (1, 1) and c_in == c_out
            and max(kh, kw) <= _ROWS_MAX_KH and ROW_WALK[0])


# 32-bit registers a thread of the phase walk gives the grad_out windows of a block row (converted): 3x3 at
# stride 2 reads 2 x 2 windows, so 8 channels (16 bytes at 16 bit). sm_90: at 64, 5x5 / 2 (3 x 3 windows
# of 4 channels) took 128 registers on 4 warps and spilled 4 B at bf16.
_PHASE_WINDOW_WORDS = 32


def _phase_offsets(k: int, pad: int, stride: int) -> tuple[int, int]:
    """(first, count) of the grad_out offsets (q + pad % stride - r) / stride over q < stride, r < k with
    q + pad % stride - r divisible by stride: those the phases of one axis read."""
    p = pad % stride
    offsets = [(q + p - r) // stride for q in range(stride) for r in range(k) if (q + p - r) % stride == 0]
    return min(offsets), max(offsets) - min(offsets) + 1


@functools.lru_cache(maxsize=1024)
def _phases_geometry(n: int, c: int, h: int, w: int, kh: int, kw: int, stride: int, pad_h: int, pad_w: int,
                     esize: int, acc_bytes: int, sms: int | None) -> tuple[dict, int, tuple[int, int]]:
    """(constexprs, row blocks, grid) of _dw_dgrad_phases_kernel."""
    (dr0, ndr), (dc0, ndc) = _phase_offsets(kh, pad_h, stride), _phase_offsets(kw, pad_w, stride)
    words = acc_bytes // 4
    per = 1 << (min(16 // esize, max(1, _PHASE_WINDOW_WORDS // (ndr * ndc * words))).bit_length() - 1)
    blocks_h, blocks_w = ceil_div(h, stride), ceil_div(w, stride)
    block_c, warps, block_w = _lane_tile(c, blocks_w, per, sms)
    base = n * ceil_div(blocks_w, block_w) * ceil_div(c, block_c)
    # Up to 16 block rows per program while that leaves 8 programs per SM (no warm-up to amortise).
    rows = 2 if sms is None else next((r for r in (16, 8, 4, 2) if base * ceil_div(blocks_h, r) >= 8 * sms), 1)
    consts = {"S": stride, "PH": pad_h % stride, "PW": pad_w % stride, "DR0": dr0, "NDR": ndr, "DC0": dc0,
              "NDC": ndc, "BLOCK_W": block_w, "BLOCK_C": block_c, "ROWS": rows, "num_warps": warps}
    row_blocks = ceil_div(blocks_h, rows)
    return consts, row_blocks, (base // ceil_div(c, block_c) * row_blocks, ceil_div(c, block_c))


def _backward_input_phases(grad_out, w, grad_in, spec: Conv2dSpec, consts: dict) -> None:
    n, c, h, wd = grad_in.shape
    _, _, oh, ow = grad_out.shape
    kh, kw = consts["KH"], consts["KW"]
    stride = spec.stride[0]
    pad_h, pad_w = spec.pad_tl
    sms = _sm_count(grad_in)
    geometry, row_blocks, grid = _phases_geometry(n, c, h, wd, kh, kw, stride, pad_h, pad_w,
                                                  grad_in.element_size(), torch.finfo(acc_dtype(grad_in.dtype)).bits // 8,
                                                  sms)
    wt = _taps_by_channel(w, c)
    sgn, _, sgh, sgw = grad_out.stride()
    sin, _, sih, siw = grad_in.stride()
    _dw_dgrad_phases_kernel[grid](
        grad_out, wt, grad_in, h, wd, oh, ow, c, wt.stride(0), row_blocks, sgn, sgh, sgw, sin, sih, siw,
        pad_h // stride, pad_w // stride, KH=kh, KW=kw, INT64=consts["INT64"], ACC_DTYPE=consts["ACC_DTYPE"],
        ALIGN=_pixel_align(c, c, grad_in.element_size(), grad_out.stride(), grad_in.stride()), **geometry,
    )


# 32-bit registers a thread of the weight gradient's row walk gives its accumulators (TR x KW x its elements):
# 3x3 at 16 bit keeps all three tap rows over 8 channels (72), 7x7 all seven over 2 (98), 13x13 one tap row
# over 8 (104), 31x31 one over 2 (62). sm_90: 142-180 registers in all, no spill; at 128, 31x31 over 4
# channels took 244-255 and fp32 spilled 16 B (scripts/triton_sm90_check.py --hopper).
_WGRAD_ACC_WORDS = 112
# The same without the ring (strides, dilations): 3x3 keeps 8 channels (72); at 112, 5x5 / 2 over 4 channels
# (bf16) and 7x7 / 3 over 2 (fp32) spilled 8 B.
_WGRAD_ACC_WORDS_STRIDED = 72


# Up to RepLKNet's 31x31 (one tap row per program there): the KW windows of an input row are unrolled.
_WGRAD_ROWS_MAX_KW = 31


def _wgrad_row_walk(x: torch.Tensor, grad_out: torch.Tensor, kw: int) -> bool:
    """Whether the weight gradient takes _dw_wgrad_rows_kernel (else _dw_wgrad_kernel): x and the gradient
    both channels-last, or neither (one channel per program; mixed layouts would read one of them across
    lanes at the pixel stride)."""
    return (x.shape[1] == grad_out.shape[1] and channels_last(x) == channels_last(grad_out)
            and kw <= _WGRAD_ROWS_MAX_KW and ROW_WALK[0])


def _sm_count(t: torch.Tensor) -> int | None:
    """SMs of t's device for the host-tiled kernels' geometry; None in the interpreter (its small tiles)."""
    return None if interpreting() else tiles.device_limits(t)[1]


def _lane_tile(c: int, width: int, per: int, sms: int | None) -> tuple[int, int, int]:
    """(BLOCK_C, warps, BLOCK_W) of a strip kernel giving each thread one pixel along W and ``per`` channels
    (one vector) along C, at most 32 lanes across C: the (channel block, warps) that pad the C x width strip
    least; within 7 % of that, the most warps (4 at most), then the widest block. The interpreter (``sms``
    None): 8-pixel blocks, so widths over 8 take several."""
    if sms is None:
        return max(per, min(64, pow2_at_least(c))), 1, 8
    shapes = [(b, w, 32 * w * per // b) for b in (per << k for k in range(6)) for w in (4, 2, 1)
              if b <= max(per, pow2_at_least(c)) and 32 * w * per >= b]
    cost = {sh: ceil_div(c, sh[0]) * sh[0] * ceil_div(width, sh[2]) * sh[2] for sh in shapes}
    low = min(cost.values())
    return max((sh for sh in shapes if cost[sh] <= 1.07 * low), key=lambda sh: (sh[1], sh[0]))


def _plane_lane_tile(width: int, per: int, sms: int | None) -> tuple[int, int, int]:
    """(1, warps, BLOCK_W) of a one-channel strip kernel with up to ``per`` pixels per thread along W: the
    block padding the width least, then the most pixels per thread, then the most warps (4 at most)."""
    if sms is None:
        return 1, 1, 8
    shapes = [(1, w, 32 * w * p) for p in (1, 2, 4, 8) if p <= per for w in (4, 2, 1)]
    return min(shapes, key=lambda sh: (ceil_div(width, sh[2]) * sh[2], -(sh[2] // (32 * sh[1])), -sh[1]))


@functools.lru_cache(maxsize=1024)
def _wgrad_rows_geometry(n: int, c: int, oh: int, ow: int, kh: int, kw: int, esize: int, acc_bytes: int,
                         ring: bool, nhwc: bool, sms: int | None) -> tuple[dict, tuple[int, ...], tuple[int, int, int]]:
    """(constexprs, (strips, strip chunk, bands, band rows), grid) of the row walk: channels-last, or (``nhwc``
    False) one channel per program with lanes along W only. ``sms`` None: the interpreter (small tiles, two
    bands and two splits where the problem has them, so every path runs)."""
    words = acc_bytes // 4
    # Without the ring a step also holds TR x KW converted windows beside as many accumulators.
    budget = _WGRAD_ACC_WORDS if ring else _WGRAD_ACC_WORDS_STRIDED
    tr = kh if kh * kw * words <= budget else 1
    # Elements per thread: one vector of at most 16 bytes, within the accumulator budget.
    per = 1 << (min(16 // esize, max(1, budget // (tr * kw * words))).bit_length() - 1)
    block_c, warps, block_w = _lane_tile(c, ow, per, sms) if nhwc else _plane_lane_tile(ow, min(4, per), sms)
    programs = ceil_div(c, block_c) * (kh // tr)
    col_blocks = ceil_div(ow, block_w)
    # Programs to aim for: 8 per SM; the image's rows are cut into bands only when images alone fall short
    # (with the ring each band re-reads TR - 1 rows of the input: bands of at least 2 TR rows).
    need = 0 if sms is None else ceil_div(8 * sms, programs)
    if sms is None:
        bands = min(2, oh)
    elif n * col_blocks < need:
        bands = max(1, min(oh // max(2, 2 * tr) if ring else oh, ceil_div(need, n * col_blocks)))
    else:
        bands = 1
    band_rows = ceil_div(oh, bands)
    bands = ceil_div(oh, band_rows)
    strips = n * bands * col_blocks
    if sms is None:
        splits = min(2, strips)
    else:
        # The per-split partials (splits x C x taps, fp32/fp64) stay below 1/16 of what the reduction reads.
        most = max(1, (2 * n * oh * ow * esize) // (16 * kh * kw * acc_bytes))
        splits = max(1, min(strips, need, most, 1024))
    chunk = ceil_div(strips, splits)
    splits = ceil_div(strips, chunk)
    consts = {"TR": tr, "BLOCK_W": block_w, "BLOCK_C": block_c, "num_warps": warps}
    return consts, (strips, chunk, bands, band_rows), (ceil_div(c, block_c), kh // tr, splits)


def _backward_weight_rows(grad_out, x, grad_w, spec: Conv2dSpec, deterministic: bool) -> None:
    n, c, h, wd = x.shape
    _, _, kh, kw = grad_w.shape
    _, _, oh, ow = grad_out.shape
    acc = acc_dtype(x.dtype)
    sms = _sm_count(x)
    ring = spec.stride == (1, 1) and spec.dilation == (1, 1)
    consts, scalars, grid = _wgrad_rows_geometry(n, c, oh, ow, kh, kw, x.element_size(),
                                                 torch.finfo(acc).bits // 8, ring, channels_last(x), sms)
    atomic = not deterministic and grid[2] > 1
    if atomic:
        buf = torch.zeros((c, kh * kw), device=x.device, dtype=acc)
    else:
        buf = torch.empty((grid[2], c, kh * kw), device=x.device, dtype=acc)
    _dw_wgrad_rows_kernel[grid](
        grad_out, x, buf, h, wd, oh, ow, c, *scalars, *grad_out.stride(), *x.stride(), *conv_geometry(spec),
        KH=kh, KW=kw, RING=ring, ATOMIC=atomic,
        ALIGN=_pixel_align(c, c, x.element_size(), x.stride(), grad_out.stride()),
        **fma_flags(x.dtype, (grad_out, x)), **consts,
    )
    total = buf if atomic else sum_splits(buf)
    grad_w.copy_(total.view(grad_w.shape))


def backward_weight(grad_out, x, grad_w, spec: Conv2dSpec, deterministic: bool | None = None) -> None:
    """``deterministic=None`` follows ``torch.are_deterministic_algorithms_enabled()``."""
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = grad_w.shape
    _, _, oh, ow = grad_out.shape
    if _wgrad_row_walk(x, grad_out, kw):
        _backward_weight_rows(grad_out, x, grad_w, spec, deterministic)
        return
    taps = kh * kw
    block_t = min(16, triton.next_power_of_2(taps))
    nhwc = channels_last(x)
    pixels = n * oh * ow
    c_blocks_est = triton.cdiv(c_out, 32 if nhwc else 4)
    # Splits of the pixel reduction: enough programs to fill the GPU, each with a long run of pixels.
    split = reduction_splits(pixels, c_blocks_est * triton.cdiv(taps, block_t), x.device, interpreter_cutoff=32,
                             min_run=2048, cap=1024)
    unit = 32 if interpreting() else 256  # a multiple of every BLOCK_P, so splits never share a pixel block
    chunk, split = split_chunks(pixels, split, unit)
    atomic = not deterministic and split > 1
    if atomic:
        buf = torch.zeros((c_out, taps), device=x.device, dtype=acc_dtype(x.dtype))
    else:
        buf = torch.empty((split, c_out, taps), device=x.device, dtype=acc_dtype(x.dtype))

    def grid(meta):
        return (triton.cdiv(c_out, meta["BLOCK_C"]), triton.cdiv(taps, block_t), split)

    _dw_wgrad_kernel[grid](
        grad_out, x, buf, h, wd, oh, ow, c_out, c_out // c_in, pixels, chunk,
        *grad_out.stride(), *x.stride(), *conv_geometry(spec),
        KH=kh, KW=kw, BLOCK_T=block_t, CHANNELS_LAST=nhwc, ATOMIC=atomic,
        ALIGN=_pixel_align(c_in, c_out, x.element_size(), x.stride(), grad_out.stride()),
        **fma_flags(x.dtype, (grad_out, x)),
    )
    # A fixed-order reduction over splits (none needed for one split).
    total = buf if atomic else sum_splits(buf)
    grad_w.copy_(total.view(grad_w.shape))


# The kernels this module gives the registry (cnnkern.ops.registry), by the name the ops ask for.
KERNELS = {"depthwise_conv2d_fwd": forward, "depthwise_conv2d_bwd_input": backward_input,
           "depthwise_conv2d_bwd_weight": backward_weight, "depthwise_conv2d_fwd_act": forward_act,
           "depthwise_conv2d_fwd_stats": forward_stats}
