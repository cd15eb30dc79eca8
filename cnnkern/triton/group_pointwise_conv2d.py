"""Grouped 1x1 conv as one grouped GEMM in Triton, with the channel shuffle folded into its indexing.

Every group runs in the same launch (grid axis 2). Output channel ``co`` is stored at (forward), and its
gradient read from (backward), ``_dest(co)``; the ReLU mask (saved output > 0) and the scale are applied to
the gradient as it is loaded, so the backward never materialises an unshuffled or masked gradient.

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
from cnnkern.triton import interpreting, why_not_problem
from cnnkern.triton.conv2d import _channels_last, _common, _mma, _prune, _split_k
from cnnkern.triton.conv2d import _configs as _conv_configs
from cnnkern.triton.depthwise_conv2d import _pix

why_not = why_not_problem


def _configs():
    if interpreting():
        # Interpreted programs cost per operation, not per element: few large tiles run fastest.
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 32, "BLOCK_K": 32}, num_warps=1)]
    return _conv_configs()


_KEY = ["GEMM_M", "GEMM_N", "GEMM_K", "CHANNELS_LAST", "RELU"]
_PRUNE = {"early_config_prune": _prune}


@triton.jit
def _dest(c, OFF, CPG, SG):
    """Where channel c of this conv is stored: the shuffled position of ``OFF + c`` (see ChannelMap)."""
    d = c + OFF
    return (d % CPG) * SG + d // CPG


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
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    if INT64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
    return tl.program_id(2), offs_m, offs_n, offs_m < GEMM_M, offs_n < N_LIMIT


@triton.autotune(configs=_configs(), key=_KEY, prune_configs_by=_PRUNE, cache_results=True)
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
    n, h, w = _pix(offs_m, H, W)
    x_row = n * sxn + h * sxh + w * sxw + (g * Cg_in) * sxc
    co = g * Cg_out + offs_n
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for c0 in range(0, Cg_in, BLOCK_K):
        c = c0 + offs_k
        mask_c = c < Cg_in
        a = tl.load(x_ptr + x_row[:, None] + c[None, :] * sxc, mask=mask_m[:, None] & mask_c[None, :], other=0.0)
        b = tl.load(w_ptr + (co * swo)[None, :] + c[:, None] * swc, mask=mask_c[:, None] & mask_n[None, :],
                    other=0.0)
        acc = _mma(acc, a, b, UPCAST, IEEE)
    if HAS_BIAS:
        acc += tl.load(b_ptr + co, mask=mask_n, other=0.0).to(ACC_DTYPE)[None, :]
    if HAS_SCALE:
        acc *= tl.load(scale_ptr + co, mask=mask_n, other=0.0).to(ACC_DTYPE)[None, :]
    if HAS_SHIFT:
        acc += tl.load(shift_ptr + co, mask=mask_n, other=0.0).to(ACC_DTYPE)[None, :]
    if RELU:
        acc = tl.maximum(acc, 0.0)
    y_off = (n * syn + h * syh + w * syw)[:, None] + (_dest(co, OFF, CPG, SG) * syc)[None, :]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.autotune(configs=_configs(), key=_KEY, prune_configs_by=_PRUNE, cache_results=True)
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
    n, h, w = _pix(offs_m, H, W)
    go_row = n * sgn + h * sgh + w * sgw
    o_row = n * son + h * soh + w * sow
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for k0 in range(0, Cg_out, BLOCK_K):
        mask_k = k0 + offs_k < Cg_out
        co = g * Cg_out + k0 + offs_k
        dc = _dest(co, OFF, CPG, SG)
        a = _masked_grad(go_ptr, o_ptr, go_row[:, None] + (dc * sgc)[None, :], o_row[:, None] + (dc * soc)[None, :],
                         mask_m[:, None] & mask_k[None, :], RELU)
        b = tl.load(w_ptr + (co * swo)[:, None] + (offs_n * swc)[None, :], mask=mask_k[:, None] & mask_n[None, :],
                    other=0.0)
        if HAS_SCALE:
            # Rounded once to the operand dtype, as the unfused grad * scale would be.
            s = tl.load(scale_ptr + co, mask=mask_k, other=0.0).to(ACC_DTYPE)
            b = (b.to(ACC_DTYPE) * s[:, None]).to(w_ptr.dtype.element_ty)
        acc = _mma(acc, a, b, UPCAST, IEEE)
    ci = g * Cg_in + offs_n
    gi_off = (n * sin + h * sih + w * siw)[:, None] + (ci * sic)[None, :]
    tl.store(gi_ptr + gi_off, acc.to(gi_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.autotune(configs=_configs(), key=_KEY + ["SPLIT_K"], prune_configs_by=_PRUNE, cache_results=True)
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
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    if INT64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
        offs_k = offs_k.to(tl.int64)
    mask_m = offs_m < Cg_out
    mask_n = offs_n < Cg_in
    co = g * Cg_out + offs_m
    dc = _dest(co, OFF, CPG, SG)
    ci = g * Cg_in + offs_n
    k_start = split * K_CHUNK
    k_end = tl.minimum(k_start + K_CHUNK, GEMM_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for k0 in range(k_start, k_end, BLOCK_K):
        k = k0 + offs_k
        mask_k = k < k_end
        n, h, w = _pix(k, H, W)
        a = _masked_grad(go_ptr, o_ptr, (dc * sgc)[:, None] + (n * sgn + h * sgh + w * sgw)[None, :],
                         (dc * soc)[:, None] + (n * son + h * soh + w * sow)[None, :],
                         mask_m[:, None] & mask_k[None, :], RELU)
        b = tl.load(x_ptr + (n * sxn + h * sxh + w * sxw)[:, None] + (ci * sxc)[None, :],
                    mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc = _mma(acc, a, b, UPCAST, IEEE)
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
        CHANNELS_LAST=_channels_last(x), HAS_BIAS=bias is not None, HAS_SCALE=scale is not None,
        HAS_SHIFT=shift is not None, RELU=spec.relu, **_common(x.dtype, (x, w, out)),
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
        CHANNELS_LAST=_channels_last(grad_out), HAS_SCALE=scale is not None, RELU=output is not None,
        **_common(grad_out.dtype, (grad_out, o, w, grad_in)),
    )


def backward_weight(grad_out, x, output, scale, grad_w, spec: GroupPointwiseSpec) -> None:
    n, _c_in, h, wd = x.shape
    c_out, cg_in = grad_w.shape[:2]
    groups = spec.groups
    cg_out = c_out // groups
    gemm_k = n * h * wd
    o = grad_out if output is None else output
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    # Tile count estimated with 64x64 tiles, only to size the split.
    split = _split_k(gemm_k, triton.cdiv(cg_out, 64) * triton.cdiv(cg_in, 64) * groups, x.device)
    chunk_unit = 64  # a multiple of every BLOCK_K, so splits never share a K block
    k_chunk = triton.cdiv(triton.cdiv(gemm_k, split), chunk_unit) * chunk_unit
    split = triton.cdiv(gemm_k, k_chunk)
    partials = torch.empty((split, c_out, cg_in), device=x.device, dtype=acc_dtype)

    def grid(meta):
        return (triton.cdiv(cg_out, meta["BLOCK_M"]), triton.cdiv(cg_in, meta["BLOCK_N"]), groups * split)

    _gpw_wgrad_kernel[grid](
        grad_out, o, x, x if scale is None else scale, partials,
        h, wd, cg_in, cg_out, c_out, *_map_args(spec),
        *_s4(grad_out), *_s4(o), *_s4(x),
        cg_out, cg_in, gemm_k, k_chunk,
        CHANNELS_LAST=_channels_last(x), SPLIT_K=split, HAS_SCALE=scale is not None, RELU=output is not None,
        **_common(x.dtype, (grad_out, o, x, partials)),
    )
    grad_w.copy_((partials.sum(0) if split > 1 else partials[0]).view(grad_w.shape))
