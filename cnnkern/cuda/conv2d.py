"""conv2d's implicit-GEMM kernels (forward, input gradient, weight gradient) and the forward's fused
conv + BatchNorm epilogues (``conv2d_fwd_act``, ``conv2d_fwd_stats``: contract in cnnkern.problem.conv_bn)."""

from __future__ import annotations

import torch

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


# The fused kernels need a build of the extension that has their ops.
WHY_NOT = {
    "conv2d_fwd_act": lambda problem: why_not_with_op("conv2d_fwd_act", "conv2d_fwd_act", problem),
    "conv2d_fwd_stats": lambda problem: why_not_with_op("conv2d_fwd_stats", "conv2d_fwd_stats", problem),
}

KERNELS = {"conv2d_fwd": forward, "conv2d_bwd_input": backward_input, "conv2d_bwd_weight": backward_weight,
           "conv2d_fwd_act": forward_act, "conv2d_fwd_stats": forward_stats}
