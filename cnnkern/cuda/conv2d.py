"""conv2d's implicit-GEMM kernels (forward, input gradient, weight gradient) and the forward's fused
conv + BatchNorm epilogues (``conv2d_fwd_act``, ``conv2d_fwd_stats``: contract in cnnkern.problem.conv_bn)."""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import torch

from cnnkern._ext import extension
from cnnkern.cuda import activation_code, stats_empty, why_not_with_op
from cnnkern.cuda import why_not_problem as why_not  # noqa: F401  (the registry reads it)
from cnnkern.problem.conv2d import Conv2dSpec


def forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.conv2d_fwd(x, w, bias, out, list(spec.stride), list(spec.pad_tl),
                                      list(spec.dilation), spec.groups)


def forward_act(x, w, bias, scale, shift, out, spec: Conv2dSpec, activation) -> None:
    """out = act((conv + bias) * scale + shift) on the fp32 accumulator, rounded once."""
    torch.ops.cnnkern_cuda.conv2d_fwd_act(x, w, bias, scale, shift, out, list(spec.stride), list(spec.pad_tl),
                                          list(spec.dilation), spec.groups, activation_code(activation))


def forward_stats(x, w, bias, out, spec: Conv2dSpec) -> torch.Tensor:
    """out = conv + bias, and (count, mean, M2) of the stored values per pixel tile of the GEMM (128 output
    pixels) and channel: partials (tiles, C_out, 3) fp32."""
    ops = torch.ops.cnnkern_cuda
    tiles = ops.conv2d_fwd_stats_tiles(x, w, out)
    partials = stats_empty((tiles, out.shape[1], 3), x)
    ops.conv2d_fwd_stats(x, w, bias, out, partials, list(spec.stride), list(spec.pad_tl), list(spec.dilation),
                         spec.groups)
    return partials


