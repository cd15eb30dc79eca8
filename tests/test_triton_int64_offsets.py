"""The Triton kernels' 64-bit-offset variants (INT64) on small problems: the code huge tensors take (more than
2^31 elements, which no CPU test can allocate) computes what the 32-bit variants do. Forced by making every
Triton module's ``needs_int64`` answer True; the GPU-only test_gpu_int64_indexing covers real sizes."""

import sys

import pytest
import torch
from _conv_cases import (  # noqa: F401
    assert_conv_results,
    backend_params,
    make_input,
    poison_outputs,
    reference_grads,
    run_conv,
)
from _group_pointwise_cases import assert_fused_matches_unfused

import cnnkern
from cnnkern.reference.group_pointwise_conv2d import group_pointwise_conv2d as unfused

TRITON = backend_params(device_backends={"triton"})


@pytest.fixture
def int64_offsets(monkeypatch):
    """Every Triton launch from here on takes its INT64 variant (each module that holds needs_int64 patched)."""
    pytest.importorskip("triton")
    # The modules must be imported before they are patched.
    import cnnkern.triton.depthwise_conv2d
    import cnnkern.triton.group_pointwise_conv2d  # noqa: F401

    patched = [m for name, m in list(sys.modules.items())
               if name.startswith("cnnkern.triton") and hasattr(m, "needs_int64")]
    assert len(patched) >= 3  # the package, tiles and the modules importing it by name
    for module in patched:
        monkeypatch.setattr(module, "needs_int64", lambda tensors: True)


@pytest.mark.parametrize("device,backend", TRITON)
@pytest.mark.parametrize("dtype,layout", [(torch.float32, "nchw"), (torch.bfloat16, "channels_last"),
                                          (torch.float16, "strided")], ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (5, 1)], ids=["k3", "k3-s2", "k5"])
def test_depthwise_int64(int64_offsets, poison_outputs, device, backend, dtype, layout, kernel,  # noqa: F811
                         stride):
    # More pixels than one split of the weight gradient's reduction holds (its splits are combined).
    c = 10
    x = make_input((2, c, 9, 8), dtype, device, layout)
    w = (torch.randn(c, 1, kernel, kernel, device=device) / kernel).to(dtype)
    b = torch.randn(c, device=device, dtype=dtype)
    y, g, grads = run_conv(backend, x, w, b, stride, kernel // 2, 1, c)
    assert cnnkern.last_choice().backend == backend
    refs = reference_grads(x, w, b, g, stride, kernel // 2, 1, c, dtype)
    assert_conv_results(y, grads, refs, layout, dtype)


@pytest.mark.parametrize("device,backend", TRITON)
@pytest.mark.parametrize("dtype,kernel", [(torch.bfloat16, 3), (torch.float32, 7)],
                         ids=["bf16-k3", "fp32-k7"])
def test_depthwise_weight_grad_rows_int64(int64_offsets, poison_outputs, device, backend, dtype,  # noqa: F811
                                          kernel):
    """The weight gradient's row walk (channels-last input and gradient), over two bands, two column blocks
    and two splits in the interpreter, deterministic."""
    c = 24
    x = make_input((2, c, 7, 11), dtype, device, "channels_last")
    w = (torch.randn(c, 1, kernel, kernel, device=device) / kernel).to(dtype).requires_grad_()
    prior = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with cnnkern.use_backend(backend):
            y = cnnkern.depthwise_conv2d(x, w, None, 1, kernel // 2)
            g = torch.randn(y.shape, device=device).to(y).contiguous(memory_format=torch.channels_last)
            gw = torch.autograd.grad(y, w, g)[0]
    finally:
        torch.use_deterministic_algorithms(prior)
    ref = torch.nn.grad.conv2d_weight(x.double(), w.shape, g.double(), padding=kernel // 2, groups=c)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(gw.double(), ref, atol=tol * ref.abs().max().item(), rtol=tol)


@pytest.mark.parametrize("device,backend", TRITON)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("shuffle_groups", [None, 3], ids=["plain", "s3"])
def test_group_pointwise_int64(int64_offsets, device, backend, dtype, shuffle_groups):
    """The slab kernels (16-bit channels_last: forward, input and weight gradient) and the per-group GEMM
    kernels (fp32), with the ReLU mask and enough pixels for several weight-gradient splits."""
    x = torch.randn(2, 6, 9, 8, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    w = (torch.randn(9, 2, 1, 1, device=device) / 2 ** 0.5).to(dtype)
    b = torch.randn(9, device=device).to(dtype)

    def fused(x, w, b):
        return cnnkern.group_pointwise_conv2d(x, w, b, 3, shuffle_groups, relu=True)

    def plain(x, w, b):
        return unfused(x, w, b, 3, shuffle_groups, relu=True)

    assert_fused_matches_unfused(backend, fused, plain, (x, w, b), (True, True, True))
    assert cnnkern.last_choice().backend == backend
