"""Transposed conv2d in Triton: the stride-phase gather (phase_gather.py), and a depthwise-transposed kernel.

The general case is the phase-decomposed gather that conv2d's input gradient also runs: output pixels are
split by stride phase and each program visits only the taps that reach its phase, so no zeros are inserted.
A depthwise transposed conv (one output channel per group) has no GEMM in it: its own kernel tiles pixels x
channels and multiplies elementwise, so no MMA lane idles on the width-1 N and K dimensions.
"""

from __future__ import annotations

import triton
import triton.language as tl

from cnnkern.problem.conv2d import Conv2dSpec
from cnnkern.triton import interpreting, why_not_problem
from cnnkern.triton.phase_gather import phase_gather
from cnnkern.triton.tiles import (
    bias_store,
    cfg,
    channels_last,
    conv_geometry,
    fma_flags,
    phase_pixels,
    tile_offsets,
)

why_not = why_not_problem


def forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    phase_gather(x, w, bias, out, spec)


def _depthwise_configs():
    if interpreting():
        return [cfg(1, BLOCK_M=32, BLOCK_C=16)]
    return [cfg(w, BLOCK_M=bm, BLOCK_C=bc)
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
    offs_m, offs_c = tile_offsets(tl.program_id(0), tl.program_id(2), BLOCK_M, BLOCK_C, INT64)
    n, jh, jw, oh, ow, mask_m = phase_pixels(offs_m, ph, pw, JH, JW, HO, WO, stride_h, stride_w, GEMM_M)
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
    bias_store(acc, b_ptr, y_ptr, n * syn + oh * syh + ow * syw, offs_c, syc, mask_m, mask_c, HAS_BIAS, ACC_DTYPE)


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
        *conv_geometry(spec),
        gemm_m,
        KH=kh, KW=kw, CHANNELS_LAST=channels_last(x), HAS_BIAS=bias is not None,
        **fma_flags(x.dtype, (x, w, out)),
    )


# The kernels this module gives the registry (cnnkern.ops.registry), by the name the ops ask for.
KERNELS = {"conv_transpose2d_fwd": forward, "depthwise_conv_transpose2d_fwd": forward_depthwise}
