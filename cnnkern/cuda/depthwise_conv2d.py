"""Depthwise kernels: spatial tiles (NCHW), channel vectors (channels_last), atomic or deterministic wgrad, and the
forward's fused conv + BatchNorm epilogues (``depthwise_conv2d_fwd_act``, ``depthwise_conv2d_fwd_stats``:
contract in cnnkern.problem.conv_bn)."""

from __future__ import annotations

import torch

from cnnkern.cuda import activation_code, stats_empty, why_not_with_op
from cnnkern.problem.conv2d import Conv2dSpec


def why_not(problem) -> str | None:
    return why_not_with_op("depthwise_conv2d_fwd", "depthwise", problem)


def forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.depthwise_conv2d_fwd(x, w, bias, out, list(spec.stride), list(spec.pad_tl),
                                                list(spec.dilation))


def forward_act(x, w, bias, scale, shift, out, spec: Conv2dSpec, activation) -> None:
    """out = act((conv + bias) * scale + shift) on the fp32 accumulator, rounded once."""
    torch.ops.cnnkern_cuda.depthwise_conv2d_fwd_act(x, w, bias, scale, shift, out, list(spec.stride),
                                                    list(spec.pad_tl), list(spec.dilation),
                                                    activation_code(activation))


def forward_stats(x, w, bias, out, spec: Conv2dSpec) -> torch.Tensor:
    """out = conv + bias, and (count, mean, M2) of the stored values per pixel tile and channel: partials
    (tiles, C_out, 3) fp32. The tiles are the kernel's (spatial tiles per image for NCHW, pixel blocks for
    channels_last), so their number comes from the extension's plan for these tensors."""
    ops = torch.ops.cnnkern_cuda
    args = (list(spec.stride), list(spec.pad_tl), list(spec.dilation))
    tiles = ops.depthwise_conv2d_fwd_stats_tiles(x, w, out, *args)
    partials = stats_empty((tiles, out.shape[1], 3), x)
    ops.depthwise_conv2d_fwd_stats(x, w, bias, out, partials, *args)
    return partials


def backward_input(grad_out, w, grad_in, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.depthwise_conv2d_bwd_input(grad_out, w, grad_in, list(spec.stride),
                                                      list(spec.pad_tl), list(spec.dilation))


def backward_weight(grad_out, x, grad_w, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.depthwise_conv2d_bwd_weight(grad_out, x, grad_w, list(spec.stride),
                                                       list(spec.pad_tl), list(spec.dilation),
                                                       torch.are_deterministic_algorithms_enabled())


WHY_NOT = {
    "depthwise_conv2d_fwd_act": lambda problem: why_not_with_op("depthwise_conv2d_fwd_act",
                                                                "depthwise_conv2d_fwd_act", problem),
    "depthwise_conv2d_fwd_stats": lambda problem: why_not_with_op("depthwise_conv2d_fwd_stats",
                                                                  "depthwise_conv2d_fwd_stats", problem),
}

KERNELS = {"depthwise_conv2d_fwd": forward, "depthwise_conv2d_bwd_input": backward_input,
           "depthwise_conv2d_bwd_weight": backward_weight, "depthwise_conv2d_fwd_act": forward_act,
           "depthwise_conv2d_fwd_stats": forward_stats}
