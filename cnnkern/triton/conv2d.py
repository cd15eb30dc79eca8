"""Direct conv2d as implicit GEMM in Triton: forward, input gradient, weight gradient.

All three kernels read and write through explicit strides, so NCHW, channels_last and sliced views run
without copies. The reduction dimension is walked kernel tap (r, s) outer, channels inner, so that the
spatial index math is done once per tap and channel loads are contiguous for channels_last.

GEMM views (per group g):
  forward       M = N*OH*OW pixels,  N = Cg_out,        K = KH*KW*Cg_in
  input grad    M = N*H*W pixels,    N = Cg_in,         K = taps*Cg_out    (gather per stride phase, in
                                                                             conv_transpose2d.py)
  weight grad   M = Cg_out,          N = KH*KW*Cg_in,   K = N*OH*OW        (split-K into fp32 partials)
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from cnnkern.problem.conv2d import Conv2dSpec
from cnnkern.triton import interpreting, needs_int64, why_not_problem

why_not = why_not_problem


def _configs(extra_k_split: bool = False):
    if interpreting():
        # The interpreter executes every program on the CPU: one small tile keeps CI fast.
        return [triton.Config({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}, num_warps=1)]
    cfgs = []
    for bm, bn, bk, warps, stages in (
        (128, 128, 32, 8, 3),
        (128, 64, 32, 4, 4),
        (64, 128, 32, 4, 4),
        (64, 64, 32, 4, 4),
        (128, 128, 64, 8, 3),
        (64, 64, 64, 4, 3),
        (128, 32, 32, 4, 4),
        (32, 64, 32, 4, 4),
        (64, 32, 16, 2, 4),
    ):
        cfgs.append(triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=warps,
                                  num_stages=stages))
    return cfgs


def _prune(configs, named_args, **kwargs):
    """Drop tiles far larger than the problem; they only waste autotuning time."""
    m, n, k = named_args["GEMM_M"], named_args["GEMM_N"], named_args["GEMM_K"]
    cap_m = max(16, triton.next_power_of_2(m))
    cap_n = max(16, triton.next_power_of_2(n))
    cap_k = max(16, triton.next_power_of_2(k))
    kept = [c for c in configs if c.kwargs["BLOCK_M"] <= cap_m and c.kwargs["BLOCK_N"] <= cap_n
            and c.kwargs["BLOCK_K"] <= cap_k]
    return kept or configs[-1:]


_KEY = ["GEMM_M", "GEMM_N", "GEMM_K", "KH", "KW", "CHANNELS_LAST"]
_PRUNE = {"early_config_prune": _prune}


@triton.jit
def _mma(acc, a, b, UPCAST: tl.constexpr, IEEE: tl.constexpr):
    if UPCAST:
        # The interpreter's bf16 dot is wrong (triton 3.8); fp32 is exact for bf16 products.
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    if IEEE:
        return tl.dot(a, b, acc, input_precision="ieee")
    return tl.dot(a, b, acc)


@triton.jit
def _tile_offsets(pid_m, pid_n, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, INT64: tl.constexpr):
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if INT64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
    return offs_m, offs_n


@triton.jit
def _tap_mma(acc, x_ptr, x_pix, ok, sxc, w_ptr, w_tap, swc, C, mask_n, UPCAST: tl.constexpr, IEEE: tl.constexpr,
             BLOCK_K: tl.constexpr):
    """acc += x[pixels, c] @ w[c, cols] over the C channels of one kernel tap, BLOCK_K at a time."""
    offs_k = tl.arange(0, BLOCK_K)
    for c0 in range(0, C, BLOCK_K):
        c = c0 + offs_k
        mask_c = c < C
        a = tl.load(x_ptr + x_pix[:, None] + c[None, :] * sxc, mask=ok[:, None] & mask_c[None, :], other=0.0)
        b = tl.load(w_ptr + w_tap[None, :] + c[:, None] * swc, mask=mask_c[:, None] & mask_n[None, :], other=0.0)
        acc = _mma(acc, a, b, UPCAST, IEEE)
    return acc


@triton.jit
def _bias_store(acc, b_ptr, y_ptr, pix_off, co, syc, mask_m, mask_n, HAS_BIAS: tl.constexpr,
                ACC_DTYPE: tl.constexpr):
    """y[pixels, co] = acc (+ bias[co]), in y's dtype."""
    if HAS_BIAS:
        acc += tl.load(b_ptr + co, mask=mask_n, other=0.0).to(ACC_DTYPE)[None, :]
    y_off = pix_off[:, None] + (co * syc)[None, :]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.autotune(configs=_configs(), key=_KEY, prune_configs_by=_PRUNE, cache_results=True)