def backward_input(grad_out, w, grad_in, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.conv2d_bwd_input(grad_out, w, grad_in, list(spec.stride), list(spec.pad_tl),
                                            list(spec.dilation), spec.groups)


def backward_weight(grad_out, x, grad_w, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.conv2d_bwd_weight(grad_out, x, grad_w, list(spec.stride), list(spec.pad_tl),
                                             list(spec.dilation), spec.groups)


def _vec_ok(t: torch.Tensor, v: int) -> bool:
    """csrc/cuda/host_common.h vec_ok: unit channel stride, the other strides that matter multiples of v,
    the base aligned to v elements."""
    if t.size(1) > 1 and t.stride(1) != 1:
        return False
    if any(t.size(d) > 1 and t.stride(d) % v != 0 for d in (0, 2, 3)):
        return False
    return t.data_ptr() % (v * t.element_size()) == 0


def _channels_fast(t: torch.Tensor) -> bool:
    step = t.stride(3) if t.size(3) > 1 else (t.stride(2) if t.size(2) > 1 else t.stride(0))
    return t.size(1) > 1 and t.stride(1) < step


def _sm90_switch_dtype_groups(x: torch.Tensor, groups: int) -> str | None:
    """The first gates of every sm_90a kernel, in the C++ order: the switch, 16-bit, one group."""
    if os.environ.get("CNNKERN_SM90_WGMMA") != "1":
        return "the sm_90a wgmma kernel is off by default (unverified on a GPU): set CNNKERN_SM90_WGMMA=1"
    if x.dtype not in (torch.float16, torch.bfloat16):
        return "fp32 keeps the step-1 kernel"
    if groups != 1:
        return "grouped convolution"
    return None


def sm90_wgmma_why_not(x: torch.Tensor, w: torch.Tensor, groups: int) -> str | None:
    """Why the CUDA forward would NOT run the sm_90a wgmma kernel (kernels/conv/conv2d_fwd_sm90.cuh), or None
    when it would. Mirrors conv2d_fwd_sm90_why_not (csrc/cuda/conv2d_fwd_sm90.cu), same order: the kernel is
    OFF by default until a GPU run verifies it (README, "Kernels rewritten after that run"). The extension
    reads CNNKERN_SM90_WGMMA once per process; this reads it now."""
    why = _sm90_switch_dtype_groups(x, groups)
    if why:
        return why
    c_in, c_out, kh, kw = w.size(1), w.size(0), w.size(2), w.size(3)
    if not (_channels_fast(x) and c_in % 8 == 0 and _vec_ok(x, 8)):
        return "x is not channels-last with 16-byte aligned pixels"
    if c_in % 64 != 0:
        return "C_in is not a multiple of 64"
    if c_out % 8 != 0:
        return "C_out is not a multiple of 8"
    wk = w if _vec_ok(w, 8) else w.contiguous(memory_format=torch.channels_last)
    n_st, c_st, h_st, w_st = wk.stride()
    k = kh * kw * c_in
    rows = (c_st == 1 and w_st == c_in and h_st == kw * c_in and n_st >= k and (n_st * wk.element_size()) % 16 == 0
            and wk.data_ptr() % 16 == 0)
    if not rows:
        return "the filter is not channels-last contiguous per output channel with 16-byte aligned rows"
    return _sm90_build_and_device_gate(x)


def _sm90_build_and_device_gate(x: torch.Tensor) -> str | None:
    """The problem-independent end of the gates: an extension with the sm_90a kernels and an sm_90 device."""
    ext = extension()
    if ext is None or not hasattr(ext, "sm90_wgmma_gate"):
        return "this build of cnnkern._C has no sm_90a wgmma kernel"
    if not torch.cuda.is_available():
        return "no usable CUDA device"
    why = ext.sm90_wgmma_gate(x.device.index if x.device.index is not None else 0)
    return why or None


class DgradPhaseDim(NamedTuple):
    """One dimension of one stride phase of an input gradient as a stride-1 forward (csrc/cuda/conv2d_dgrad_as_fwd.h,
    dgrad_phase_dim): grad_in rows phi, phi + stride, ... (extent of them); the taps r0, r0 + rq, ... (taps of
    them); the forward's top padding, implied bottom padding and dilation; the grad_out rows it skips and reads."""

    extent: int
    r0: int
    rq: int
    taps: int
    dil: int
    pad: int
    pad_hi: int
    skip: int
    n_in: int


def dgrad_phase_dim(phi: int, stride: int, dil: int, pad: int, k: int, n_in: int, n_out: int) -> DgradPhaseDim:
    """dgrad_phase_dim of csrc/cuda/conv2d_dgrad_as_fwd.h, in Python (phase phi of grad_in's n_in rows, grad_out's
    n_out rows)."""
    extent = (n_in - phi + stride - 1) // stride if phi < n_in else 0
    g = math.gcd(dil, stride)
    rq, fdil = stride // g, dil // g
    r0, taps = 0, 0
    for r in range(min(rq, k)):
        if (phi + pad - r * dil) % stride == 0:
            r0, taps = r, (k - 1 - r) // rq + 1
            break
    fpad = pad_hi = skip = 0
    rows = n_out
    if taps:
        e = (phi + pad - r0 * dil) // stride  # exact
        fpad, pad_hi = (taps - 1) * fdil - e, extent + e - n_out
        if fpad < 0:
            skip, fpad, rows = -fpad, 0, n_out + fpad
            if rows <= 0:
                taps = 0
    return DgradPhaseDim(extent, r0, rq, taps, fdil, fpad, pad_hi, skip, rows)


def dgrad_phases(grad_in_hw, grad_out_hw, kernel, spec: Conv2dSpec) -> list[tuple[int, int, DgradPhaseDim, DgradPhaseDim]]:
    """(ph, pw, rows, columns) of every non-empty stride phase (dgrad_phases_as_fwd's order; a phase whose taps
    are 0 in either dimension is all zeros)."""
    top, _, left, _ = spec.padding
    out = []
    for ph in range(spec.stride[0]):
        for pw in range(spec.stride[1]):
            y = dgrad_phase_dim(ph, spec.stride[0], spec.dilation[0], top, kernel[0], grad_in_hw[0], grad_out_hw[0])
            x = dgrad_phase_dim(pw, spec.stride[1], spec.dilation[1], left, kernel[1], grad_in_hw[1], grad_out_hw[1])
            if y.extent and x.extent:
                out.append((ph, pw, y, x))
    return out


def sm90_dgrad_why_not(grad_out: torch.Tensor, w: torch.Tensor, spec: Conv2dSpec,
                       in_hw: tuple[int, int]) -> str | None:
    """Why the CUDA input gradient would NOT run on the sm_90a wgmma forward (each stride phase of grad_in is a
    stride-1 forward conv of grad_out with the phase's taps of w, flipped and transposed), or None when it would.
    Mirrors dgrad_phases_as_fwd (csrc/cuda/conv2d_dgrad_as_fwd.h) and then the forward's gates on (grad_out, w') as
    csrc/cuda/conv2d.cpp dgrad_on_sm90_fwd applies them; w' is always a fresh channels-last tensor there and a
    phase's grad_out view keeps its strides and alignment, so one stand-in of that layout is enough here.
    in_hw: grad_in's (H, W). The switch first, as dgrad_on_sm90_fwd asks it before building the plan."""
    why = _sm90_switch_dtype_groups(grad_out, spec.groups)
    if why:
        return why
    limit = 1 << 30  # kDgradAsFwdCoordLimit
    for _, _, y, x in dgrad_phases(tuple(in_hw), tuple(grad_out.shape[2:]), (w.size(2), w.size(3)), spec):
        if not (y.taps and x.taps):
            continue
        if (y.n_in + y.pad + 1 + y.dil * (y.taps - 1) >= limit or x.n_in + x.pad + 1 + x.dil * (x.taps - 1) >= limit
                or y.extent + 1 + y.pad >= limit or x.extent + 1 + x.pad >= limit):
            return "the equivalent forward's coordinates exceed 32 bits"
    w2 = torch.empty((w.size(1), w.size(0), w.size(2), w.size(3)), dtype=w.dtype, device=w.device,
                     memory_format=torch.channels_last)
    return sm90_wgmma_why_not(grad_out, w2, 1)


def sm90_wgrad_why_not(grad_out: torch.Tensor, x: torch.Tensor, groups: int) -> str | None:
    """Why the CUDA weight gradient would NOT run the sm_90a wgmma kernel (kernels/conv/conv2d_wgrad_sm90.cuh),
    or None when it would. Mirrors conv2d_wgrad_sm90_why_not (csrc/cuda/conv2d_wgrad_sm90.cu), same order:
    grad_out must be a [pixels][C_out] matrix for TMA (channels-last, one 16-byte aligned pixel stride), x
    channels-last with 16-byte aligned pixels and C_in % 64 == 0. Off by default with the forward."""
    why = _sm90_switch_dtype_groups(x, groups)
    if why:
        return why
    n_st, c_st, h_st, w_st = grad_out.stride()
    oh, ow = grad_out.size(2), grad_out.size(3)
    dy_rows = (c_st == 1 and w_st % 8 == 0 and w_st >= grad_out.size(1) and h_st == ow * w_st
               and n_st == oh * h_st and grad_out.data_ptr() % 16 == 0)
    if not dy_rows:
        return "grad_out is not channels-last with one 16-byte aligned pixel stride"
    xn, xc, xh, xw = x.stride()
    if not (xc == 1 and xw % 8 == 0 and xh % 8 == 0 and xn % 8 == 0 and x.data_ptr() % 16 == 0):
        return "x is not channels-last with 16-byte aligned pixels"
    if x.size(1) % 64 != 0:
        return "C_in is not a multiple of 64"
    return _sm90_build_and_device_gate(x)


# The fused kernels need a build of the extension that has their ops.
WHY_NOT = {
    "conv2d_fwd_act": lambda problem: why_not_with_op("conv2d_fwd_act", "conv2d_fwd_act", problem),
    "conv2d_fwd_stats": lambda problem: why_not_with_op("conv2d_fwd_stats", "conv2d_fwd_stats", problem),
}

KERNELS = {"conv2d_fwd": forward, "conv2d_bwd_input": backward_input, "conv2d_bwd_weight": backward_weight,
           "conv2d_fwd_act": forward_act, "conv2d_fwd_stats": forward_stats}
