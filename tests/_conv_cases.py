"""Shared helpers for the conv2d tests: which backends run where, input layouts, NaN-poisoned outputs."""

import importlib

import pytest
import torch

import cnnkern

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def backend_params(device_backends=None):
    """(device, backend) pairs: every backend on every device it can run on, GPU ones marked ``gpu``."""
    status = cnnkern.backend_status()
    params = []
    for backend in ("reference", "triton"):
        why = status[backend]
        marks = [] if why is None else [pytest.mark.skip(reason=f"{backend} backend unavailable: {why}")]
        params.append(pytest.param("cpu", backend, id=f"cpu-{backend}", marks=marks))
    for backend in ("cuda", "triton", "reference"):
        why = status[backend]
        marks = [pytest.mark.gpu]
        if torch.cuda.is_available() and why is not None:
            marks.append(pytest.mark.skip(reason=f"{backend} backend unavailable: {why}"))
        params.append(pytest.param("cuda", backend, id=f"cuda-{backend}", marks=marks))
    if device_backends is not None:
        params = [p for p in params if (p.values[0], p.values[1]) in device_backends or
                  p.values[1] in device_backends]
    return params


def make_input(shape, dtype, device, layout):
    """A random input in one of three layouts: 'nchw', 'channels_last', or 'strided' (a sliced view)."""
    if layout == "strided":
        n, c, h, w = shape
        big = torch.randn(n, c + 1, h, 2 * w, dtype=dtype, device=device)
        x = big[:, 1:, :, ::2]
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
        return x
    x = torch.randn(shape, dtype=dtype, device=device)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    return x


@pytest.fixture
def poison_outputs(monkeypatch):
    """Make every tensor the conv ops allocate start as NaN, so an unwritten element fails the test."""
    # `cnnkern.ops.conv2d` the attribute is the function; the module is reached through sys.modules.
    conv_mod = importlib.import_module("cnnkern.ops.conv2d")
    real_empty = conv_mod._empty

    def nan_empty(shape, like, memory_format):
        return real_empty(shape, like, memory_format).fill_(float("nan"))

    monkeypatch.setattr(conv_mod, "_empty", nan_empty)