@triton.jit
def _conv2d_fwd_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    N, H, W, OH, OW, Cg_in, Cg_out,
    sxn, sxc, sxh, sxw,
    swo, swc, swh, sww,
    syn, syc, syh, syw,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    GEMM_M, GEMM_N, GEMM_K,
    KH: tl.constexpr, KW: tl.constexpr, CHANNELS_LAST: tl.constexpr,
    HAS_BIAS: tl.constexpr, INT64: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    g = tl.program_id(2)
    offs_m, offs_n = _tile_offsets(tl.program_id(0), tl.program_id(1), BLOCK_M, BLOCK_N, INT64)
    mask_m = offs_m < GEMM_M
    mask_n = offs_n < Cg_out
    ohw = OH * OW
    n = offs_m // ohw
    rem = offs_m % ohw
    oh = rem // OW
    ow = rem % OW
    ih0 = oh * stride_h - pad_h
    iw0 = ow * stride_w - pad_w
    x_row = n * sxn + (g * Cg_in) * sxc
    co = g * Cg_out + offs_n
    w_col = co * swo
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for r in tl.static_range(KH):
        ih = ih0 + r * dil_h
        ok_h = mask_m & (ih >= 0) & (ih < H)
        for s in tl.static_range(KW):
            iw = iw0 + s * dil_w
            ok = ok_h & (iw >= 0) & (iw < W)
            acc = _tap_mma(acc, x_ptr, x_row + ih * sxh + iw * sxw, ok, sxc, w_ptr, w_col + r * swh + s * sww, swc,
                           Cg_in, mask_n, UPCAST, IEEE, BLOCK_K)
    _bias_store(acc, b_ptr, y_ptr, n * syn + oh * syh + ow * syw, co, syc, mask_m, mask_n, HAS_BIAS, ACC_DTYPE)


