"""Shared helpers for the channel-shuffle op tests: NaN-poisoned outputs and fused-vs-unfused comparison."""

import pytest
import torch
from _conv_cases import nan_poison
from tolerances import assert_matches_reference

import cnnkern

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["nchw", "channels_last", "strided"]


def dtype_id(d):
    return str(d).replace("torch.", "")


@pytest.fixture
def poison_outputs(monkeypatch):
    """Every tensor the shuffle ops allocate starts as NaN, so an unwritten element fails the test."""
    nan_poison(monkeypatch)


def _leaves(tensors, needs_grad, dtype):
    return [None if t is None else t.detach().to(dtype).requires_grad_(ng) for t, ng in zip(tensors, needs_grad)]


def _run(fn, leaves, grad_out=None, seed=1, grad_layout="output"):
    y = fn(*leaves)
    if grad_out is None:
        grad_out = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y)
        if grad_layout == "output":
            # As in training, where the next layer's gradient arrives in the layout its input had.
            grad_out = torch.empty_like(y).copy_(grad_out)
    diff = [t for t in leaves if t is not None and t.requires_grad]
    return y, grad_out, torch.autograd.grad(y, diff, grad_out) if diff else ()


def assert_fused_matches_unfused(backend, fused, unfused, tensors, needs_grad, grad_layout="output"):
    """``fused`` on ``backend`` against ``unfused`` (plain PyTorch) in fp64 and in the tensors' own dtype.

    ``tensors`` are the arguments of both callables (None allowed); gradients are compared for those marked
    in ``needs_grad``, with an output gradient in the output's layout (``grad_layout="output"``) or
    contiguous (``"contiguous"``). Returns the fused output for layout checks.
    """
    dtype = next(t for t in tensors if t is not None).dtype
    leaves = [None if t is None else t.detach().requires_grad_(ng) for t, ng in zip(tensors, needs_grad)]
    with cnnkern.use_backend(backend):
        y, g, grads = _run(fused, leaves, grad_layout=grad_layout)
    y64, _, grads64 = _run(unfused, _leaves(tensors, needs_grad, torch.float64), g.double())
    # CPU ATen may not run every op in fp16; fp32 rounded to fp16 then stands in for PyTorch's own error.
    compute = torch.float32 if (dtype == torch.float16 and y.device.type == "cpu") else dtype
    ydt, _, gradsdt = _run(unfused, _leaves(tensors, needs_grad, compute), g.to(compute))
    assert y.dtype == dtype
    assert_matches_reference(y, y64, ydt.to(dtype), "output")
    for i, (got, want, theirs) in enumerate(zip(grads, grads64, gradsdt)):
        assert got.dtype == dtype
        assert_matches_reference(got, want, theirs.to(dtype), f"grad {i}")
    return y, grads
