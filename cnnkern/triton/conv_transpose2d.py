"""Transposed conv2d in Triton as a phase-decomposed gather (also conv2d's input gradient).

Output pixel (oh, ow) reads input pixel ih = (oh + pad - r*dil) / stride for every tap r where that
division is exact. Whether it is exact depends only on oh mod stride (the pixel's "phase"), so the output is
split into stride_h*stride_w phase sub-grids; one program works on pixels of a single phase and loops only
over the taps that reach it (a test on scalars, uniform over the program). No zeros are inserted and no MMA
is spent on a tap that cannot contribute: for stride 2, each program runs about a quarter of the taps.

GEMM view per (group, phase): M = N*ceil(HO/sh)*ceil(WO/sw) pixels, N = Cg_out, K = taps * Cg_in.
A depthwise transposed conv (one output channel per group) has no GEMM in it: its own kernel tiles pixels x
channels and multiplies elementwise, so no MMA lane idles on the width-1 N and K dimensions.
The same kernel is conv2d's input gradient (output := grad_input, input := grad_output, no bias): the
weight is indexed [input-role channel, output-role channel within the group, r, s] in both.
"""

from __future__ import annotations

import triton
import triton.language as tl

from cnnkern.problem.conv2d import Conv2dSpec
from cnnkern.triton import interpreting, needs_int64, why_not_problem
from cnnkern.triton.conv2d import (
    _KEY,
    _PRUNE,
    _bias_store,
    _channels_last,
    _common,
    _configs,
    _tap_mma,
    _tile_offsets,
)

why_not = why_not_problem


@triton.jit
def _phase_pixels(offs_m, ph, pw, JH, JW, HO, WO, stride_h, stride_w, GEMM_M):
    """Pixels offs_m of phase (ph, pw)'s sub-grid: image n, place (jh, jw) in the sub-grid, output (oh, ow)."""
    jhw = JH * JW
    n = offs_m // jhw
    rem = offs_m % jhw
    jh = rem // JW
    jw = rem % JW
    oh = ph + jh * stride_h
    ow = pw + jw * stride_w
    # The last row/column of the phase grid exists only for the phases that fit in HO/WO.
    mask_m = (offs_m < GEMM_M) & (oh < HO) & (ow < WO)
    return n, jh, jw, oh, ow, mask_m


@triton.autotune(configs=_configs(), key=_KEY + ["stride_h", "stride_w"], prune_configs_by=_PRUNE,
                 cache_results=True)
@triton.jit
def _phase_gather_kernel(
    in_ptr, w_ptr, b_ptr, out_ptr,
    HI, WI, HO, WO, JH, JW, Cg_in, Cg_out,
    sin, sic, sih, siw,
    swi, swo, swh, sww,
    son, soc, soh, sow,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    GEMM_M, GEMM_N, GEMM_K,
    KH: tl.constexpr, KW: tl.constexpr, CHANNELS_LAST: tl.constexpr,
    HAS_BIAS: tl.constexpr, INT64: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    tiles_n = tl.cdiv(Cg_out, BLOCK_N)
    phase = tl.program_id(1) // tiles_n
    g = tl.program_id(2)
    ph = phase // stride_w
    pw = phase % stride_w
    offs_m, offs_n = _tile_offsets(tl.program_id(0), tl.program_id(1) % tiles_n, BLOCK_M, BLOCK_N, INT64)
    n, jh, jw, oh, ow, mask_m = _phase_pixels(offs_m, ph, pw, JH, JW, HO, WO, stride_h, stride_w, GEMM_M)
    mask_n = offs_n < Cg_out
    in_row = n * sin + (g * Cg_in) * sic
    co = g * Cg_out + offs_n
    # The weight's first dim counts this group's input-role channels, its second output channels in the group.
    w_col = (g * Cg_in) * swi + offs_n * swo
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for r in tl.static_range(KH):
        off_h = ph + pad_h - r * dil_h
        # Exact division (either sign): `%` is zero and `//` exact whatever the rounding convention.
        if off_h % stride_h == 0:
            ih = jh + off_h // stride_h
            ok_h = mask_m & (ih >= 0) & (ih < HI)
            for s in tl.static_range(KW):
                off_w = pw + pad_w - s * dil_w
                if off_w % stride_w == 0:
                    iw = jw + off_w // stride_w
                    ok = ok_h & (iw >= 0) & (iw < WI)
                    acc = _tap_mma(acc, in_ptr, in_row + ih * sih + iw * siw, ok, sic,
                                   w_ptr, w_col + r * swh + s * sww, swi, Cg_in, mask_n, UPCAST, IEEE, BLOCK_K)
    _bias_store(acc, b_ptr, out_ptr, n * son + oh * soh + ow * sow, co, soc, mask_m, mask_n,
                HAS_BIAS, ACC_DTYPE)


def phase_gather(inp, w, bias, out, spec: Conv2dSpec) -> None:
    """out[n, o] = sum over the taps reaching each pixel of inp[n, i] * w[i, o % Cg_out] (+ bias[o]).

    ``spec`` is the conv2d from ``out`` (as its input) to ``inp`` (as its output); ``w`` is that conv2d's
    weight, (C_inp, C_out/groups, kH, kW) with C_inp = inp's channels.
    """
    n, c_in, hi, wi = inp.shape
    _, c_out, ho, wo = out.shape
    kh, kw = w.shape[2], w.shape[3]
    groups = spec.groups
    cg_in, cg_out = c_in // groups, c_out // groups
    sh, sw = spec.stride
    jh, jw = triton.cdiv(ho, sh), triton.cdiv(wo, sw)
    gemm_m = n * jh * jw

    def grid(meta):
        return (triton.cdiv(gemm_m, meta["BLOCK_M"]), triton.cdiv(cg_out, meta["BLOCK_N"]) * sh * sw, groups)

    _phase_gather_kernel[grid](
        inp, w, bias if bias is not None else w, out,
        hi, wi, ho, wo, jh, jw, cg_in, cg_out,
        *inp.stride(), *w.stride(), *out.stride(),
        sh, sw, *spec.pad_tl, *spec.dilation,
        gemm_m, cg_out, triton.cdiv(kh, sh) * triton.cdiv(kw, sw) * cg_in,
        KH=kh, KW=kw, CHANNELS_LAST=_channels_last(inp), HAS_BIAS=bias is not None,
        **_common(inp.dtype, (inp, w, out)),
    )


def forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    phase_gather(x, w, bias, out, spec)


def _depthwise_configs():
    if interpreting():
        return [triton.Config({"BLOCK_M": 32, "BLOCK_C": 16}, num_warps=1)]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_C": bc}, num_warps=w)
            for bm, bc, w in ((64, 32, 4), (128, 16, 4), (32, 64, 4), (16, 128, 4), (128, 64, 8), (256, 8, 4))]


