"""Grouped 1x1 conv as one grouped GEMM in Triton, with the channel shuffle folded into its indexing.

Every group runs in the same launch. Output channel ``co`` is stored at (forward), and its
gradient read from (backward), ``shuffle_dest(co)``; the ReLU mask (saved output > 0) and the scale are
applied to the gradient as it is loaded, so the backward never materialises an unshuffled or masked gradient.

Forward and input gradient, two kernels each:
  slab         16-bit, unit channel strides (channels_last), reduction <= 256 (cg_in forward, cg_out input
               gradient): one program owns a tile of pixels and loops over every group (one MMA per group,
               the reduction in one K block), so its rows are read as whole runs and each pixel's output
               channels are all written by one program within a few microseconds (with a shuffle, the
               partial sectors of the stride-G stores meet in L2 instead of arriving from programs a whole
               grid apart). Channel runs get 16/8/4-byte accesses through the ALIGN hints (``vector_align``):
               the per-group kernel used 2-byte loads and stores on 20/60-channel rows (sm_90 SASS).
               Notes: group_pointwise_conv2d.md beside this file.
  per-group    everything else (fp32/fp64, NCHW, reductions > 256): the grouped GEMM below, groups on grid
               axis 2.

GEMM views (per group g), pixels m = (n, h, w) decomposed so that sliced views need no copy:
  forward       M = N*H*W,   N = Cg_out,  K = Cg_in      epilogue: +bias, *scale +shift, relu, shuffled store
  input grad    M = N*H*W,   N = Cg_in,   K = Cg_out     A = masked, unshuffled grad; B = w * scale
  weight grad   M = Cg_out,  N = Cg_in,   K = N*H*W      split-K into fp32 partials, summed in fixed order
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from cnnkern.problem.channel_map import GroupPointwiseSpec
from cnnkern.triton import interpreting, needs_int64, tiles, why_not_problem
from cnnkern.triton.tiles import (
    GEMM_PRUNE_PORTABLE,
    SMEM_PER_BLOCK,
    acc_dtype,
    affine_act,
    ceil_div,
    channel_mask,
    channels_last,
    gemm_configs,
    mma,
    mma_flags,
    one_pixel_pitch,
    pix,
    pow2_at_least,
    shuffle_dest,
    split_chunks,
    split_k,
    store_tile,
    sum_splits,
    tap_mma,
    tile_offsets,
    vector_align,
)

why_not = why_not_problem


def _configs():
    # Interpreted programs cost per operation, not per element: few large tiles run fastest.
    return gemm_configs(interpreter_blocks=(64, 32, 32), hopper=False)


_KEY = ["GEMM_M", "GEMM_N", "GEMM_K", "CHANNELS_LAST", "RELU"]


@triton.jit
def _masked_grad(go_ptr, o_ptr, go_off, o_off, mask, RELU: tl.constexpr):
    g = tl.load(go_ptr + go_off, mask=mask, other=0.0)
    if RELU:
        o = tl.load(o_ptr + o_off, mask=mask, other=0.0)
        g = tl.where(o > 0, g, tl.zeros_like(g))
    return g


@triton.jit
def _gemm_tile(GEMM_M, N_LIMIT, INT64: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """This program's group, pixel rows and channel columns (with their masks)."""
    offs_m, offs_n = tile_offsets(tl.program_id(0), tl.program_id(1), BLOCK_M, BLOCK_N, INT64)
    return tl.program_id(2), offs_m, offs_n, offs_m < GEMM_M, offs_n < N_LIMIT


