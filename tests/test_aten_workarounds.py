"""Where ATen itself answers wrongly, cnnkern must not: the CPU bf16 channels_last weight gradient leaves the
taps that only ever see padding holding stale memory (torch 2.11-2.14; cnnkern.reference.conv2d
.weight_grad_upcasts). cnnkern's answer must be exact there on every seed, on the default route."""

from __future__ import annotations

import pytest
import torch

import cnnkern


@pytest.mark.parametrize("groups", [1, 3], ids=["dense", "depthwise"])
def test_bf16_channels_last_weight_grad_taps_in_padding_are_zero(groups):
    for seed in range(20):
        torch.manual_seed(seed)
        x = torch.randn(2, 3, 2, 2, dtype=torch.bfloat16).to(memory_format=torch.channels_last).requires_grad_()
        w = torch.randn(3, 3 // groups, 3, 3, dtype=torch.bfloat16).to(memory_format=torch.channels_last)
        w.requires_grad_()
        # 2x2 input, k3, stride 3, padding 1: a 1x1 output whose window's first row and column are padding.
        y = cnnkern.conv2d(x, w, None, 3, 1, groups=groups)
        y.backward(torch.randn_like(y))
        assert (w.grad[:, :, 0, :] == 0).all() and (w.grad[:, :, :, 0] == 0).all(), f"seed {seed}"
