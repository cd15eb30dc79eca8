"""Helpers shared by the nn-unit and model tests: NaN-poisoned op outputs and randomized BatchNorms."""

import importlib

import pytest
import torch

from cnnkern.problem import channel_map as _group_pointwise_args


@pytest.fixture
def poison(monkeypatch):
    """Every tensor the conv and shuffle ops allocate starts as NaN: an unwritten element fails the test."""
    conv_mod = importlib.import_module("cnnkern.ops.conv2d")
    real_empty, real_alloc = conv_mod._empty, _group_pointwise_args.allocate
    monkeypatch.setattr(conv_mod, "_empty", lambda *a: real_empty(*a).fill_(float("nan")))
    monkeypatch.setattr(_group_pointwise_args, "allocate", lambda *a: real_alloc(*a).fill_(float("nan")))


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
