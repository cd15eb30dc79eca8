"""Grouped 1x1 conv on the implicit-GEMM mainloop: folded-BN/ReLU epilogue, permuted (shuffled) store."""

from __future__ import annotations

import torch

from cnnkern.cuda import why_not_with_op


def why_not(problem) -> str | None:
    return why_not_with_op("group_pointwise_conv2d_fwd", "group_pointwise_conv2d", problem)


def forward(x, w, bias, scale, shift, out, spec) -> None:
    cm = spec.channels
    torch.ops.cnnkern_cuda.group_pointwise_conv2d_fwd(x, w, bias, scale, shift, out, spec.groups, cm.shuffle_groups,
                                                      cm.offset, spec.relu)


def backward_input(grad_out, w, output, scale, grad_in, spec) -> None:
    cm = spec.channels
    torch.ops.cnnkern_cuda.group_pointwise_conv2d_bwd_input(grad_out, w, output, scale, grad_in, spec.groups,
                                                            cm.shuffle_groups, cm.offset)


def backward_weight(grad_out, x, output, scale, grad_w, spec) -> None:
    cm = spec.channels
    torch.ops.cnnkern_cuda.group_pointwise_conv2d_bwd_weight(grad_out, x, output, scale, grad_w, spec.groups,
                                                             cm.shuffle_groups, cm.offset)


KERNELS = {"group_pointwise_conv2d_fwd": forward, "group_pointwise_conv2d_bwd_input": backward_input,
           "group_pointwise_conv2d_bwd_weight": backward_weight}
