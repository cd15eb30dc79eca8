"""Backend choice: status, automatic choice with reasons, forcing by context manager and environment."""

import pytest
import torch

import cnnkern
from cnnkern.ops import backend as backend_mod


def _problem():
    return torch.randn(1, 3, 6, 6), torch.randn(4, 3, 3, 3)


def test_status_lists_every_backend_with_reason():
    status = cnnkern.backend_status()
    assert set(status) == {"cuda", "triton", "reference"}
    assert status["reference"] is None
    for name, why in status.items():
        assert why is None or (isinstance(why, str) and len(why) > 10), (name, why)
    assert cnnkern.available_backends() == [n for n, why in status.items() if why is None]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the reasons given on a machine without a GPU")
def test_cuda_unavailable_reason_without_gpu():
    assert "GPU" in cnnkern.backend_status()["cuda"] or "extension" in cnnkern.backend_status()["cuda"]


def test_auto_choice_on_cpu_is_reference_and_reports_rejections():
    x, w = _problem()
    report = cnnkern.explain_conv2d(x, w)
    assert set(report) == {"conv2d_fwd", "conv2d_bwd_input", "conv2d_bwd_weight"}
    for choice in report.values():
        assert choice.backend == "reference" and not choice.forced
    text = str(report)
    assert "using 'reference'" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU preference list matters only without a GPU")
def test_cuda_backend_rejects_cpu_tensors_with_reason():
    x, w = _problem()
    with cnnkern.use_backend("cuda"):
        choice = cnnkern.explain_conv2d(x, w)["conv2d_fwd"]
        assert choice.backend is None and choice.forced
        assert "cuda" in choice.rejected
        with pytest.raises(RuntimeError, match=r"backend 'cuda' was forced but cannot run conv2d_fwd"):
            cnnkern.conv2d(x, w)


def test_use_backend_forces_and_nests():
    x, w = _problem()
    with cnnkern.use_backend("reference"):
        cnnkern.conv2d(x, w)
        assert cnnkern.last_choice().backend == "reference" and cnnkern.last_choice().forced
        with cnnkern.use_backend("auto"):
            cnnkern.conv2d(x, w)
            assert not cnnkern.last_choice().forced
        cnnkern.conv2d(x, w)
        assert cnnkern.last_choice().forced
    assert backend_mod.forced_backend() is None


def test_env_var_forces_backend(monkeypatch):
    x, w = _problem()
    monkeypatch.setenv("CNNKERN_BACKEND", "reference")
    cnnkern.conv2d(x, w)
    assert cnnkern.last_choice().forced
    monkeypatch.setenv("CNNKERN_BACKEND", "nonsense")
    with pytest.raises(ValueError, match=r"unknown cnnkern backend 'nonsense'"):
        cnnkern.conv2d(x, w)


def test_unknown_backend_name():
    with pytest.raises(ValueError, match=r"unknown cnnkern backend 'cudnn'"), cnnkern.use_backend("cudnn"):
        pass


@pytest.mark.skipif(cnnkern.backend_status()["triton"] is not None, reason="triton backend unavailable here")
def test_forced_triton_runs_triton():
    x, w = _problem()
    with cnnkern.use_backend("triton"):
        cnnkern.conv2d(x, w)
        assert cnnkern.last_choice().backend == "triton"


def test_fallback_reports_reason_for_unsupported_dtype():
    # fp64 on CUDA is not a CUDA-kernel dtype: the chooser must fall back and say why.
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: on the CPU the reference backend is first anyway")
    x = torch.randn(1, 3, 6, 6, device="cuda", dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, device="cuda", dtype=torch.float64)
    choice = cnnkern.explain_conv2d(x, w)["conv2d_fwd"]
    assert choice.backend in ("triton", "reference")
    assert "cuda" in choice.rejected
    if cnnkern.backend_status()["cuda"] is None:
        assert "fp16, bf16, fp32" in choice.rejected["cuda"]


def test_forced_backend_reaches_other_threads():
    """Autograd runs CUDA backward passes on worker threads; a forced backend must apply there too."""
    import threading

    seen = []
    with cnnkern.use_backend("reference"):
        t = threading.Thread(target=lambda: seen.append(backend_mod.forced_backend()))
        t.start()
        t.join()
    assert seen == ["reference"]
