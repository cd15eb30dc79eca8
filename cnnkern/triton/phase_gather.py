"""The stride-phase gather: transposed conv2d's forward and conv2d's input gradient, one kernel for both.

Output pixel (oh, ow) reads input pixel ih = (oh + pad - r*dil) / stride for every tap r where that
division is exact. Whether it is exact depends only on oh mod stride (the pixel's "phase"), so the output is
split into stride_h*stride_w phase sub-grids; one program works on pixels of a single phase and loops only
over the taps that reach it (a test on scalars, uniform over the program). No zeros are inserted and no MMA
is spent on a tap that cannot contribute: for stride 2, each program runs about a quarter of the taps.

GEMM view per (group, phase): M = N*ceil(HO/sh)*ceil(WO/sw) pixels, N = Cg_out, K = taps * Cg_in.
As conv2d's input gradient: output := grad_input, input := grad_output, no bias; the weight is indexed
[input-role channel, output-role channel within the group, r, s] in both uses. It lives in its own module
because two kernel modules launch it (conv2d.py and conv_transpose2d.py), and kernel modules never import
each other.
"""

from __future__ import annotations

import math

import triton
import triton.language as tl

from cnnkern.problem.conv2d import Conv2dSpec
from cnnkern.triton.tiles import (
    CONV_GEMM_KEY,
    GEMM_PRUNE,
    bias_store,
    channels_last,
    conv_geometry,
    gemm_configs,
    mma,
    mma_flags,
    phase_pixels,
    set_weight_block_kn,
    tile_offsets,
    weight_descriptor,
)


# The configs' pre_hook sizes the weight's TMA descriptor (w_desc) to their tile (see conv2d.py).
@triton.autotune(configs=gemm_configs(pre_hook=set_weight_block_kn),
                 key=CONV_GEMM_KEY + ["stride_h", "stride_w", "USE_TMA"], prune_configs_by=GEMM_PRUNE,
                 cache_results=True)
@triton.jit
def _phase_gather_kernel(
    in_ptr, w_ptr, b_ptr, out_ptr, w_desc,
    HI, WI, HO, WO, JH, JW, Cg_in, Cg_out,
    sin, sic, sih, siw,
    swi, swo, swh, sww,
    son, soc, soh, sow,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, step_h, step_w,
    GEMM_M, GEMM_N, GEMM_K,
    KH: tl.constexpr, KW: tl.constexpr, CHANNELS_LAST: tl.constexpr,
    HAS_BIAS: tl.constexpr, INT64: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr,
    ACC_DTYPE: tl.constexpr, USE_TMA: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    tiles_n = tl.cdiv(Cg_out, BLOCK_N)
    phase = tl.program_id(1) // tiles_n
    g = tl.program_id(2)
    ph = phase // stride_w
    pw = phase % stride_w
    pid_n = tl.program_id(1) % tiles_n
    offs_m, offs_n = tile_offsets(tl.program_id(0), pid_n, BLOCK_M, BLOCK_N, INT64)
    n, jh, jw, oh, ow, mask_m = phase_pixels(offs_m, ph, pw, JH, JW, HO, WO, stride_h, stride_w, GEMM_M)
    mask_n = offs_n < Cg_out
    in_row = n * sin + (g * Cg_in) * sic
    co = g * Cg_out + offs_n
    # The weight's first dim counts this group's input-role channels, its second output channels in the group.
    w_col = (g * Cg_in) * swi + offs_n * swo
    # The taps reaching this phase: r with (ph + pad_h - r*dil_h) divisible by stride_h, i.e. r0, r0 + step_h,
    # ... below KH (step = stride / gcd(stride, dil), from the host); the same along w. r0 is the smallest
    # such r (KH when none): the scan runs downwards so the last hit wins. `%` only tests for zero, which
    # holds whatever the sign convention.
    r0 = KH
    for tap_r in tl.static_range(KH - 1, -1, -1):
        r0 = tl.where((ph + pad_h - tap_r * dil_h) % stride_h == 0, tap_r, r0)
    s0 = KW
    for tap_s in tl.static_range(KW - 1, -1, -1):
        s0 = tl.where((pw + pad_w - tap_s * dil_w) % stride_w == 0, tap_s, s0)
    taps_h = tl.cdiv(KH - r0, step_h)
    taps_w = tl.cdiv(KW - s0, step_w)
    # One flat loop over (tap, channel block), so that Triton pipelines it as a whole (see conv_taps_mma).
    offs_k = tl.arange(0, BLOCK_K)
    c_blocks = tl.cdiv(Cg_in, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for kk in range(taps_h * taps_w * c_blocks):
        tap = kk // c_blocks
        c0 = (kk - tap * c_blocks) * BLOCK_K
        c = c0 + offs_k
        jr = tap // taps_w
        r = r0 + jr * step_h
        s = s0 + (tap - jr * taps_w) * step_w
        # Exact divisions (either sign), so `//` is exact whatever its rounding convention.
        ih = jh + (ph + pad_h - r * dil_h) // stride_h
        iw = jw + (pw + pad_w - s * dil_w) // stride_w
        ok = mask_m & (ih >= 0) & (ih < HI) & (iw >= 0) & (iw < WI)
        mask_c = c < Cg_in
        a = tl.load(in_ptr + (in_row + ih * sih + iw * siw)[:, None] + c[None, :] * sic,
                    mask=ok[:, None] & mask_c[None, :], other=0.0)
        if USE_TMA:
            # The (taps, C_inp, Cg_out) box: zeros past Cg_out and past C_inp (groups == 1: the K tail of the
            # only group), as the masked pointer load gives.
            b = tl.reshape(w_desc.load([r * KW + s, g * Cg_in + c0, pid_n * BLOCK_N]), (BLOCK_K, BLOCK_N))
        else:
            b = tl.load(w_ptr + (w_col + r * swh + s * sww)[None, :] + c[:, None] * swi,
                        mask=mask_c[:, None] & mask_n[None, :], other=0.0)
        acc = mma(acc, a, b, UPCAST, IEEE)
    bias_store(acc, b_ptr, out_ptr, n * son + oh * soh + ow * sow, co, soc, mask_m, mask_n, HAS_BIAS, ACC_DTYPE)


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
    dh, dw = spec.dilation
    jh, jw = triton.cdiv(ho, sh), triton.cdiv(wo, sw)
    gemm_m = n * jh * jw

    # TMA for the weight only with one group: with more, a K block's tail past Cg_in would read the next
    # group's weights (the activations there are zero, but 0 * inf is not).
    w_desc = weight_descriptor(w) if groups == 1 else None

    def grid(meta):
        return (triton.cdiv(gemm_m, meta["BLOCK_M"]), triton.cdiv(cg_out, meta["BLOCK_N"]) * sh * sw, groups)

    _phase_gather_kernel[grid](
        inp, w, bias if bias is not None else w, out, w_desc,
        hi, wi, ho, wo, jh, jw, cg_in, cg_out,
        *inp.stride(), *w.stride(), *out.stride(),
        *conv_geometry(spec), sh // math.gcd(sh, dh), sw // math.gcd(sw, dw),
        gemm_m, cg_out, triton.cdiv(kh, sh) * triton.cdiv(kw, sw) * cg_in,
        KH=kh, KW=kw, CHANNELS_LAST=channels_last(inp), HAS_BIAS=bias is not None, USE_TMA=w_desc is not None,
        **mma_flags(inp.dtype, (inp, w, out)),
    )
