"""The measured backend choice (cnnkern.ops.autotune): the fastest accepting backend wins, ATen included.

On the CPU nothing is measured in real use; here the CPU is opted in together with a fake timer that
gives each backend a chosen time, so the decision logic, the disk cache, the switch and the report are
tested without a GPU (the Triton interpreter is the second accepting backend).
"""

import json

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from cnnkern.ops import autotune, backend

pytestmark = pytest.mark.skipif(cnnkern.backend_status()["triton"] is not None,
                                reason="needs a second backend (the Triton interpreter) to choose from")


@pytest.fixture
def tuning(monkeypatch, tmp_path):
    """CPU opted in, a fake timer driven by ``speeds`` (backend -> ms), an empty cache directory."""
    speeds = {"reference": 1.0, "triton": 2.0}
    calls = []

    def fake_time(fn, device):
        fn()  # the candidate must really run
        name = _current[0]
        calls.append(name)
        return speeds[name]

    _current = [None]
    real_decide = autotune.decide

    def tracking_decide(signature, device, candidates):
        wrapped = {}
        for name, fn in candidates.items():
            def run(fn=fn, name=name):
                _current[0] = name
                return fn()
            wrapped[name] = run
        return real_decide(signature, device, wrapped)

    monkeypatch.setattr(autotune, "_DEVICE_TYPES", {"cpu", "cuda"})
    monkeypatch.setattr(autotune, "time_ms", fake_time)
    monkeypatch.setattr(autotune, "decide", tracking_decide)
    monkeypatch.setenv("CNNKERN_CACHE_DIR", str(tmp_path))
    autotune.forget()
    autotune.set_enabled(True)
    yield speeds, calls, tmp_path
    autotune.set_enabled(None)
    autotune.forget()
    backend.clear_plans()


def _problem():
    return torch.randn(1, 3, 6, 5), torch.randn(4, 3, 3, 3)


def test_the_faster_backend_wins_and_aten_can_win(tuning):
    speeds, _calls, _ = tuning
    x, w = _problem()
    report = cnnkern.explain_conv2d(x, w, padding=1)
    assert {c.backend for c in report.values()} == {"reference"}
    assert "measured: reference 1.000 ms, triton 2.000 ms" in str(report)
    speeds.update(reference=3.0, triton=0.5)
    backend.clear_plans()
    autotune.forget()
    (tuning[2] / "autotune-v1.json").unlink()
    y = cnnkern.conv2d(x, w, padding=1)
    assert cnnkern.last_choice().backend == "triton" and not cnnkern.last_choice().forced
    torch.testing.assert_close(y, F.conv2d(x, w, padding=1), atol=1e-5, rtol=1e-5)


def test_decisions_persist_on_disk_and_are_reused(tuning):
    speeds, calls, tmp_path = tuning
    speeds.update(reference=5.0, triton=1.0)
    x, w = _problem()
    cnnkern.conv2d(x, w, padding=1)
    measured = len(calls)
    assert measured >= 2
    saved = json.loads((tmp_path / "autotune-v1.json").read_text())
    assert any("conv2d_fwd" in key and entry["best"] == "triton" for key, entry in saved.items())
    backend.clear_plans()
    autotune.forget()  # a new process: only the disk copy remains
    cnnkern.conv2d(x, w, padding=1)
    assert len(calls) == measured  # nothing measured again
    assert cnnkern.last_choice().backend == "triton"


def test_switch_off_and_forced_backends_do_not_measure(tuning, monkeypatch):
    _speeds, calls, _ = tuning
    x, w = _problem()
    autotune.set_enabled(False)
    cnnkern.conv2d(x, w)
    with autotune.autotuning(True), cnnkern.use_backend("reference"):
        cnnkern.conv2d(x, w)
    assert calls == []
    monkeypatch.setenv("CNNKERN_AUTOTUNE", "0")
    autotune.set_enabled(None)
    cnnkern.conv2d(x, w, padding=2)
    assert calls == []


def test_a_failing_candidate_loses(tuning, monkeypatch):
    speeds, _calls, _ = tuning
    speeds.update(reference=5.0, triton=1.0)
    from cnnkern.ops.registry import BACKENDS

    module = BACKENDS["triton"].module("conv2d")
    monkeypatch.setitem(module.KERNELS, "conv2d_fwd", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    x, w = _problem()
    report = cnnkern.explain_conv2d(x, w, padding=(0, 1))
    assert report["conv2d_fwd"].backend == "reference"
    assert "triton failed" in str(report["conv2d_fwd"])
