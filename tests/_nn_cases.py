"""Helpers shared by the nn-unit and model tests: NaN-poisoned op outputs and randomized BatchNorms."""

import pytest
import torch
from _conv_cases import nan_poison


@pytest.fixture
def poison(monkeypatch):
    """Every tensor the conv and shuffle ops allocate starts as NaN: an unwritten element fails the test."""
    nan_poison(monkeypatch)


def randomize_bn(module: torch.nn.Module, seed: int = 1) -> None:
    """Running statistics and affine parameters away from their init (identity) values."""
    g = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            c = bn.num_features
            bn.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
            bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            bn.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            bn.bias.data.copy_(torch.randn(c, generator=g) * 0.5)
