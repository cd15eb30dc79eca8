"""The activations the fused epilogues apply, and their derivatives, on ATen (shared by the reference
conv and conv-BN kernels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def activate(z: torch.Tensor, activation) -> torch.Tensor:
    if activation is None:
        return z
    if activation == "relu":
        return F.relu(z)
    if activation == "relu6":
        return F.relu6(z)
    return F.silu(z)


def activation_grad(z: torch.Tensor, activation) -> torch.Tensor:
    """d act / dz at z (ReLU's derivative at 0 is 0, as ATen's threshold_backward has it)."""
    if activation is None:
        return torch.ones_like(z)
    if activation == "relu":
        return (z > 0).to(z.dtype)
    if activation == "relu6":
        return ((z > 0) & (z < 6)).to(z.dtype)
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))
