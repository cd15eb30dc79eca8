"""The Python mirror of the sm_90a wgmma forward's routing gates (cnnkern.cuda.conv2d.sm90_wgmma_why_not,
mirroring csrc/cuda/conv2d_fwd_sm90.cu): off by default, then each problem condition in the C++ order. Only
shapes, strides, dtypes and pointers matter, so CPU tensors stand in for CUDA ones (no GPU needed); the last
gate (build + device) needs the extension and is only checked to give a reason when it cannot pass here.
The same for the stride-1 input gradient on that kernel (cnnkern.cuda.conv2d.sm90_dgrad_why_not, mirroring
csrc/cuda/conv2d_dgrad_as_fwd.h and dgrad_on_sm90_fwd in csrc/cuda/conv2d.cpp), and for the sm_90a weight
gradient (cnnkern.cuda.conv2d.sm90_wgrad_why_not, mirroring csrc/cuda/conv2d_wgrad_sm90.cu)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from cnnkern.cuda.conv2d import sm90_dgrad_why_not, sm90_wgmma_why_not, sm90_wgrad_why_not
from cnnkern.problem.conv2d import conv2d_spec


def _cl(*shape, dtype=torch.float16):
    return torch.zeros(*shape, dtype=dtype).contiguous(memory_format=torch.channels_last)


def test_off_by_default(monkeypatch):
    monkeypatch.delenv("CNNKERN_SM90_WGMMA", raising=False)
    why = sm90_wgmma_why_not(_cl(2, 64, 8, 8), _cl(64, 64, 3, 3), 1)
    assert why is not None and "CNNKERN_SM90_WGMMA=1" in why
    monkeypatch.setenv("CNNKERN_SM90_WGMMA", "0")
    assert "CNNKERN_SM90_WGMMA=1" in sm90_wgmma_why_not(_cl(2, 64, 8, 8), _cl(64, 64, 3, 3), 1)


@pytest.mark.parametrize("x, w, groups, expect", [
    (_cl(2, 64, 8, 8, dtype=torch.float32), _cl(64, 64, 3, 3, dtype=torch.float32), 1, "fp32"),
    (_cl(2, 128, 8, 8), _cl(128, 64, 3, 3), 2, "grouped"),
    (torch.zeros(2, 64, 8, 8, dtype=torch.float16), _cl(64, 64, 3, 3), 1, "channels-last"),
    (_cl(2, 96, 8, 8), _cl(64, 96, 3, 3), 1, "multiple of 64"),
    (_cl(2, 64, 8, 8), _cl(60, 64, 1, 1), 1, "multiple of 8"),
])
def test_problem_gates(monkeypatch, x, w, groups, expect):
    # Every epilogue (plain, act, statistics) has the same gates since 2026-12-02.
    monkeypatch.setenv("CNNKERN_SM90_WGMMA", "1")
    why = sm90_wgmma_why_not(x, w, groups)
    assert why is not None and expect in why, why


def test_fitting_problem_reaches_the_build_and_device_gate(monkeypatch):
    # A ResNet-50 3x3 layer fits; without an sm_90a build on an sm_90 GPU the remaining reason is the
    # build / device one (or the missing extension), never a problem condition.
    monkeypatch.setenv("CNNKERN_SM90_WGMMA", "1")
    for w in (_cl(128, 128, 3, 3), torch.zeros(128, 128, 3, 3, dtype=torch.bfloat16)):  # NCHW w is copied
        why = sm90_wgmma_why_not(_cl(2, 128, 8, 8, dtype=w.dtype), w, 1)
        if why is not None:
            assert any(s in why for s in ("build", "sm_90", "device", "cnnkern._C", "CUDA")), why


def _dgrad(c_in, c_out, hw, k, stride=1, padding=1, dilation=1, groups=1, dtype=torch.float16, grad_out_cl=True):
    """(grad_out, w, spec, grad_in's (H, W)) of the input gradient of a conv2d with these parameters."""
    w = _cl(c_out, c_in // groups, k, k, dtype=dtype)
    spec = conv2d_spec((2, c_in, hw, hw), w.shape, None, stride, padding, dilation, groups)
    grad_out = torch.zeros(2, c_out, *spec.out_hw, dtype=dtype)
    return (grad_out.contiguous(memory_format=torch.channels_last) if grad_out_cl else grad_out), w, spec, (hw, hw)


def test_dgrad_off_by_default(monkeypatch):
    monkeypatch.delenv("CNNKERN_SM90_WGMMA", raising=False)
    why = sm90_dgrad_why_not(*_dgrad(128, 128, 8, 3))
    assert why is not None and "CNNKERN_SM90_WGMMA=1" in why


@pytest.mark.parametrize("problem, expect", [
    (_dgrad(64, 64, 8, 3, dtype=torch.float32), "fp32"),
    (_dgrad(128, 128, 8, 3, groups=2), "grouped"),
    # the forward's own gates on (grad_out, w'): its C_in is the op's C_out, its C_out the op's C_in
    (_dgrad(64, 64, 8, 3, grad_out_cl=False), "channels-last"),
    (_dgrad(64, 96, 8, 3), "multiple of 64"),
    (_dgrad(60, 64, 8, 3), "multiple of 8"),
])
def test_dgrad_gates(monkeypatch, problem, expect):
    monkeypatch.setenv("CNNKERN_SM90_WGMMA", "1")
    why = sm90_dgrad_why_not(*problem)
    assert why is not None and expect in why, why


@pytest.mark.parametrize("problem", [
    _dgrad(64, 64, 8, 3), _dgrad(256, 64, 8, 1, padding=0), _dgrad(72, 128, 8, 3, padding=2, dilation=2),
    _dgrad(64, 64, 8, 4, padding="same"),  # even kernel: the extra pixel at the bottom/right, 2 <= 3
    _dgrad(64, 64, 8, 3, padding="full"), _dgrad(64, 64, 8, 3, padding="valid"),
    # since the stride phases (2026-12-02): strided, padding past the taps' span (the forward skips grad_out
    # rows), bottom padding past it (the forward does not read the last rows)
    _dgrad(64, 64, 8, 3, stride=2), _dgrad(256, 512, 8, 1, stride=2, padding=0), _dgrad(64, 64, 9, 4, stride=2),
    _dgrad(64, 64, 8, 3, stride=3, padding=0), _dgrad(64, 64, 8, 1, padding=1), _dgrad(64, 64, 8, 3, padding=(1, 3, 1, 1)),
])
def test_dgrad_fitting_problem_reaches_the_build_and_device_gate(monkeypatch, problem):
    monkeypatch.setenv("CNNKERN_SM90_WGMMA", "1")
    why = sm90_dgrad_why_not(*problem)
    if why is not None:
        assert any(s in why for s in ("build", "sm_90", "device", "cnnkern._C", "CUDA")), why


def test_explain_names_the_dgrad_and_wgrad_variants(monkeypatch):
    # explain_conv2d's notes for a plan whose kernels chose the cuda backend (no GPU needed: only the choices
    # are replaced; the notes read shapes and layouts).
    import dataclasses
    import importlib

    ops_conv2d = importlib.import_module("cnnkern.ops.conv2d")  # the module (cnnkern.ops.conv2d is a function)
    real = ops_conv2d.plan_for

    def cuda_plan(*args, **kwargs):
        plan = real(*args, **kwargs)
        fake = type("Plan", (), {})()
        fake.__dict__.update({k: getattr(plan, k) for k in ("family", "spec", "out_shape", "out_format")})
        fake.choices = {k: dataclasses.replace(c, backend="cuda") for k, c in plan.choices.items()}
        return fake

    monkeypatch.setattr(ops_conv2d, "plan_for", cuda_plan)
    monkeypatch.setenv("CNNKERN_SM90_WGMMA", "1")
    x = _cl(2, 64, 8, 8)
    notes = "\n".join(ops_conv2d.explain_conv2d(x, _cl(64, 64, 3, 3), padding=1).notes)
    assert "conv2d_bwd_input (cuda) variant:" in notes, notes
    notes = "\n".join(ops_conv2d.explain_conv2d(x, _cl(64, 64, 3, 3), stride=2, padding=1).notes)
    line = next(n for n in notes.splitlines() if "conv2d_bwd_input (cuda) variant:" in n)
    # strided: no longer refused for the stride (4 phases on an sm_90 GPU, else the build / device reason)
    assert "4 stride phases" in line or any(r in line for r in ("build", "sm_90", "device", "cnnkern._C")), line
    assert "conv2d_bwd_weight (cuda) variant:" in notes, notes
    notes = "\n".join(ops_conv2d.explain_conv2d(_cl(2, 96, 8, 8), _cl(64, 96, 3, 3), padding=1).notes)
    assert "not sm_90a wgmma: C_in is not a multiple of 64" in notes, notes


def _slice(n, c, hw, lead=8, dtype=torch.float16):
    """Channels lead..lead+c of a channels-last (c + lead)-channel buffer: a strided view."""
    return _cl(n, c + lead, hw, hw, dtype=dtype)[:, lead:]


def test_wgrad_off_by_default(monkeypatch):
    monkeypatch.delenv("CNNKERN_SM90_WGMMA", raising=False)
    why = sm90_wgrad_why_not(_cl(2, 64, 8, 8), _cl(2, 64, 8, 8), 1)
    assert why is not None and "CNNKERN_SM90_WGMMA=1" in why


@pytest.mark.parametrize("grad_out, x, groups, expect", [
    (_cl(2, 64, 8, 8, dtype=torch.float32), _cl(2, 64, 8, 8, dtype=torch.float32), 1, "fp32"),
    (_cl(2, 64, 8, 8), _cl(2, 128, 8, 8), 2, "grouped"),
    (torch.zeros(2, 64, 8, 8, dtype=torch.float16), _cl(2, 64, 8, 8), 1, "grad_out"),   # NCHW
    (_cl(2, 60, 8, 8), _cl(2, 64, 8, 8), 1, "grad_out"),    # pixel stride of 120 bytes: no TMA row pitch
    (_slice(2, 64, 8, lead=4), _cl(2, 64, 8, 8), 1, "grad_out"),  # 8-byte aligned slice
    (_cl(2, 64, 8, 8), torch.zeros(2, 64, 8, 8, dtype=torch.float16), 1, "x is not channels-last"),
    (_cl(2, 64, 8, 8), _slice(2, 64, 8, lead=4), 1, "x is not channels-last"),
    (_cl(2, 64, 8, 8), _cl(2, 96, 8, 8), 1, "multiple of 64"),
])
def test_wgrad_gates(monkeypatch, grad_out, x, groups, expect):
    monkeypatch.setenv("CNNKERN_SM90_WGMMA", "1")
    why = sm90_wgrad_why_not(grad_out, x, groups)
    assert why is not None and expect in why, why


@pytest.mark.parametrize("grad_out, x", [
    (_cl(2, 64, 8, 8), _cl(2, 64, 8, 8)), (_cl(2, 8, 4, 4), _cl(2, 128, 8, 8)),
    (_slice(2, 64, 8), _slice(2, 64, 8)),  # aligned channel slices of wider buffers
    (_cl(2, 200, 7, 7, dtype=torch.bfloat16), _cl(2, 256, 7, 7, dtype=torch.bfloat16)),
])
def test_wgrad_fitting_problem_reaches_the_build_and_device_gate(monkeypatch, grad_out, x):
    monkeypatch.setenv("CNNKERN_SM90_WGMMA", "1")
    why = sm90_wgrad_why_not(grad_out, x, 1)
    if why is not None:
        assert any(s in why for s in ("build", "sm_90", "device", "cnnkern._C", "CUDA")), why


def test_build_gate_follows_the_arch_list():
    """The C++ gate's build condition (CNNKERN_HAS_SM90A, which setup.py passes to both compilers when the arch
    list holds 9.0a) agrees with the arch list the extension reports. The switch is read once per process, so
    the gate is asked in a child process with it on; without a GPU its answer is then the device query's."""
    from cnnkern._ext import build_info, extension

    ext = extension()
    if ext is None or not hasattr(ext, "sm90_wgmma_gate"):
        pytest.skip("no CUDA extension in this install")
    code = "from cnnkern._ext import extension; print(extension().sm90_wgmma_gate(0))"
    env = dict(os.environ, CNNKERN_SM90_WGMMA="1")
    answer = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            check=True).stdout.strip()
    built_90a = "9.0a" in build_info()["archs"].split(";")
    assert ("no sm_90a code" in answer) != built_90a, (build_info()["archs"], answer)
