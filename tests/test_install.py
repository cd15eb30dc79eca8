"""The install itself: the CUDA extension is built and imports wherever a CUDA toolkit exists (also with no
GPU), and ``python -m cnnkern.info`` reports versions and backends."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from cnnkern._ext import build_info, why_no_extension


def _toolkit_present() -> bool:
    home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    return os.path.exists(os.path.join(home, "bin", "nvcc")) or shutil.which("nvcc") is not None


@pytest.mark.skipif(os.environ.get("CNNKERN_SKIP_CUDA_BUILD") == "1", reason="CNNKERN_SKIP_CUDA_BUILD=1 set")
@pytest.mark.skipif(not _toolkit_present(), reason="no CUDA toolkit on this machine: pure-Python install")
def test_extension_built_and_loads():
    assert why_no_extension() is None, why_no_extension()
    info = build_info()
    assert info["torch_version"] == torch.__version__.split("+")[0]
    assert info["cuda_version"].split(".")[0] == (torch.version.cuda or "").split(".")[0]
    for op in ("conv2d_fwd", "conv2d_bwd_input", "conv2d_bwd_weight"):
        assert hasattr(torch.ops.cnnkern_cuda, op)


def test_info_command_reports_backends():
    out = subprocess.run([sys.executable, "-m", "cnnkern.info"], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    for key in ("torch", "triton", "GPU", "cuda ", "triton ", "reference  available"):
        assert key in out, out
