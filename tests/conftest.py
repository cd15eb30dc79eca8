"""Test setup: without a GPU the Triton kernels run under the interpreter on the CPU.

TRITON_INTERPRET must be set before triton is imported, hence here, before any test module imports it.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import cnnkern

GPU_REASON = "needs a CUDA GPU (none visible on this machine)"


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped with a reason where none is visible")
    config.addinivalue_line("markers", "slow: long-running test")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=GPU_REASON)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_and_auto_backend(monkeypatch):
    torch.manual_seed(0)
    # A developer's CNNKERN_BACKEND must not leak into tests that rely on the automatic choice.
    monkeypatch.delenv("CNNKERN_BACKEND", raising=False)
    yield


@pytest.fixture(autouse=True)
def _ieee_fp32():
    # The tolerance table (tests/tolerances.py) assumes IEEE fp32, for our kernels and for PyTorch's own fp32
    # results alike (the reference backend, "PyTorch's own error", the F.conv2d expectations). On Ampere and
    # newer GPUs cuDNN runs fp32 convolutions in TF32 by default (torch.backends.cudnn.allow_tf32 is True),
    # ~1e-3 off an fp64 reference where the table allows 2e-5, so TF32 is off in every test (cuBLAS too, in
    # case the environment turned it on). The legacy flags work on every torch we claim, and inductor reads them.
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    yield
    cudnn.allow_tf32, matmul.allow_tf32 = saved


@pytest.fixture(scope="session")
def backend_status():
    return cnnkern.backend_status()
