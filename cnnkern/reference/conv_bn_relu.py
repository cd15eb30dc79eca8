"""Reference fused conv + BatchNorm + activation on ATen: the composition it must equal, and its kernels.

The kernels' contract is in ``cnnkern.problem.conv_bn``; here each is spelled out in plain tensor ops,
computed in fp32 (fp64 for fp64 tensors) and rounded once, as the fused kernels do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnkern.reference.activation import activate, activation_grad
from cnnkern.reference.conv2d import why_not  # noqa: F401  (same acceptance rule)


def conv_bn_relu(x, weight, bias, bn_weight, bn_bias, running_mean, running_var, training, momentum=0.1, eps=1e-5,
                 stride=1, padding=0, dilation=1, groups=1, activation="relu"):
    """The unfused composition (updates the running statistics in place like ``F.batch_norm``)."""
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    y = F.batch_norm(y, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps)
    return activate(y, activation)


def _acc(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _c(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(_acc(like)).view(1, -1, 1, 1)


def normalize(y, a, b, out, activation) -> None:
    out.copy_(activate(y.to(_acc(y)) * _c(a, y) + _c(b, y), activation))


def _dz_xhat(grad, y, a, b, mean, invstd, activation):
    acc = _acc(y)
    yf = y.to(acc)
    dz = grad.to(acc) * activation_grad(yf * _c(a, y) + _c(b, y), activation)
    return dz, (yf - _c(mean, y)) * _c(invstd, y)


def backward_reduce(grad, y, a, b, mean, invstd, activation):
    dz, xhat = _dz_xhat(grad, y, a, b, mean, invstd, activation)
    return dz.sum((0, 2, 3)), (dz * xhat).sum((0, 2, 3))


def backward_apply(grad, y, a, b, mean, invstd, k_dz, k_one, k_xhat, out, activation) -> None:
    dz, xhat = _dz_xhat(grad, y, a, b, mean, invstd, activation)
    out.copy_(_c(k_dz, y) * dz + _c(k_one, y) + _c(k_xhat, y) * xhat)


KERNELS = {"conv_bn_relu_normalize": normalize, "conv_bn_relu_bwd_reduce": backward_reduce,
           "conv_bn_relu_bwd_apply": backward_apply}
