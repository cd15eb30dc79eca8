"""Building blocks shared by the bundled models."""

from __future__ import annotations

import torch
from torch import nn

from cnnkern.nn import FusedSequential


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Nearest multiple of ``divisor`` (at least ``min_value``, default ``divisor``), never below 90% of value.

    The rounding rule of the TensorFlow MobileNet code that torchvision also uses; MobileNetV2's channel
    counts depend on it.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def init_torchvision_style(model: nn.Module, conv_nonlinearity: str = "relu",
                           linear_std: float | None = None) -> None:
    """Kaiming-normal (fan_out) convs with zero bias, BatchNorm weight 1 / bias 0, optional N(0, std) Linear."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity=conv_nonlinearity)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0, linear_std)
            nn.init.zeros_(m.bias)


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def fuse_branches(*branches: nn.Sequential) -> None:
    """Turn plain ``nn.Sequential`` branches built by another class into ``FusedSequential`` in place (same
    children and keys), so their conv -> BN (-> activation) runs are fused."""
    for branch in branches:
        if type(branch) is not nn.Sequential:
            raise TypeError(f"fuse_branches: expected an nn.Sequential, got {type(branch).__name__}")
        branch.__class__ = FusedSequential
