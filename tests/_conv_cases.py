"""Shared helpers for the conv2d tests: which backends run where, input layouts, NaN-poisoned outputs."""

import importlib

import pytest
import torch
import torch.nn.functional as F
from tolerances import assert_matches_reference

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


def nan_poison(monkeypatch):
    """Make every tensor a cnnkern kernel writes start as NaN (they are all allocated by
    ``cnnkern.problem.memory.empty``), so an unwritten element fails the test."""
    memory = importlib.import_module("cnnkern.problem.memory")
    real_empty = memory.empty

    def nan_empty(shape, like, memory_format):
        return real_empty(shape, like, memory_format).fill_(float("nan"))

    monkeypatch.setattr(memory, "empty", nan_empty)


@pytest.fixture
def poison_outputs(monkeypatch):
    nan_poison(monkeypatch)


def run_conv(backend, x, w, b, stride, padding, dilation, groups, grad_out_seed=1):
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    b = b.detach().requires_grad_() if b is not None else None
    with cnnkern.use_backend(backend):
        y = cnnkern.conv2d(x, w, b, stride, padding, dilation, groups)
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(grad_out_seed)).to(y)
        inputs = (x, w) + ((b,) if b is not None else ())
        grads = torch.autograd.grad(y, inputs, g)
    return y, g, grads


def reference_grads(x, w, b, g, stride, padding, dilation, groups, dtype):
    """The same computation through ATen: in fp64 (the truth) and in ``dtype`` (PyTorch's own error)."""
    out = []
    for dt in (torch.float64, dtype):
        xr, wr = x.detach().to(dt).requires_grad_(), w.detach().to(dt).requires_grad_()
        br = b.detach().to(dt).requires_grad_() if b is not None else None
        # fp16 conv is not implemented by every CPU build path; fp32 then rounded stands in for it.
        compute_dt = torch.float32 if (dt == torch.float16 and x.device.type == "cpu") else dt
        xc, wc = xr.to(compute_dt), wr.to(compute_dt)
        bc = br.to(compute_dt) if br is not None else None
        y = F.conv2d(xc, wc, bc, stride, padding, dilation, groups)
        inputs = (xr, wr) + ((br,) if br is not None else ())
        grads = torch.autograd.grad(y, inputs, g.to(compute_dt))
        out.append((y.to(dt), [gr.to(dt) for gr in grads]))
    return out


def run_empty_batch(conv, backend, device, x_shape, w_shape, out_shape, **kwargs):
    """``conv`` on an empty batch: an empty output, an empty grad_input, and weight/bias gradients that are
    exactly zero. Returns the bias, for further checks."""
    x = torch.randn(x_shape, device=device, requires_grad=True)
    w = torch.randn(w_shape, device=device, requires_grad=True)
    b = torch.randn(out_shape[1], device=device, requires_grad=True)
    with cnnkern.use_backend(backend):
        y = conv(x, w, b, **kwargs)
        assert y.shape == out_shape
        y.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))
    return b


def assert_conv_results(y, grads, refs, layout, dtype):
    """Output and gradients against ``reference_grads``; memory formats follow the input's."""
    (y64, g64), (ydt, gdt) = refs
    assert y.dtype == dtype
    expect_cl = layout == "channels_last"
    assert y.is_contiguous(memory_format=torch.channels_last if expect_cl else torch.contiguous_format)
    assert_matches_reference(y, y64, ydt, "output")
    for name, got, want, theirs in zip(("grad_input", "grad_weight", "grad_bias"), grads, g64, gdt):
        assert got.shape == want.shape
        assert_matches_reference(got, want, theirs, name)
    # grad_input follows the input's memory format, as ATen's does.
    if expect_cl:
        assert grads[0].is_contiguous(memory_format=torch.channels_last)
