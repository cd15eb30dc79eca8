"""The Python mirror of the sm_90a wgmma forward's routing gates (cnnkern.cuda.conv2d.sm90_wgmma_why_not,
mirroring csrc/cuda/conv2d_fwd_sm90.cu): off by default, then each problem condition in the C++ order. Only
shapes, strides, dtypes and pointers matter, so CPU tensors stand in for CUDA ones (no GPU needed); the last
gate (build + device) needs the extension and is only checked to give a reason when it cannot pass here."""
from __future__ import annotations

import pytest
import torch

from cnnkern.cuda.conv2d import sm90_wgmma_why_not


def _cl(*shape, dtype=torch.float16):
    return torch.zeros(*shape, dtype=dtype).contiguous(memory_format=torch.channels_last)


def test_off_by_default(monkeypatch):
    monkeypatch.delenv("CNNKERN_SM90_WGMMA", raising=False)
    why = sm90_wgmma_why_not(_cl(2, 64, 8, 8), _cl(64, 64, 3, 3), 1)
    assert why is not None and "CNNKERN_SM90_WGMMA=1" in why
    monkeypatch.setenv("CNNKERN_SM90_WGMMA", "0")
    assert "CNNKERN_SM90_WGMMA=1" in sm90_wgmma_why_not(_cl(2, 64, 8, 8), _cl(64, 64, 3, 3), 1)


@pytest.mark.parametrize("x, w, groups, epilogue, expect", [
    (_cl(2, 64, 8, 8, dtype=torch.float32), _cl(64, 64, 3, 3, dtype=torch.float32), 1, "plain", "fp32"),
    (_cl(2, 64, 8, 8), _cl(64, 64, 3, 3), 1, "stats", "statistics"),
    (_cl(2, 128, 8, 8), _cl(128, 64, 3, 3), 2, "plain", "grouped"),
    (torch.zeros(2, 64, 8, 8, dtype=torch.float16), _cl(64, 64, 3, 3), 1, "plain", "channels-last"),
    (_cl(2, 96, 8, 8), _cl(64, 96, 3, 3), 1, "plain", "multiple of 64"),
    (_cl(2, 64, 8, 8), _cl(60, 64, 1, 1), 1, "act", "multiple of 8"),
])
def test_problem_gates(monkeypatch, x, w, groups, epilogue, expect):
    monkeypatch.setenv("CNNKERN_SM90_WGMMA", "1")
    why = sm90_wgmma_why_not(x, w, groups, epilogue)
    assert why is not None and expect in why, why


def test_fitting_problem_reaches_the_build_and_device_gate(monkeypatch):
    # A ResNet-50 3x3 layer fits; without an sm_90a build on an sm_90 GPU the remaining reason is the
    # build / device one (or the missing extension), never a problem condition.
    monkeypatch.setenv("CNNKERN_SM90_WGMMA", "1")
    for w in (_cl(128, 128, 3, 3), torch.zeros(128, 128, 3, 3, dtype=torch.bfloat16)):  # NCHW w is copied
        why = sm90_wgmma_why_not(_cl(2, 128, 8, 8, dtype=w.dtype), w, 1)
        if why is not None:
            assert any(s in why for s in ("build", "sm_90", "device", "cnnkern._C", "CUDA")), why
