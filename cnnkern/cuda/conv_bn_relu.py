"""BatchNorm + activation around a conv output: the normalize pass and the two backward passes (contract in
cnnkern.problem.conv_bn; kernels in kernels/conv/conv_bn_relu.cuh, design in kernels/conv/conv_bn_relu.md).

y, grad and out may each be NCHW, channels_last or a strided view; the per-channel vectors are fp32 (C,)
with any stride (the CUDA kernels do not take fp64). The backward reduction is deterministic (per-block
partials added in a fixed order, no atomics).
"""

from __future__ import annotations

import torch

from cnnkern.cuda import activation_code, stats_empty, why_not_with_op


def why_not(problem) -> str | None:
    return why_not_with_op("conv_bn_relu_normalize", "conv_bn_relu", problem)


def normalize(y, a, b, out, activation) -> None:
    """out = act(y * a + b)."""
    torch.ops.cnnkern_cuda.conv_bn_relu_normalize(y, a, b, out, activation_code(activation))


def backward_reduce(grad, y, a, b, mean, invstd, activation):
    """(sum over N, H, W of dz, of dz * xhat) per channel, dz = grad * act'(y * a + b), xhat = (y - mean) *
    invstd; fp32 (C,)."""
    code = activation_code(activation)
    c = y.shape[1]
    sum_dz, sum_dz_xhat = stats_empty((c,), y), stats_empty((c,), y)
    torch.ops.cnnkern_cuda.conv_bn_relu_bwd_reduce(grad, y, a, b, mean, invstd, sum_dz, sum_dz_xhat, code)
    return sum_dz, sum_dz_xhat


def backward_apply(grad, y, a, b, mean, invstd, k_dz, k_one, k_xhat, out, activation) -> None:
    """out = k_dz * dz + k_one + k_xhat * xhat."""
    torch.ops.cnnkern_cuda.conv_bn_relu_bwd_apply(grad, y, a, b, mean, invstd, k_dz, k_one, k_xhat, out,
                                                  activation_code(activation))


KERNELS = {"conv_bn_relu_normalize": normalize, "conv_bn_relu_bwd_reduce": backward_reduce,
           "conv_bn_relu_bwd_apply": backward_apply}
