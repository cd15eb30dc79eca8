"""Optimizer pieces of ``python -m cnnkern.train``: the LR schedule, weight-decay groups, frozen BatchNorm."""

from __future__ import annotations

import math

from torch import nn


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of --lr before optimizer step ``step`` (0-based): linear warm-up, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv / linear weights only; biases and norm scales/shifts (1-D) get none."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
