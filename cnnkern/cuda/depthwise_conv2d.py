"""Depthwise kernels: spatial tiles (NCHW), channel vectors (channels_last), atomic or deterministic wgrad."""

from __future__ import annotations

import torch

from cnnkern.cuda import why_not_with_op
from cnnkern.problem.conv2d import Conv2dSpec


def why_not(problem) -> str | None:
    return why_not_with_op("depthwise_conv2d_fwd", "depthwise", problem)


def forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.depthwise_conv2d_fwd(x, w, bias, out, list(spec.stride), list(spec.pad_tl),
                                                list(spec.dilation))


def backward_input(grad_out, w, grad_in, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.depthwise_conv2d_bwd_input(grad_out, w, grad_in, list(spec.stride),
                                                      list(spec.pad_tl), list(spec.dilation))


def backward_weight(grad_out, x, grad_w, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.depthwise_conv2d_bwd_weight(grad_out, x, grad_w, list(spec.stride),
                                                       list(spec.pad_tl), list(spec.dilation),
                                                       torch.are_deterministic_algorithms_enabled())


KERNELS = {"depthwise_conv2d_fwd": forward, "depthwise_conv2d_bwd_input": backward_input,
           "depthwise_conv2d_bwd_weight": backward_weight}