@triton.autotune(configs=_configs(), key=_KEY + ["SPLIT_K"], prune_configs_by=_PRUNE, cache_results=True)
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
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = (pid_n % tiles_c) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    if INT64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
        offs_k = offs_k.to(tl.int64)
    mask_m = offs_m < Cg_out
    mask_n = offs_n < Cg_in
    co = g * Cg_out + offs_m
    ci = g * Cg_in + offs_n
    go_col = co * sgc
    x_col = ci * sxc
    ohw = OH * OW
    k_start = split * K_CHUNK
    k_end = tl.minimum(k_start + K_CHUNK, GEMM_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for k0 in range(k_start, k_end, BLOCK_K):
        k = k0 + offs_k
        mask_k = k < k_end
        n = k // ohw
        rem = k % ohw
        oh = rem // OW
        ow = rem % OW
        ih = oh * stride_h - pad_h + r * dil_h
        iw = ow * stride_w - pad_w + s * dil_w
        ok = mask_k & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(go_ptr + go_col[:, None] + (n * sgn + oh * sgh + ow * sgw)[None, :],
                    mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        b = tl.load(x_ptr + (n * sxn + ih * sxh + iw * sxw)[:, None] + x_col[None, :],
                    mask=ok[:, None] & mask_n[None, :], other=0.0)
        acc = _mma(acc, a, b, UPCAST, IEEE)
    c_out = GEMM_M * (tl.num_programs(2) // SPLIT_K)
    base = split * c_out * Cg_in * KH * KW
    p_off = base + (co * (Cg_in * KH * KW))[:, None] + (offs_n * (KH * KW) + r * KW + s)[None, :]
    tl.store(part_ptr + p_off, acc, mask=mask_m[:, None] & mask_n[None, :])


def _common(dtype: torch.dtype, tensors) -> dict:
    return {
        "INT64": needs_int64(tensors),
        "UPCAST": interpreting() and dtype == torch.bfloat16,
        "IEEE": dtype in (torch.float32, torch.float64),
        "ACC_DTYPE": tl.float64 if dtype == torch.float64 else tl.float32,
    }


def _channels_last(t: torch.Tensor) -> bool:
    return t.stride(1) == 1 and t.shape[1] > 1


def forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    n, _c_in, h, wd = x.shape
    c_out, cg_in, kh, kw = w.shape
    _, _, oh, ow = out.shape
    groups = spec.groups
    cg_out = c_out // groups
    gemm_m = n * oh * ow

    def grid(meta):
        return (triton.cdiv(gemm_m, meta["BLOCK_M"]), triton.cdiv(cg_out, meta["BLOCK_N"]), groups)

    _conv2d_fwd_kernel[grid](
        x, w, bias if bias is not None else w, out,
        n, h, wd, oh, ow, cg_in, cg_out,
        *x.stride(), *w.stride(), *out.stride(),
        *spec.stride, *spec.pad_tl, *spec.dilation,
        gemm_m, cg_out, kh * kw * cg_in,
        KH=kh, KW=kw, CHANNELS_LAST=_channels_last(x), HAS_BIAS=bias is not None,
        **_common(x.dtype, (x, w, out)),
    )


def backward_input(grad_out, w, grad_in, spec: Conv2dSpec) -> None:
    # The input gradient is a transposed conv of grad_out: the phase-decomposed gather runs only the taps
    # that reach each stride phase of grad_in. (Imported here: that module builds on this one's pieces.)
    from cnnkern.triton.conv_transpose2d import phase_gather

    phase_gather(grad_out, w, None, grad_in, spec)


def _split_k(gemm_k: int, tiles: int, device: torch.device) -> int:
    """Enough splits to give every SM a few programs when the output tile grid alone is small."""
    if interpreting() or device.type != "cuda":
        return 1 if gemm_k <= 64 else 2  # still exercises the split path under the interpreter
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    want = max(1, (4 * sms) // max(tiles, 1))
    # Each split should still loop over a healthy stretch of K.
    return int(max(1, min(want, gemm_k // 1024, 64)))


def backward_weight(grad_out, x, grad_w, spec: Conv2dSpec) -> None:
    n, _c_in, h, wd = x.shape
    c_out, cg_in, kh, kw = grad_w.shape
    _, _, oh, ow = grad_out.shape
    groups = spec.groups
    cg_out = c_out // groups
    gemm_k = n * oh * ow
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    # Tile count estimated with 64x64 tiles, only to size the split.
    tiles = triton.cdiv(cg_out, 64) * triton.cdiv(cg_in, 64) * kh * kw * groups
    split = _split_k(gemm_k, tiles, x.device)
    chunk_unit = 64  # a multiple of every BLOCK_K, so splits never share a K block
    k_chunk = triton.cdiv(triton.cdiv(gemm_k, split), chunk_unit) * chunk_unit
    split = triton.cdiv(gemm_k, k_chunk)
    partials = torch.empty((split, c_out, cg_in, kh, kw), device=x.device, dtype=acc_dtype)

    def grid(meta):
        return (triton.cdiv(cg_out, meta["BLOCK_M"]), triton.cdiv(cg_in, meta["BLOCK_N"]) * kh * kw,
                groups * split)

    _conv2d_bwd_weight_kernel[grid](
        grad_out, x, partials,
        n, h, wd, oh, ow, cg_in, cg_out,
        *grad_out.stride(), *x.stride(),
        *spec.stride, *spec.pad_tl, *spec.dilation,
        cg_out, kh * kw * cg_in, gemm_k, k_chunk,
        KH=kh, KW=kw, CHANNELS_LAST=_channels_last(x), SPLIT_K=split,
        **_common(x.dtype, (grad_out, x, partials)),
    )
    grad_w.copy_(partials.sum(0) if split > 1 else partials[0])