@triton.autotune(configs=_depthwise_configs(), key=["GEMM_M", "C", "MULT", "KH", "KW", "stride_h", "stride_w",
                                                    "CHANNELS_LAST"], cache_results=True)
@triton.jit
def _depthwise_phase_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    HI, WI, HO, WO, JH, JW, C, MULT,
    sxn, sxc, sxh, sxw,
    swi, swh, sww,
    syn, syc, syh, syw,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    GEMM_M,
    KH: tl.constexpr, KW: tl.constexpr, CHANNELS_LAST: tl.constexpr, HAS_BIAS: tl.constexpr,
    INT64: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # Output channel c sums input channels c*MULT .. c*MULT+MULT-1, each with its own (kH, kW) filter.
    phase = tl.program_id(1)
    ph = phase // stride_w
    pw = phase % stride_w
    offs_m, offs_c = _tile_offsets(tl.program_id(0), tl.program_id(2), BLOCK_M, BLOCK_C, INT64)
    n, jh, jw, oh, ow, mask_m = _phase_pixels(offs_m, ph, pw, JH, JW, HO, WO, stride_h, stride_w, GEMM_M)
    mask_c = offs_c < C
    acc = tl.zeros((BLOCK_M, BLOCK_C), dtype=ACC_DTYPE)
    for r in tl.static_range(KH):
        off_h = ph + pad_h - r * dil_h
        if off_h % stride_h == 0:
            ih = jh + off_h // stride_h
            ok_h = mask_m & (ih >= 0) & (ih < HI)
            for s in tl.static_range(KW):
                off_w = pw + pad_w - s * dil_w
                if off_w % stride_w == 0:
                    iw = jw + off_w // stride_w
                    ok = ok_h & (iw >= 0) & (iw < WI)
                    pix = n * sxn + ih * sxh + iw * sxw
                    for j in range(MULT):
                        ci = offs_c * MULT + j
                        a = tl.load(x_ptr + pix[:, None] + (ci * sxc)[None, :],
                                    mask=ok[:, None] & mask_c[None, :], other=0.0)
                        wv = tl.load(w_ptr + ci * swi + r * swh + s * sww, mask=mask_c, other=0.0)
                        acc += a.to(ACC_DTYPE) * wv.to(ACC_DTYPE)[None, :]
    _bias_store(acc, b_ptr, y_ptr, n * syn + oh * syh + ow * syw, offs_c, syc, mask_m, mask_c, HAS_BIAS, ACC_DTYPE)


def forward_depthwise(x, w, bias, out, spec: Conv2dSpec) -> None:
    """A transposed conv with groups == C_out: weight (C_out*m, 1, kH, kW), C_in = C_out*m."""
    n, c_in, hi, wi = x.shape
    _, c_out, ho, wo = out.shape
    kh, kw = w.shape[2], w.shape[3]
    sh, sw = spec.stride
    jh, jw = triton.cdiv(ho, sh), triton.cdiv(wo, sw)
    gemm_m = n * jh * jw

    def grid(meta):
        return (triton.cdiv(gemm_m, meta["BLOCK_M"]), sh * sw, triton.cdiv(c_out, meta["BLOCK_C"]))

    _depthwise_phase_kernel[grid](
        x, w, bias if bias is not None else w, out,
        hi, wi, ho, wo, jh, jw, c_out, c_in // c_out,
        *x.stride(), w.stride(0), w.stride(2), w.stride(3), *out.stride(),
        sh, sw, *spec.pad_tl, *spec.dilation,
        gemm_m,
        KH=kh, KW=kw, CHANNELS_LAST=_channels_last(x), HAS_BIAS=bias is not None,
        INT64=needs_int64((x, w, out)), ACC_DTYPE=_common(x.dtype, (x,))["ACC_DTYPE"],
    )
