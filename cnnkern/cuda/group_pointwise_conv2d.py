"""Grouped 1x1 conv: folded-BN/ReLU epilogue, permuted (shuffled) store.

The forward runs the small-K slab kernel (kernels/conv/group_pointwise_conv2d_smallk.cuh) for channels_last
problems with at most 64 input channels per group (256 for fp16/bf16 with an even count: mma.sync), and
the implicit-GEMM mainloop otherwise; the choice is
plan_gpw_smallk's (kernels/conv/group_pointwise_conv2d_params.cuh), made in csrc/ per call, so every problem
this module accepts has a kernel and why_not is unchanged. The input gradient takes the same kernel on the
turned-around problem (channels_last grad_out / saved output / grad_in, at most 256 output channels per group
for fp16/bf16, 64 for fp32) and the implicit GEMM otherwise. The weight gradient of channels_last fp16/bf16
problems whose per-group products fit 128 accumulator fragments of 16 x 8 runs the small-K weight-gradient
kernel (kernels/conv/group_pointwise_conv2d_smallk_wgrad.cuh), the GEMM's split-K otherwise; both reduce their
fp32 partials in a fixed order.
"""

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
