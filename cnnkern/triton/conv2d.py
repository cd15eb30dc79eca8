"""Direct conv2d as implicit GEMM in Triton: forward, input gradient, weight gradient.

All three kernels read and write through explicit strides, so NCHW, channels_last and sliced views run
without copies. The reduction dimension is walked kernel tap (r, s) outer, channels inner, so that the
spatial index math is done once per tap and channel loads are contiguous for channels_last.

GEMM views (per group g):
  forward       M = N*OH*OW pixels,  N = Cg_out,        K = KH*KW*Cg_in
  input grad    M = N*H*W pixels,    N = Cg_in,         K = taps*Cg_out    (gather per stride phase, in
                                                                             phase_gather.py)
  weight grad   M = Cg_out,          N = KH*KW*Cg_in,   K = N*OH*OW        (split-K into fp32 partials)

The forward kernel has three epilogues (constexpr flags, one kernel): the plain store (+ bias); the folded
BatchNorm scale/shift and an activation on the fp32 accumulator, rounded once (``forward_act``); and the
store plus each pixel tile's per-channel (count, mean, M2) of the stored values (``forward_stats``, rows of
the partials = program_id 0). The contract is in ``cnnkern.problem.conv_bn``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from cnnkern.problem.conv2d import Conv2dSpec
from cnnkern.triton import why_not_problem
from cnnkern.triton.phase_gather import phase_gather
from cnnkern.triton.tiles import (
    CONV_GEMM_KEY,
    GEMM_PRUNE,
    LaunchedBlocks,
    acc_dtype,
    acc_empty,
    activation_code,
    channels_last,
    conv_epilogue,
    conv_geometry,
    conv_taps_mma,
    dense,
    gemm_configs,
    mma,
    mma_flags,
    pix,
    set_weight_block,
    split_chunks,
    split_k,
    sum_splits,
    tile_offsets,
    weight_descriptor,
)

why_not = why_not_problem


# ACT and STATS select the epilogue (conv_epilogue): the plain store, the folded-BN affine + activation, or
# the store plus per-tile channel statistics; each its own compiled variant, tuned on its own. The configs'
# pre_hook sizes the weight's TMA descriptor (w_desc) to their tile; Triton's autotuner keeps no disk cache
# for configs with a pre_hook, so a process tunes each problem once (at most MAX_GEMM_CONFIGS tiles).
@triton.autotune(configs=gemm_configs(pre_hook=set_weight_block), key=CONV_GEMM_KEY + ["ACT", "STATS", "USE_TMA"],
                 prune_configs_by=GEMM_PRUNE, cache_results=True)
@triton.jit
def _conv2d_fwd_kernel(
    x_ptr, w_ptr, b_ptr, scale_ptr, shift_ptr, y_ptr, part_ptr, w_desc,
    N, H, W, OH, OW, Cg_in, Cg_out,
    sxn, sxc, sxh, sxw,
    swo, swc, swh, sww,
    syn, syc, syh, syw,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    GEMM_M, GEMM_N, GEMM_K,
    KH: tl.constexpr, KW: tl.constexpr, CHANNELS_LAST: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, ACT: tl.constexpr,
    STATS: tl.constexpr, INT64: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr,
    ACC_DTYPE: tl.constexpr, USE_TMA: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    g = tl.program_id(2)
    offs_m, offs_n = tile_offsets(tl.program_id(0), tl.program_id(1), BLOCK_M, BLOCK_N, INT64)
    mask_m = offs_m < GEMM_M
    mask_n = offs_n < Cg_out
    n, oh, ow = pix(offs_m, OH, OW)
    ih0 = oh * stride_h - pad_h
    iw0 = ow * stride_w - pad_w
    x_row = n * sxn + (g * Cg_in) * sxc
    co = g * Cg_out + offs_n
    w_col = co * swo
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    acc = conv_taps_mma(acc, x_ptr, x_row, ih0, iw0, mask_m, H, W, dil_h, dil_w, sxh, sxw, sxc, w_ptr, w_col, swh,
                        sww, swc, Cg_in, mask_n, w_desc, g * Cg_out + tl.program_id(1) * BLOCK_N, KH, KW, UPCAST,
                        IEEE, USE_TMA, BLOCK_K)
    # Statistics rows are the pixel tiles (program_id 0); every group's program writes its own channels.
    conv_epilogue(acc, b_ptr, scale_ptr, shift_ptr, y_ptr, part_ptr, n * syn + oh * syh + ow * syw, co, syc,
                  mask_m, mask_n, tl.program_id(0), Cg_out * tl.num_programs(2), HAS_BIAS, HAS_SCALE,
                  HAS_SHIFT, ACT, STATS, INT64, ACC_DTYPE)


@triton.autotune(configs=gemm_configs(), key=CONV_GEMM_KEY + ["SPLIT_K"], prune_configs_by=GEMM_PRUNE,
                 cache_results=True)
@triton.jit
def _conv2d_bwd_weight_kernel(
    go_ptr, x_ptr, part_ptr,
    N, H, W, OH, OW, Cg_in, Cg_out,
    sgn, sgc, sgh, sgw,
    sxn, sxc, sxh, sxw,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    GEMM_M, GEMM_N, GEMM_K, K_CHUNK,
    KH: tl.constexpr, KW: tl.constexpr, CHANNELS_LAST: tl.constexpr, SPLIT_K: tl.constexpr,
    INT64: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # partials: (SPLIT_K, C_out, Cg_in, KH, KW) contiguous, ACC_DTYPE; summed on the host in fixed order.
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_z = tl.program_id(2)
    g = pid_z // SPLIT_K
    split = pid_z % SPLIT_K
    tiles_c = tl.cdiv(Cg_in, BLOCK_N)
    tap = pid_n // tiles_c
    r = tap // KW
    s = tap % KW
    offs_m, offs_n = tile_offsets(pid_m, pid_n % tiles_c, BLOCK_M, BLOCK_N, INT64)
    offs_k = tl.arange(0, BLOCK_K)
    if INT64:
        offs_k = offs_k.to(tl.int64)
    mask_m = offs_m < Cg_out
    mask_n = offs_n < Cg_in
    co = g * Cg_out + offs_m
    ci = g * Cg_in + offs_n
    go_col = co * sgc
    x_col = ci * sxc
    k_start = split * K_CHUNK
    k_end = tl.minimum(k_start + K_CHUNK, GEMM_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for k0 in range(k_start, k_end, BLOCK_K):
        k = k0 + offs_k
        mask_k = k < k_end
        n, oh, ow = pix(k, OH, OW)
        ih = oh * stride_h - pad_h + r * dil_h
        iw = ow * stride_w - pad_w + s * dil_w
        ok = mask_k & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(go_ptr + go_col[:, None] + (n * sgn + oh * sgh + ow * sgw)[None, :],
                    mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        b = tl.load(x_ptr + (n * sxn + ih * sxh + iw * sxw)[:, None] + x_col[None, :],
                    mask=ok[:, None] & mask_n[None, :], other=0.0)
        acc = mma(acc, a, b, UPCAST, IEEE)
    c_out = GEMM_M * (tl.num_programs(2) // SPLIT_K)
    base = split * c_out * Cg_in * KH * KW
    p_off = base + (co * (Cg_in * KH * KW))[:, None] + (offs_n * (KH * KW) + r * KW + s)[None, :]
    tl.store(part_ptr + p_off, acc, mask=mask_m[:, None] & mask_n[None, :])


def _forward(x, w, bias, out, spec: Conv2dSpec, scale=None, shift=None, activation=None, stats=False):
    """The forward launch with its epilogue; with ``stats`` returns the (tiles, C_out, 3) partials."""
    bias, scale, shift = dense(bias, scale, shift)
    n, _c_in, h, wd = x.shape
    c_out, cg_in, kh, kw = w.shape
    _, _, oh, ow = out.shape
    groups = spec.groups
    cg_out = c_out // groups
    gemm_m = n * oh * ow
    # Sized for the most pixel tiles any config makes; the launch's own count is kept.
    min_block_m = min(c.kwargs["BLOCK_M"] for c in _conv2d_fwd_kernel.configs)
    partials = acc_empty((triton.cdiv(gemm_m, min_block_m), c_out, 3), x) if stats else None
    launched = LaunchedBlocks()
    w_desc = weight_descriptor(w)

    def grid(meta):
        return (triton.cdiv(gemm_m, meta["BLOCK_M"]), triton.cdiv(cg_out, meta["BLOCK_N"]), groups)

    _conv2d_fwd_kernel[launched.grid(grid)](
        x, w, bias if bias is not None else w, scale if scale is not None else w,
        shift if shift is not None else w, out, partials if stats else out, w_desc,
        n, h, wd, oh, ow, cg_in, cg_out,
        *x.stride(), *w.stride(), *out.stride(),
        *conv_geometry(spec),
        gemm_m, cg_out, kh * kw * cg_in,
        KH=kh, KW=kw, CHANNELS_LAST=channels_last(x), HAS_BIAS=bias is not None, HAS_SCALE=scale is not None,
        HAS_SHIFT=shift is not None, ACT=activation_code(activation), STATS=stats, USE_TMA=w_desc is not None,
        **mma_flags(x.dtype, (x, w, out) + ((partials,) if stats else ())),
    )
    if not stats:
        return None
    # No record when nothing ran the grid (a launch that was only compiled): keep every row there may be.
    return partials[: triton.cdiv(gemm_m, launched["BLOCK_M"])] if launched else partials


def forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    _forward(x, w, bias, out, spec)


def forward_act(x, w, bias, scale, shift, out, spec: Conv2dSpec, activation) -> None:
    """out = act((conv + bias) * scale + shift), one rounding (the eval-mode fused conv + BN + activation)."""
    _forward(x, w, bias, out, spec, scale, shift, activation)


def forward_stats(x, w, bias, out, spec: Conv2dSpec) -> torch.Tensor:
    """out = conv + bias, and the (count, mean, M2) per pixel tile and channel of out as stored."""
    return _forward(x, w, bias, out, spec, stats=True)


def backward_input(grad_out, w, grad_in, spec: Conv2dSpec) -> None:
    # The input gradient is a transposed conv of grad_out: the phase-decomposed gather runs only the taps
    # that reach each stride phase of grad_in.
    phase_gather(grad_out, w, None, grad_in, spec)


def backward_weight(grad_out, x, grad_w, spec: Conv2dSpec) -> None:
    n, _c_in, h, wd = x.shape
    c_out, cg_in, kh, kw = grad_w.shape
    _, _, oh, ow = grad_out.shape
    groups = spec.groups
    cg_out = c_out // groups
    gemm_k = n * oh * ow
    # Tile count estimated with 64x64 tiles, only to size the split.
    tiles = triton.cdiv(cg_out, 64) * triton.cdiv(cg_in, 64) * kh * kw * groups
    # 64: a multiple of every BLOCK_K, so splits never share a K block
    k_chunk, split = split_chunks(gemm_k, split_k(gemm_k, tiles, x.device), 64)
    partials = torch.empty((split, c_out, cg_in, kh, kw), device=x.device, dtype=acc_dtype(x.dtype))

    def grid(meta):
        return (triton.cdiv(cg_out, meta["BLOCK_M"]), triton.cdiv(cg_in, meta["BLOCK_N"]) * kh * kw,
                groups * split)

    _conv2d_bwd_weight_kernel[grid](
        grad_out, x, partials,
        n, h, wd, oh, ow, cg_in, cg_out,
        *grad_out.stride(), *x.stride(),
        *conv_geometry(spec),
        cg_out, kh * kw * cg_in, gemm_k, k_chunk,
        KH=kh, KW=kw, CHANNELS_LAST=channels_last(x), SPLIT_K=split,
        **mma_flags(x.dtype, (grad_out, x, partials)),
    )
    grad_w.copy_(sum_splits(partials))


# The kernels this module gives the registry (cnnkern.ops.registry), by the name the ops ask for.
KERNELS = {"conv2d_fwd": forward, "conv2d_bwd_input": backward_input, "conv2d_bwd_weight": backward_weight,
           "conv2d_fwd_act": forward_act, "conv2d_fwd_stats": forward_stats}
