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


@pytest.fixture(scope="session")
def backend_status():
    return cnnkern.backend_status()
