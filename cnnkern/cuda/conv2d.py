"""conv2d's implicit-GEMM kernels (forward, input gradient, weight gradient)."""

from __future__ import annotations

import torch

from cnnkern.cuda import why_not_problem as why_not  # noqa: F401  (the registry reads it)
from cnnkern.problem.conv2d import Conv2dSpec


def forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.conv2d_fwd(x, w, bias, out, list(spec.stride), list(spec.pad_tl),
                                      list(spec.dilation), spec.groups)


def backward_input(grad_out, w, grad_in, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.conv2d_bwd_input(grad_out, w, grad_in, list(spec.stride), list(spec.pad_tl),
                                            list(spec.dilation), spec.groups)


def backward_weight(grad_out, x, grad_w, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.conv2d_bwd_weight(grad_out, x, grad_w, list(spec.stride), list(spec.pad_tl),
                                             list(spec.dilation), spec.groups)


KERNELS = {"conv2d_fwd": forward, "conv2d_bwd_input": backward_input, "conv2d_bwd_weight": backward_weight}