@triton.autotune(configs=_configs(), key=_KEY, prune_configs_by=GEMM_PRUNE_PORTABLE, cache_results=True)
@triton.jit
def _gpw_fwd_kernel(
    x_ptr, w_ptr, b_ptr, scale_ptr, shift_ptr, y_ptr,
    H, W, Cg_in, Cg_out, OFF, CPG, SG,
    sxn, sxc, sxh, sxw, swo, swc, syn, syc, syh, syw,
    GEMM_M, GEMM_N, GEMM_K,
    CHANNELS_LAST: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
    RELU: tl.constexpr, INT64: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    g, offs_m, offs_n, mask_m, mask_n = _gemm_tile(GEMM_M, Cg_out, INT64, BLOCK_M, BLOCK_N)
    n, h, w = pix(offs_m, H, W)
    co = g * Cg_out + offs_n
    # A 1x1 conv is a single kernel tap.
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    x_row = n * sxn + h * sxh + w * sxw + (g * Cg_in) * sxc
    acc = tap_mma(acc, x_ptr, x_row, mask_m, sxc, w_ptr, co * swo, swc, Cg_in, mask_n, UPCAST, IEEE, BLOCK_K)
    acc = affine_act(acc, b_ptr, scale_ptr, shift_ptr, co[None, :], mask_n[None, :], HAS_BIAS, HAS_SCALE,
                     HAS_SHIFT, RELU, ACC_DTYPE)  # RELU as the activation code: 1 = relu, 0 = none
    store_tile(y_ptr, n * syn + h * syh + w * syw, shuffle_dest(co, OFF, CPG, SG), syc, acc, mask_m, mask_n)


@triton.autotune(configs=_configs(), key=_KEY, prune_configs_by=GEMM_PRUNE_PORTABLE, cache_results=True)
@triton.jit
def _gpw_dgrad_kernel(
    go_ptr, o_ptr, w_ptr, scale_ptr, gi_ptr,
    H, W, Cg_in, Cg_out, OFF, CPG, SG,
    sgn, sgc, sgh, sgw, son, soc, soh, sow, swo, swc, sin, sic, sih, siw,
    GEMM_M, GEMM_N, GEMM_K,
    CHANNELS_LAST: tl.constexpr, HAS_SCALE: tl.constexpr, RELU: tl.constexpr,
    INT64: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    g, offs_m, offs_n, mask_m, mask_n = _gemm_tile(GEMM_M, Cg_in, INT64, BLOCK_M, BLOCK_N)
    n, h, w = pix(offs_m, H, W)
    go_row = n * sgn + h * sgh + w * sgw
    o_row = n * son + h * soh + w * sow
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for k0 in range(0, Cg_out, BLOCK_K):
        mask_k = k0 + offs_k < Cg_out
        co = g * Cg_out + k0 + offs_k
        dc = shuffle_dest(co, OFF, CPG, SG)
        a = _masked_grad(go_ptr, o_ptr, go_row[:, None] + (dc * sgc)[None, :], o_row[:, None] + (dc * soc)[None, :],
                         mask_m[:, None] & mask_k[None, :], RELU)
        b = tl.load(w_ptr + (co * swo)[:, None] + (offs_n * swc)[None, :], mask=mask_k[:, None] & mask_n[None, :],
                    other=0.0)
        if HAS_SCALE:
            # Rounded once to the operand dtype, as the unfused grad * scale would be.
            s = tl.load(scale_ptr + co, mask=mask_k, other=0.0).to(ACC_DTYPE)
            b = (b.to(ACC_DTYPE) * s[:, None]).to(w_ptr.dtype.element_ty)
        acc = mma(acc, a, b, UPCAST, IEEE)
    store_tile(gi_ptr, n * sin + h * sih + w * siw, g * Cg_in + offs_n, sic, acc, mask_m, mask_n)


@triton.autotune(configs=_configs(), key=_KEY + ["SPLIT_K"], prune_configs_by=GEMM_PRUNE_PORTABLE, cache_results=True)
@triton.jit
def _gpw_wgrad_kernel(
    go_ptr, o_ptr, x_ptr, scale_ptr, part_ptr,
    H, W, Cg_in, Cg_out, C_out, OFF, CPG, SG,
    sgn, sgc, sgh, sgw, son, soc, soh, sow, sxn, sxc, sxh, sxw,
    GEMM_M, GEMM_N, GEMM_K, K_CHUNK,
    CHANNELS_LAST: tl.constexpr, SPLIT_K: tl.constexpr, HAS_SCALE: tl.constexpr, RELU: tl.constexpr,
    INT64: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # partials: (SPLIT_K, C_out, Cg_in) contiguous, ACC_DTYPE; summed on the host in fixed order.
    # Groups vary fastest along axis 2: the groups of one pixel chunk run together, so each sector of the
    # gradient rows (shared by all groups when shuffled) comes from DRAM once, not once per group.
    groups = C_out // Cg_out
    g = tl.program_id(2) % groups
    split = tl.program_id(2) // groups
    offs_m, offs_n = tile_offsets(tl.program_id(0), tl.program_id(1), BLOCK_M, BLOCK_N, INT64)
    offs_k = tl.arange(0, BLOCK_K)
    if INT64:
        offs_k = offs_k.to(tl.int64)
    mask_m = offs_m < Cg_out
    mask_n = offs_n < Cg_in
    co = g * Cg_out + offs_m
    dc = shuffle_dest(co, OFF, CPG, SG)
    ci = g * Cg_in + offs_n
    k_start = split * K_CHUNK
    k_end = tl.minimum(k_start + K_CHUNK, GEMM_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for k0 in range(k_start, k_end, BLOCK_K):
        k = k0 + offs_k
        mask_k = k < k_end
        n, h, w = pix(k, H, W)
        a = _masked_grad(go_ptr, o_ptr, (dc * sgc)[:, None] + (n * sgn + h * sgh + w * sgw)[None, :],
                         (dc * soc)[:, None] + (n * son + h * soh + w * sow)[None, :],
                         mask_m[:, None] & mask_k[None, :], RELU)
        b = tl.load(x_ptr + (n * sxn + h * sxh + w * sxw)[:, None] + (ci * sxc)[None, :],
                    mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc = mma(acc, a, b, UPCAST, IEEE)
    if HAS_SCALE:
        acc *= tl.load(scale_ptr + co, mask=mask_m, other=0.0).to(ACC_DTYPE)[:, None]
    p_off = split * C_out * Cg_in + (co * Cg_in)[:, None] + offs_n[None, :]
    tl.store(part_ptr + p_off, acc, mask=mask_m[:, None] & mask_n[None, :])


# ------------------------------------------------------------------------------------------ forward slab
# Tests switch it off to run the per-group kernel on problems the slab would take.
SLAB = [True]
_SLAB_MAX_K = 256  # cg_in in one K block: the A tile of 64 pixels x 256 channels is 32 KB per stage
_SLAB_MAX_N = 128  # output channels of a group per program (wider groups take several programs)


def _slab_configs():
    if interpreting():
        return [triton.Config({"BLOCK_M": 32}, num_warps=1)]
    # (pixels, warps, stages). 64+ pixels per warpgroup let sm_90 use wgmma; the pipeline runs across the
    # loop over groups (one A and one B tile per group and stage). The 1-2 stage tiles are for the widest
    # K x N blocks (256 x 128: 96 KB per stage at 64 pixels) and devices with less shared memory.
    return [triton.Config({"BLOCK_M": m}, num_warps=w, num_stages=st)
            for m, w, st in ((128, 4, 3), (128, 8, 3), (64, 4, 3), (64, 4, 4), (256, 8, 3), (128, 8, 2),
                             (64, 4, 2), (32, 4, 2), (32, 4, 1))]


def _slab_smem(bm: int, bn: int, bk: int, stages: int, esize: int) -> int:
    """Operand pipeline (one A and one B tile per stage) plus one BLOCK_M x BLOCK_N output tile: sm_90
    (triton 3.6/3.8) stages the forward's epilogue through shared memory beside the pipeline buffers, up to
    exactly that much more than the operands (64x64x64 4 stages: 73728 B, operands 65536)."""
    return max(1, stages) * (bm + bn) * bk * esize + bm * bn * esize


def _slab_tile_smem(tile, dtype: torch.dtype) -> int:
    """_slab_smem of a (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages) tile: the estimate scripts/triton_sm90_check.py
    holds the compiled slab kernels to (as tiles.tile_smem_bytes for the GEMM kernels)."""
    bm, bn, bk, _warps, stages = tile
    return _slab_smem(bm, bn, bk, stages, dtype.itemsize)


def _fitting_slab(configs, named_args, **kwargs):
    """The tiles within the device's shared memory (an sm_90 block's when it cannot be asked) with at most 64
    fp32 accumulators per thread, 32 with 64-bit offsets or per-element stores (ALIGN_Y 1: a shuffle's or an
    odd channel count's; each element carries its own address): beyond, sm_90 spills (56 B at 64 x 128 x 256
    with INT64, 40 B at 128 x 64 x 64 on 4 warps with a shuffle). Those are the tiles a launch reaches on some
    problem size; the smallest tile if none fits."""
    t = next(iter(named_args.values()))  # x (forward) or the output gradient (input gradient)
    smem, _sms = tiles.device_limits(t)
    smem = smem or SMEM_PER_BLOCK[(9, 0)]
    bn, bk, esize = kwargs["BLOCK_N"], kwargs["BLOCK_K"], t.element_size()
    per_thread = 32 if kwargs.get("INT64", False) or kwargs.get("ALIGN_Y") == 1 else 64
    kept = [c for c in configs
            if _slab_smem(c.kwargs["BLOCK_M"], bn, bk, c.num_stages, esize) <= smem
            and c.kwargs["BLOCK_M"] * bn <= per_thread * 32 * c.num_warps]
    return kept or [min(configs, key=lambda c: (c.kwargs["BLOCK_M"], c.num_stages))]


def _prune_slab(configs, named_args, **kwargs):
    """The fitting tiles no taller than the problem (the smallest fitting one if all are)."""
    fitting = _fitting_slab(configs, named_args, **kwargs)
    cap = max(32, pow2_at_least(int(named_args["GEMM_M"])))
    return [c for c in fitting if c.kwargs["BLOCK_M"] <= cap] or fitting[-1:]


# scripts/triton_sm90_check.py compiles every config a launch can reach on some problem: these.
_prune_slab.reachable = _fitting_slab
_prune_slab.smem_bytes = _slab_tile_smem


_SLAB_KEY = ["GEMM_M", "C_in", "Cg_in", "Cg_out", "GROUPS", "SHUFFLED", "PITCHED", "RELU", "HAS_BIAS", "HAS_SCALE",
             "HAS_SHIFT", "ALIGN_X", "ALIGN_W", "ALIGN_Y", "INT64"]


@triton.jit
def _slab_tile(GEMM_M, N_COLS, K, ALIGN_N: tl.constexpr, ALIGN_K: tl.constexpr, INT64: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """(pixel rows, columns, reduction indices, and their masks) of this slab program. The column tiles of a
    pixel tile are adjacent program ids: the same rows, read from L2, and sectors finished within
    microseconds."""
    col_tiles = tl.cdiv(N_COLS, BLOCK_N)
    pid = tl.program_id(0)
    pid_m = pid // col_tiles
    offs_m, offs_n = tile_offsets(pid_m, pid - pid_m * col_tiles, BLOCK_M, BLOCK_N, INT64)
    offs_k = tl.arange(0, BLOCK_K)
    return (offs_m, offs_n, offs_k, offs_m < GEMM_M, channel_mask(offs_n, N_COLS, ALIGN_N),
            channel_mask(offs_k, K, ALIGN_K))


@triton.jit
def _pixel_offsets(p, H, W, sn, sh, sw, PITCHED: tl.constexpr, ALIGN: tl.constexpr):
    """Offsets of pixels p: p * (W stride) when the tensor has one pixel pitch, else from (n, h, w)."""
    if PITCHED:
        return tl.multiple_of(p * sw, ALIGN)
    n, h, w = pix(p, H, W)
    return tl.multiple_of(n * sn + h * sh + w * sw, ALIGN)


@triton.autotune(configs=_slab_configs(), key=_SLAB_KEY, prune_configs_by={"early_config_prune": _prune_slab},
                 cache_results=True)
@triton.jit
def _gpw_slab_fwd_kernel(
    x_ptr, w_ptr, b_ptr, scale_ptr, shift_ptr, dest_ptr, y_ptr,
    H, W, GEMM_M, C_in, Cg_in, Cg_out, GROUPS, OFF,
    sxn, sxh, sxw, swo, syn, syh, syw,
    SHUFFLED: tl.constexpr, PITCHED: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
    RELU: tl.constexpr, INT64: tl.constexpr, UPCAST: tl.constexpr, ACC_DTYPE: tl.constexpr,
    ALIGN_X: tl.constexpr, ALIGN_W: tl.constexpr, ALIGN_Y: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """y[p, dest(g*cg_out + j)] = epilogue(x[p, g*cg_in : (g+1)*cg_in] @ w[g*cg_out + j, :]) for every group g.

    x, y and w have unit channel stride. ALIGN_X divides x's pixel strides and cg_in; ALIGN_W divides w's row
    stride; ALIGN_Y divides y's pixel strides, OFF and cg_out (1 with a shuffle: its stores are per element).
    With a shuffle, dest_ptr holds each channel's destination column (ChannelMap.dest_index): the map's two
    integer divisions per column cost ~40 % of the SASS when computed here (sm_90, 24->60 +sh3).
    PITCHED: x and y each have one pixel pitch (their W stride; N and H strides follow), so a pixel's offset
    is a product, not a division into (n, h, w). Programs run the column tiles of a pixel tile next to each
    other (the same input rows, from L2)."""
    offs_m, offs_n, offs_k, mask_m, mask_n, mask_k = _slab_tile(GEMM_M, Cg_out, Cg_in, ALIGN_Y, ALIGN_X, INT64,
                                                                BLOCK_M, BLOCK_N, BLOCK_K)
    x_row = _pixel_offsets(offs_m, H, W, sxn, sxh, sxw, PITCHED, ALIGN_X)
    y_row = _pixel_offsets(offs_m, H, W, syn, syh, syw, PITCHED, ALIGN_Y)
    for g in range(GROUPS):
        # Each term hinted on its own: a hint on the sum inside the loop did not reach the loads (sm_90 SASS
        # kept 2-byte loads of 24-channel rows).
        x_g = x_row + tl.multiple_of(g * Cg_in, ALIGN_X)
        a = tl.load(x_ptr + x_g[:, None] + offs_k[None, :], mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        co = g * Cg_out + offs_n
        w_g = tl.multiple_of(co * swo, ALIGN_W)
        b = tl.load(w_ptr + w_g[None, :] + offs_k[:, None], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc = mma(tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE), a, b, UPCAST, False)
        acc = affine_act(acc, b_ptr, scale_ptr, shift_ptr, co[None, :], mask_n[None, :], HAS_BIAS, HAS_SCALE,
                         HAS_SHIFT, RELU, ACC_DTYPE)  # NaN propagates through the ReLU, as in ATen
        if SHUFFLED:
            store_tile(y_ptr, y_row, tl.load(dest_ptr + co, mask=mask_n, other=0), 1, acc, mask_m, mask_n)
        else:
            y_g = y_row + tl.multiple_of(OFF + g * Cg_out, ALIGN_Y)
            store_tile(y_ptr, y_g, offs_n, 1, acc, mask_m, mask_n)


_SLAB_DGRAD_KEY = ["GEMM_M", "Cg_in", "Cg_out", "GROUPS", "SHUFFLED", "PITCHED", "RELU", "HAS_SCALE", "ALIGN_G",
                   "ALIGN_W", "ALIGN_I", "INT64"]


@triton.autotune(configs=_slab_configs(), key=_SLAB_DGRAD_KEY,
                 prune_configs_by={"early_config_prune": _prune_slab}, cache_results=True)
@triton.jit
def _gpw_slab_dgrad_kernel(
    go_ptr, o_ptr, w_ptr, scale_ptr, dest_ptr, gi_ptr,
    H, W, GEMM_M, Cg_in, Cg_out, GROUPS, OFF,
    sgn, sgh, sgw, son, soh, sow, swo, sin, sih, siw,
    SHUFFLED: tl.constexpr, PITCHED: tl.constexpr, HAS_SCALE: tl.constexpr, RELU: tl.constexpr,
    INT64: tl.constexpr, UPCAST: tl.constexpr, ACC_DTYPE: tl.constexpr,
    ALIGN_G: tl.constexpr, ALIGN_W: tl.constexpr, ALIGN_I: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """gi[p, g*cg_in + k] = sum_j gy'[p, dest(g*cg_out + j)] * w'[g*cg_out + j, k] for every group g: the
    forward slab's input gradient (gy' = gy masked by the saved output > 0 when RELU, w' = w * scale rounded
    to w's dtype, as the unfused backward has it). K = cg_out in one block, N = cg_in.

    ALIGN_G divides the pixel strides of gy and the saved output, OFF and cg_out (1 with a shuffle: those
    reads are per element); ALIGN_W w's row stride; ALIGN_I gi's pixel strides and cg_in."""
    offs_m, offs_n, offs_k, mask_m, mask_n, mask_k = _slab_tile(GEMM_M, Cg_in, Cg_out, ALIGN_I, ALIGN_G, INT64,
                                                                BLOCK_M, BLOCK_N, BLOCK_K)
    go_row = _pixel_offsets(offs_m, H, W, sgn, sgh, sgw, PITCHED, ALIGN_G)
    o_row = _pixel_offsets(offs_m, H, W, son, soh, sow, PITCHED, ALIGN_G)
    gi_row = _pixel_offsets(offs_m, H, W, sin, sih, siw, PITCHED, ALIGN_I)
    for g in range(GROUPS):
        co = g * Cg_out + offs_k
        if SHUFFLED:
            col = tl.load(dest_ptr + co, mask=mask_k, other=0)
        else:
            col = tl.multiple_of(OFF + g * Cg_out, ALIGN_G) + offs_k
        a = _masked_grad(go_ptr, o_ptr, go_row[:, None] + col[None, :], o_row[:, None] + col[None, :],
                         mask_m[:, None] & mask_k[None, :], RELU)
        w_g = tl.multiple_of(co * swo, ALIGN_W)
        b = tl.load(w_ptr + w_g[:, None] + offs_n[None, :], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        if HAS_SCALE:
            # Rounded once to the operand dtype, as the unfused grad * scale would be.
            s = tl.load(scale_ptr + co, mask=mask_k, other=0.0).to(ACC_DTYPE)
            b = (b.to(ACC_DTYPE) * s[:, None]).to(w_ptr.dtype.element_ty)
        acc = mma(tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE), a, b, UPCAST, False)
        store_tile(gi_ptr, gi_row + tl.multiple_of(g * Cg_in, ALIGN_I), offs_n, 1, acc, mask_m, mask_n)


# ------------------------------------------------------------------------------------------ weight-gradient slab
def _slab_wgrad_configs():
    if interpreting():
        return [triton.Config({"BLOCK_K": 32}, num_warps=1)]
    # (pixels per K step, warps, stages): long K steps, since a step's fixed cost (loop, masks, pixel offsets)
    # is shared by only BLOCK_K pixels and every group's tile is small (12-80 channels a side on ShuffleNet).
    # The 8-warp short steps are for wide groups read element by element (see _fitting_slab_wgrad).
    return [triton.Config({"BLOCK_K": k}, num_warps=w, num_stages=st)
            for k, w, st in ((128, 4, 3), (256, 4, 3), (128, 4, 4), (64, 4, 4), (128, 8, 3), (256, 8, 3),
                             (64, 8, 3), (32, 8, 3), (64, 4, 2), (32, 4, 2))]


def _slab_wgrad_smem(bm: int, bn: int, bk: int, stages: int, esize: int, relu: bool) -> int:
    """Operand pipeline: the output-gradient tile (and the saved output's, for the ReLU mask) and x's tile per
    stage."""
    return max(1, stages) * ((bm * (2 if relu else 1)) + bn) * bk * esize


def _fitting_slab_wgrad(configs, named_args, **kwargs):
    """The configs within shared memory with at most 64 accumulators per thread and at most 32 x ALIGN_G
    elements of the output-gradient tile per thread (twice that tile with the ReLU mask's saved output):
    read in runs of ALIGN_G (1 with a shuffle or an odd channel count), each run sits in registers with its
    own address on its way to shared memory. Beyond, sm_90 spilled (bf16, 36-460 B: 64 x 256 pixels on 8
    warps with ALIGN_G 1, 32 x 128 on 4 warps with the mask, 64 x 256 on 4 warps with ALIGN_G 2). The
    smallest K step if none fits. The tile (BLOCK_M x BLOCK_N) is the group's, fixed by the host."""
    t = next(iter(named_args.values()))
    smem, _sms = tiles.device_limits(t)
    smem = smem or SMEM_PER_BLOCK[(9, 0)]
    bm, bn, esize = kwargs["BLOCK_M"], kwargs["BLOCK_N"], t.element_size()
    relu = bool(kwargs.get("RELU", False))
    a_rows = (2 if relu else 1) * bm
    kept = [c for c in configs
            if _slab_wgrad_smem(bm, bn, c.kwargs["BLOCK_K"], c.num_stages, esize, relu) <= smem
            and bm * bn <= 64 * 32 * c.num_warps
            and a_rows * c.kwargs["BLOCK_K"] <= 32 * kwargs.get("ALIGN_G", 1) * 32 * c.num_warps]
    return kept or [min(configs, key=lambda c: (c.kwargs["BLOCK_K"], -c.num_warps, c.num_stages))]


def _prune_slab_wgrad(configs, named_args, **kwargs):
    """The fitting configs whose K step is no longer than a split's chunk (the shortest if all are)."""
    fitting = _fitting_slab_wgrad(configs, named_args, **kwargs)
    chunk = int(named_args["K_CHUNK"])
    return [c for c in fitting if c.kwargs["BLOCK_K"] <= max(32, chunk)] or fitting[-1:]


_prune_slab_wgrad.reachable = _fitting_slab_wgrad


def _slab_wgrad_tile_smem(tile, dtype: torch.dtype) -> int:
    """_slab_wgrad_smem of a (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages) tile with the ReLU mask's tile."""
    bm, bn, bk, _warps, stages = tile
    return _slab_wgrad_smem(bm, bn, bk, stages, dtype.itemsize, True)


_prune_slab_wgrad.smem_bytes = _slab_wgrad_tile_smem

# Every split's chunk of pixels is a multiple of this: each K step lies in one split.
_SLAB_WGRAD_UNIT = max(c.kwargs["BLOCK_K"] for c in _slab_wgrad_configs())

_SLAB_WGRAD_KEY = ["GEMM_K", "K_CHUNK", "Cg_in", "Cg_out", "GROUPS", "SHUFFLED", "PITCHED", "RELU", "HAS_SCALE",
                   "ALIGN_G", "ALIGN_X", "INT64"]


@triton.autotune(configs=_slab_wgrad_configs(), key=_SLAB_WGRAD_KEY,
                 prune_configs_by={"early_config_prune": _prune_slab_wgrad}, cache_results=True)
@triton.jit
def _gpw_slab_wgrad_kernel(
    go_ptr, o_ptr, x_ptr, scale_ptr, dest_ptr, part_ptr,
    H, W, GEMM_K, K_CHUNK, Cg_in, Cg_out, C_out, GROUPS, OFF,
    sgn, sgh, sgw, son, soh, sow, sxn, sxh, sxw,
    SHUFFLED: tl.constexpr, PITCHED: tl.constexpr, HAS_SCALE: tl.constexpr, RELU: tl.constexpr,
    INT64: tl.constexpr, UPCAST: tl.constexpr, ACC_DTYPE: tl.constexpr, ALIGN_G: tl.constexpr,
    ALIGN_X: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """part[split, g*cg_out + j, i] = scale * sum over the split's pixels p of gy'[p, dest(g*cg_out + j)] *
    x[p, g*cg_in + i]: one (group, BLOCK_M x BLOCK_N tile) per program, K = the split's chunk of pixels
    (gy' = gy masked by the saved output > 0 when RELU). Partials: (splits, C_out, cg_in), ACC_DTYPE, summed
    on the host in a fixed order.

    Programs are numbered group fastest, then tile, then split: the groups of one pixel chunk run together,
    so each sector of a pixel row (shared by every group when shuffled) is read from DRAM once. ALIGN_G
    divides the pixel strides of gy and the saved output, OFF and cg_out (1 with a shuffle: per-element
    reads); ALIGN_X x's pixel strides and cg_in. PITCHED: gy, the saved output and x each have one pixel
    pitch, so a pixel's offset is a product, not a division into (n, h, w)."""
    m_tiles = tl.cdiv(Cg_out, BLOCK_M)
    tiles_per_split = GROUPS * m_tiles * tl.cdiv(Cg_in, BLOCK_N)
    pid = tl.program_id(0)
    split = pid // tiles_per_split
    r = pid - split * tiles_per_split
    t = r // GROUPS
    g = r - t * GROUPS
    pid_n = t // m_tiles
    offs_m, offs_n = tile_offsets(t - pid_n * m_tiles, pid_n, BLOCK_M, BLOCK_N, INT64)
    offs_k = tl.arange(0, BLOCK_K)
    if INT64:
        offs_k = offs_k.to(tl.int64)
    mask_m = channel_mask(offs_m, Cg_out, ALIGN_G)
    mask_n = channel_mask(offs_n, Cg_in, ALIGN_X)
    co = g * Cg_out + offs_m
    if SHUFFLED:
        col = tl.load(dest_ptr + co, mask=mask_m, other=0)
    else:
        col = tl.multiple_of(OFF + g * Cg_out, ALIGN_G) + offs_m
    x_col = tl.multiple_of(g * Cg_in, ALIGN_X) + offs_n
    k_start = split * K_CHUNK
    k_end = tl.minimum(k_start + K_CHUNK, GEMM_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for k0 in range(k_start, k_end, BLOCK_K):
        p = k0 + offs_k
        mask_k = p < k_end
        go_row = _pixel_offsets(p, H, W, sgn, sgh, sgw, PITCHED, ALIGN_G)
        o_row = _pixel_offsets(p, H, W, son, soh, sow, PITCHED, ALIGN_G)
        a = _masked_grad(go_ptr, o_ptr, col[:, None] + go_row[None, :], col[:, None] + o_row[None, :],
                         mask_m[:, None] & mask_k[None, :], RELU)
        x_row = _pixel_offsets(p, H, W, sxn, sxh, sxw, PITCHED, ALIGN_X)
        b = tl.load(x_ptr + x_row[:, None] + x_col[None, :], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc = mma(acc, a, b, UPCAST, False)
    if HAS_SCALE:
        acc *= tl.load(scale_ptr + co, mask=mask_m, other=0.0).to(ACC_DTYPE)[:, None]
    p_off = split * C_out * Cg_in + (co * Cg_in)[:, None] + offs_n[None, :]
    tl.store(part_ptr + p_off, acc, mask=mask_m[:, None] & mask_n[None, :])


def _slab_fits(tensors, reduction: int) -> bool:
    """The slab kernels' domain: 16-bit operands with unit channel strides, the per-group reduction (cg_in
    forward, cg_out input gradient; 0 for the weight gradient, which loops over pixels) in one K block."""
    return (SLAB[0] and tensors[0].dtype in (torch.float16, torch.bfloat16) and reduction <= _SLAB_MAX_K
            and all(t.stride(1) == 1 for t in tensors))


def _slab_map(w_shape, spec: GroupPointwiseSpec):
    """(cg_in, cg_out, offset, shuffled) of a slab launch."""
    c_out, cg_in = w_shape[:2]
    off, _cpg, sg = _map_args(spec)
    return cg_in, c_out // spec.groups, off, sg > 1


def _slab_forward(x, w, bias, scale, shift, out, spec: GroupPointwiseSpec) -> None:
    scalars, consts, programs = _slab_fwd_geometry(x.shape, x.stride(), w.shape, w.stride(), out.stride(),
                                                   x.element_size(), spec)
    dest = spec.channels.dest_index(w.shape[0], x.device) if consts["SHUFFLED"] else w

    def grid(meta):
        return (ceil_div(programs[0], meta["BLOCK_M"]) * programs[1],)

    _gpw_slab_fwd_kernel[grid](
        x, w, w if bias is None else bias, w if scale is None else scale, w if shift is None else shift, dest, out,
        *scalars, HAS_BIAS=bias is not None, HAS_SCALE=scale is not None, HAS_SHIFT=shift is not None,
        RELU=spec.relu, INT64=needs_int64((x, w, out)), UPCAST=interpreting() and x.dtype == torch.bfloat16,
        ACC_DTYPE=tl.float32, **consts,
    )


# What a slab launch derives from shapes and strides alone, cached: per call it was ~10 us of Python.
@functools.lru_cache(maxsize=1024)
def _slab_fwd_geometry(x_shape, sx, w_shape, sw, sy, esize: int, spec: GroupPointwiseSpec):
    n, c_in, h, wd = x_shape
    cg_in, cg_out, off, shuffled = _slab_map(w_shape, spec)
    block_n = max(16, min(_SLAB_MAX_N, pow2_at_least(cg_out)))
    gemm_m = n * h * wd
    scalars = (h, wd, gemm_m, c_in, cg_in, cg_out, spec.groups, off, sx[0], sx[2], sx[3], sw[0], sy[0], sy[2], sy[3])
    consts = {"SHUFFLED": shuffled, "PITCHED": one_pixel_pitch(sx, h, wd) and one_pixel_pitch(sy, h, wd),
              "ALIGN_X": vector_align(esize, cg_in, sx[0], sx[2], sx[3]), "ALIGN_W": vector_align(esize, sw[0]),
              "ALIGN_Y": 1 if shuffled else vector_align(esize, off, cg_out, sy[0], sy[2], sy[3]),
              "BLOCK_N": block_n, "BLOCK_K": max(16, pow2_at_least(cg_in))}
    return scalars, consts, (gemm_m, ceil_div(cg_out, block_n))


def _slab_backward_input(grad_out, w, o, relu: bool, scale, grad_in, spec: GroupPointwiseSpec) -> None:
    scalars, consts, programs = _slab_dgrad_geometry(grad_in.shape, grad_out.stride(), o.stride(), w.shape,
                                                     w.stride(), grad_in.stride(), grad_out.element_size(), spec)
    dest = spec.channels.dest_index(w.shape[0], grad_out.device) if consts["SHUFFLED"] else w

    def grid(meta):
        return (ceil_div(programs[0], meta["BLOCK_M"]) * programs[1],)

    _gpw_slab_dgrad_kernel[grid](
        grad_out, o, w, w if scale is None else scale, dest, grad_in, *scalars,
        HAS_SCALE=scale is not None, RELU=relu, INT64=needs_int64((grad_out, o, w, grad_in)),
        UPCAST=interpreting() and grad_out.dtype == torch.bfloat16, ACC_DTYPE=tl.float32, **consts,
    )


@functools.lru_cache(maxsize=1024)
def _slab_dgrad_geometry(gi_shape, sg4, so4, w_shape, sw, si4, esize: int, spec: GroupPointwiseSpec):
    n, _c_in, h, wd = gi_shape
    cg_in, cg_out, off, shuffled = _slab_map(w_shape, spec)
    block_n = max(16, min(_SLAB_MAX_N, pow2_at_least(cg_in)))
    gemm_m = n * h * wd
    scalars = (h, wd, gemm_m, cg_in, cg_out, spec.groups, off, sg4[0], sg4[2], sg4[3], so4[0], so4[2], so4[3],
               sw[0], si4[0], si4[2], si4[3])
    consts = {"SHUFFLED": shuffled, "PITCHED": all(one_pixel_pitch(st, h, wd) for st in (sg4, so4, si4)),
              "ALIGN_G": _grad_align(esize, off, cg_out, shuffled, sg4, so4),
              "ALIGN_W": vector_align(esize, sw[0]), "ALIGN_I": vector_align(esize, cg_in, si4[0], si4[2], si4[3]),
              "BLOCK_N": block_n, "BLOCK_K": max(16, pow2_at_least(cg_out))}
    return scalars, consts, (gemm_m, ceil_div(cg_in, block_n))


def _grad_align(esize: int, off: int, cg_out: int, shuffled: bool, sg4, so4) -> int:
    """ALIGN_G of the backward slab kernels: the output gradient's and the saved output's channel runs (1 with a
    shuffle: those reads are per element)."""
    if shuffled:
        return 1
    return vector_align(esize, off, cg_out, sg4[0], sg4[2], sg4[3], so4[0], so4[2], so4[3])


def _map_args(spec: GroupPointwiseSpec) -> tuple[int, int, int]:
    cm = spec.channels
    return cm.offset, cm.per_group, cm.shuffle_groups


def _s4(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.stride())


def forward(x, w, bias, scale, shift, out, spec: GroupPointwiseSpec) -> None:
    n, _c_in, h, wd = x.shape
    c_out, cg_in = w.shape[:2]
    if _slab_fits((x, w, out), cg_in):
        _slab_forward(x, w, bias, scale, shift, out, spec)
        return
    groups = spec.groups
    cg_out = c_out // groups
    gemm_m = n * h * wd

    def grid(meta):
        return (triton.cdiv(gemm_m, meta["BLOCK_M"]), triton.cdiv(cg_out, meta["BLOCK_N"]), groups)

    _gpw_fwd_kernel[grid](
        x, w, w if bias is None else bias, w if scale is None else scale, w if shift is None else shift, out,
        h, wd, cg_in, cg_out, *_map_args(spec),
        *_s4(x), w.stride(0), w.stride(1), *_s4(out),
        gemm_m, cg_out, cg_in,
        CHANNELS_LAST=channels_last(x), HAS_BIAS=bias is not None, HAS_SCALE=scale is not None,
        HAS_SHIFT=shift is not None, RELU=spec.relu, **mma_flags(x.dtype, (x, w, out)),
    )


def backward_input(grad_out, w, output, scale, grad_in, spec: GroupPointwiseSpec) -> None:
    n, _c_in, h, wd = grad_in.shape
    c_out, cg_in = w.shape[:2]
    groups = spec.groups
    cg_out = c_out // groups
    gemm_m = n * h * wd
    o = grad_out if output is None else output
    if _slab_fits((grad_out, o, w, grad_in), cg_out):
        _slab_backward_input(grad_out, w, o, output is not None, scale, grad_in, spec)
        return

    def grid(meta):
        return (triton.cdiv(gemm_m, meta["BLOCK_M"]), triton.cdiv(cg_in, meta["BLOCK_N"]), groups)

    _gpw_dgrad_kernel[grid](
        grad_out, o, w, w if scale is None else scale, grad_in,
        h, wd, cg_in, cg_out, *_map_args(spec),
        *_s4(grad_out), *_s4(o), w.stride(0), w.stride(1), *_s4(grad_in),
        gemm_m, cg_in, cg_out,
        CHANNELS_LAST=channels_last(grad_out), HAS_SCALE=scale is not None, RELU=output is not None,
        **mma_flags(grad_out.dtype, (grad_out, o, w, grad_in)),
    )


def _slab_backward_weight(grad_out, x, o, relu: bool, scale, grad_w, spec: GroupPointwiseSpec) -> None:
    scalars, consts, tiles_per_split = _slab_wgrad_geometry(grad_out.stride(), o.stride(), x.shape, x.stride(),
                                                            grad_w.shape, x.element_size(), spec)
    gemm_k = scalars[2]
    split = split_k(gemm_k, tiles_per_split, x.device)
    k_chunk, split = split_chunks(gemm_k, split, _SLAB_WGRAD_UNIT)
    c_out, cg_in = grad_w.shape[:2]
    partials = torch.empty((split, c_out, cg_in), device=x.device, dtype=torch.float32)
    dest = spec.channels.dest_index(c_out, x.device) if consts["SHUFFLED"] else x
    _gpw_slab_wgrad_kernel[(split * tiles_per_split,)](
        grad_out, o, x, x if scale is None else scale, dest, partials, scalars[0], scalars[1], gemm_k, k_chunk,
        *scalars[3:], HAS_SCALE=scale is not None, RELU=relu, INT64=needs_int64((grad_out, o, x, partials)),
        UPCAST=interpreting() and x.dtype == torch.bfloat16, ACC_DTYPE=tl.float32, **consts,
    )
    grad_w.copy_(sum_splits(partials).view(grad_w.shape))


@functools.lru_cache(maxsize=1024)
def _slab_wgrad_geometry(sg4, so4, x_shape, sx4, w_shape, esize: int, spec: GroupPointwiseSpec):
    n, _c_in, h, wd = x_shape
    cg_in, cg_out, off, shuffled = _slab_map(w_shape, spec)
    block_m = max(16, min(_SLAB_MAX_N, pow2_at_least(cg_out)))
    block_n = max(16, min(_SLAB_MAX_N, pow2_at_least(cg_in)))
    scalars = (h, wd, n * h * wd, cg_in, cg_out, w_shape[0], spec.groups, off, sg4[0], sg4[2], sg4[3],
               so4[0], so4[2], so4[3], sx4[0], sx4[2], sx4[3])
    consts = {"SHUFFLED": shuffled, "PITCHED": all(one_pixel_pitch(st, h, wd) for st in (sg4, so4, sx4)),
              "ALIGN_G": _grad_align(esize, off, cg_out, shuffled, sg4, so4),
              "ALIGN_X": vector_align(esize, cg_in, sx4[0], sx4[2], sx4[3]), "BLOCK_M": block_m, "BLOCK_N": block_n}
    return scalars, consts, spec.groups * ceil_div(cg_out, block_m) * ceil_div(cg_in, block_n)


def backward_weight(grad_out, x, output, scale, grad_w, spec: GroupPointwiseSpec) -> None:
    n, _c_in, h, wd = x.shape
    c_out, cg_in = grad_w.shape[:2]
    groups = spec.groups
    cg_out = c_out // groups
    gemm_k = n * h * wd
    o = grad_out if output is None else output
    if _slab_fits((grad_out, o, x), 0):
        _slab_backward_weight(grad_out, x, o, output is not None, scale, grad_w, spec)
        return
    # Tile count estimated with 64x64 tiles, only to size the split.
    split = split_k(gemm_k, triton.cdiv(cg_out, 64) * triton.cdiv(cg_in, 64) * groups, x.device)
    k_chunk, split = split_chunks(gemm_k, split, 64)  # 64: a multiple of every BLOCK_K, so no shared K block
    partials = torch.empty((split, c_out, cg_in), device=x.device, dtype=acc_dtype(x.dtype))

    def grid(meta):
        return (triton.cdiv(cg_out, meta["BLOCK_M"]), triton.cdiv(cg_in, meta["BLOCK_N"]), groups * split)

    _gpw_wgrad_kernel[grid](
        grad_out, o, x, x if scale is None else scale, partials,
        h, wd, cg_in, cg_out, c_out, *_map_args(spec),
        *_s4(grad_out), *_s4(o), *_s4(x),
        cg_out, cg_in, gemm_k, k_chunk,
        CHANNELS_LAST=channels_last(x), SPLIT_K=split, HAS_SCALE=scale is not None, RELU=output is not None,
        **mma_flags(x.dtype, (grad_out, o, x, partials)),
    )
    grad_w.copy_(sum_splits(partials).view(grad_w.shape))


# The kernels this module gives the registry (cnnkern.ops.registry), by the name the ops ask for.
KERNELS = {"group_pointwise_conv2d_fwd": forward, "group_pointwise_conv2d_bwd_input": backward_input,
           "group_pointwise_conv2d_bwd_weight": backward_weight}
