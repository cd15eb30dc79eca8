"""Grouped 1x1 conv as one grouped GEMM in Triton, with the channel shuffle folded into its indexing.

Every group runs in the same launch (grid axis 2). Output channel ``co`` is stored at (forward), and its
gradient read from (backward), ``shuffle_dest(co)``; the ReLU mask (saved output > 0) and the scale are
applied to the gradient as it is loaded, so the backward never materialises an unshuffled or masked gradient.

GEMM views (per group g), pixels m = (n, h, w) decomposed so that sliced views need no copy:
  forward       M = N*H*W,   N = Cg_out,  K = Cg_in      epilogue: +bias, *scale +shift, relu, shuffled store
  input grad    M = N*H*W,   N = Cg_in,   K = Cg_out     A = masked, unshuffled grad; B = w * scale
  weight grad   M = Cg_out,  N = Cg_in,   K = N*H*W      split-K into fp32 partials, summed in fixed order
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from cnnkern.problem.channel_map import GroupPointwiseSpec
from cnnkern.triton import why_not_problem
from cnnkern.triton.tiles import (
    GEMM_PRUNE_PORTABLE,
    acc_dtype,
    add_per_channel,
    channels_last,
    gemm_configs,
    mma,
    mma_flags,
    pix,
    shuffle_dest,
    split_chunks,
    split_k,
    store_tile,
    sum_splits,
    tap_mma,
    tile_offsets,
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
    acc = add_per_channel(acc, b_ptr, co, mask_n, HAS_BIAS, ACC_DTYPE)
    if HAS_SCALE:
        acc *= tl.load(scale_ptr + co, mask=mask_n, other=0.0).to(ACC_DTYPE)[None, :]
    acc = add_per_channel(acc, shift_ptr, co, mask_n, HAS_SHIFT, ACC_DTYPE)
    if RELU:
        acc = tl.maximum(acc, 0.0)
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
    g = tl.program_id(2) // SPLIT_K
    split = tl.program_id(2) % SPLIT_K
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


def _map_args(spec: GroupPointwiseSpec) -> tuple[int, int, int]:
    cm = spec.channels
    return cm.offset, cm.per_group, cm.shuffle_groups


def _s4(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.stride())


def forward(x, w, bias, scale, shift, out, spec: GroupPointwiseSpec) -> None:
    n, _c_in, h, wd = x.shape
    c_out, cg_in = w.shape[:2]
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


def backward_weight(grad_out, x, output, scale, grad_w, spec: GroupPointwiseSpec) -> None:
    n, _c_in, h, wd = x.shape
    c_out, cg_in = grad_w.shape[:2]
    groups = spec.groups
    cg_out = c_out // groups
    gemm_k = n * h * wd
    o = grad_out if output is None else output
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
