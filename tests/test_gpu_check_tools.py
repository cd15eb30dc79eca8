"""The GPU check's plumbing, on the CPU: the outcome-log plugin (tests/_outcome_log.py) on a synthetic test
module (serial, under xdist, with pytest-timeout, killed midway), the test summary, the baseline
comparison, saving a baseline and the roofline plot (scripts/gpu_summary.py, scripts/save_baseline.py,
bench/_baseline.py, bench/plot_roofline.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

import _baseline as B
import gpu_summary as S

BASELINE = ROOT / "bench" / "baselines" / "h200-2026-11-30"

SYNTHETIC = '''
import os, time, pytest

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded\\nsecond line")

@pytest.fixture
def bad_teardown():
    yield
    raise RuntimeError("teardown exploded")

def test_pass(): pass
def test_fail(): assert 1 == 2, "one is not two"
def test_skip(): pytest.skip("not here")
@pytest.mark.xfail(reason="known")
def test_xfail(): assert False
def test_setup_error(broken): pass
def test_teardown_error(bad_teardown): pass
@pytest.mark.parametrize("x", [1, 2])
def test_param(x): pass
'''


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _pytest(tmp_path: Path, *args: str, module: str = SYNTHETIC) -> tuple[list[dict], str]:
    (tmp_path / "test_synthetic.py").write_text(module)
    log = tmp_path / "outcomes.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "_outcome_log", "--outcome-log", str(log),
                        "-p", "no:cacheprovider", *args, "test_synthetic.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    return S.read_outcomes(log.read_bytes()), r.stdout + r.stderr


def _outcomes(events: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        if e["event"] == "result":
            out.setdefault(e["nodeid"].split("::")[-1], []).append(e["outcome"])
    return out


EXPECTED = {"test_pass": ["passed"], "test_fail": ["failed"], "test_skip": ["skipped"], "test_xfail": ["xfailed"],
            "test_setup_error": ["error"], "test_teardown_error": ["passed", "error"], "test_param[1]": ["passed"],
            "test_param[2]": ["passed"]}


def test_outcome_log_serial(tmp_path):
    events, out = _pytest(tmp_path)
    assert _outcomes(events) == EXPECTED, out
    assert events[0]["event"] == "session" and events[-1] == {**events[-1], "event": "finish", "exitstatus": 1}
    assert {"event": "collected", "n": 8} == {k: v for k, v in events[1].items() if k != "t"}
    by_id = {e["nodeid"].split("::")[-1]: e for e in events if e["event"] == "result"}
    assert by_id["test_fail"]["message"] == "AssertionError: one is not two"
    assert by_id["test_setup_error"]["message"] == "RuntimeError: fixture exploded"  # first line only
    assert by_id["test_skip"]["message"] == "Skipped: not here"

    s = S.summarize_outcomes(events, "outcomes.jsonl")
    assert s["complete"] and s["collected"] == 8 and s["finished"] == 8 and not s["unfinished"]
    assert s["total"] == {**dict.fromkeys(S.OUTCOMES, 0), "passed": 4, "failed": 1, "error": 2, "skipped": 1,
                          "xfailed": 1}
    assert s["files"] == {"test_synthetic.py": s["total"]}
    assert [f["nodeid"].split("::")[-1] for f in s["failures"]] == ["test_fail", "test_setup_error",
                                                                    "test_teardown_error"]
    text = "\n".join(S.format_tests(s, max_failures=2))
    assert "failures: 2 of 3" in text and "complete (exit status 1)" in text


@pytest.mark.skipif(not _has("xdist"), reason="pytest-xdist not installed")
def test_outcome_log_xdist_controller_writes_all(tmp_path):
    crash = SYNTHETIC + "\ndef test_crash():\n    os._exit(3)\n"
    events, out = _pytest(tmp_path, "-n", "2", module=crash)
    got = _outcomes(events)
    assert got.pop("test_crash") == ["crashed"], out
    assert got == EXPECTED, out
    assert {e.get("worker") for e in events if e["event"] == "result" and e["outcome"] != "crashed"} <= \
        {"gw0", "gw1", "gw2"}
    assert events[-1]["event"] == "finish"


FAKE_CUDA_FAULT = '''
import sys, types

class _Cuda:
    """Stands in for torch.cuda in this worker: a context that a 'kernel fault' has left unusable."""
    dead = False
    def is_available(self): return True
    def is_initialized(self): return True
    def synchronize(self):
        if _Cuda.dead:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

def _install():
    fake = types.ModuleType("torch")
    fake.cuda = _Cuda()
    fake.ones = lambda *a, **k: None
    sys.modules["torch"] = fake

def test_a_fault():
    _install()
    _Cuda.dead = True
    raise RuntimeError("CUDA error: an illegal memory access was encountered")

def test_b_next(): pass
def test_c_later(): pass
'''


@pytest.mark.skipif(not _has("xdist"), reason="pytest-xdist not installed")
def test_dead_cuda_context_restarts_the_worker(tmp_path):
    """One worker, a 'fault' in the first test: the worker exits before the second, xdist replaces it, the
    third runs on the fresh worker; the summary names the fault and the test that did not run."""
    events, out = _pytest(tmp_path, "-n", "1", "-p", "no:randomly", "--restart-on-cuda-error",
                          module=FAKE_CUDA_FAULT)
    s = S.summarize_outcomes(events)
    assert [r["after"].split("::")[-1] for r in s["worker_restarts"]] == ["test_a_fault"], out
    assert _outcomes(events) == {"test_a_fault": ["failed"], "test_b_next": ["crashed"],
                                 "test_c_later": ["passed"]}, out
    assert s["total"]["not_run"] == 1 and s["total"]["crashed"] == 0 and s["total"]["passed"] == 1
    assert [f["nodeid"].split("::")[-1] for f in s["failures"]] == ["test_a_fault"]
    assert "illegal memory access" in "\n".join(S.format_tests(s, 5))


@pytest.mark.skipif(not _has("pytest_timeout"), reason="pytest-timeout not installed")
def test_outcome_log_names_timeouts(tmp_path):
    module = "import time\ndef test_quick(): pass\ndef test_hangs(): time.sleep(30)\n"
    events, out = _pytest(tmp_path, "--timeout=2", module=module)
    assert _outcomes(events) == {"test_quick": ["passed"], "test_hangs": ["timeout"]}, out
    s = S.summarize_outcomes(events)
    assert s["total"]["timeout"] == 1 and s["failures"][0]["outcome"] == "timeout"


def test_killed_run_keeps_every_finished_test(tmp_path):
    """SIGKILL while a test hangs: the log still names the finished tests and the one that was running."""
    module = "import time\n" + "".join(f"def test_{i}(): pass\n" for i in range(5)) + \
        "def test_hangs(): time.sleep(60)\ndef test_never(): pass\n"
    (tmp_path / "test_synthetic.py").write_text(module)
    log = tmp_path / "outcomes.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "_outcome_log", "--outcome-log",
                             str(log), "-p", "no:cacheprovider", "test_synthetic.py"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if log.exists() and "test_hangs" in log.read_text():
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    s = S.summarize_outcomes(S.read_outcomes(log.read_bytes()))
    assert s["total"]["passed"] == 5 and s["finished"] == 5 and not s["complete"]
    assert [n.split("::")[-1] for n in s["unfinished"]] == ["test_hangs"]
    assert "CUT OFF" in S.format_tests(s, 5)[0]


def test_gpu_suite_selects_gpu_marked_and_cuda_named(tmp_path):
    module = '''
import pytest
@pytest.mark.gpu
def test_marked(): pass
def test_cuda_named(): pass
@pytest.mark.parametrize("dev", ["cpu-reference", "cuda-triton"])
def test_param(dev): pass
def test_plain(): pass
'''
    (tmp_path / "conftest.py").write_text("def pytest_configure(config):\n"
                                          "    config.addinivalue_line('markers', 'gpu: needs a GPU')\n")
    events, out = _pytest(tmp_path, "--gpu-suite", module=module)
    assert sorted(_outcomes(events)) == ["test_cuda_named", "test_marked", "test_param[cuda-triton]"], out


def test_bench_ids_of_the_committed_baseline():
    docs = B.load_bench_docs(BASELINE)
    assert sorted(Path(n).stem for n, _ in docs) == sorted(B.bench_id(d) for _, d in docs)
    assert {B.gpu_slug(d["metadata"]["device"]) for _, d in docs} == {"h200"}
    folder, note = B.latest_baseline("h200")
    assert folder is not None and not note


def test_compare_flags_regressions_and_new_failures():
    base = json.loads((BASELINE / "conv2d.json").read_text())
    assert all(r["ratio"] == 1.0 and not r["flag"] for r in B.compare_docs(base, base))
    new = json.loads(json.dumps(base))
    new["records"][1]["ms"] *= 1.5
    new["records"][2]["status"] = "mismatch"
    new["records"][4]["ms"] *= 0.5
    rows = B.compare_docs(new, base)
    flags = [r["flag"] for r in rows]
    assert flags.count("REGRESSION") == 1 and flags.count("NOW MISMATCH") == 1 and flags.count("faster") == 1
    per = {p["provider"]: p for p in B.per_provider(rows)}
    assert per["cudnn"]["regressions"] == 0 and per["cnnkern-cuda"]["regressions"] == 1
    assert "REGRESSION" in "\n".join(B.format_comparison(rows, "x", 0.1, flagged_only=True))


def test_summary_of_the_baseline_prints_every_target():
    lines = S.summarize_run(str(BASELINE), "latest", 0.1, 5, None)
    text = "\n".join(lines)
    targets = sum(len(d.get("targets") or []) for _, d in B.load_bench_docs(BASELINE))
    assert text.count("goal ") == targets
    assert "BELOW TARGET" in text and "PASS" in text and "geomean" in text


def test_save_baseline_from_a_run_folder(tmp_path):
    import save_baseline

    run = tmp_path / "run"
    (run / "bench").mkdir(parents=True)
    for name in ("conv2d.json", "models.json"):
        (run / "bench" / name).write_text((BASELINE / name).read_text())
    (run / "tests-outcomes.jsonl").write_text(
        '{"event": "session", "t": 0}\n{"event": "start", "nodeid": "tests/test_a.py::t", "t": 1}\n'
        '{"event": "result", "nodeid": "tests/test_a.py::t", "outcome": "failed", "when": "call", "t": 2, '
        '"message": "boom"}\n{"event": "start", "nodeid": "tests/test_a.py::u", "t": 3}\n{"ev')  # cut mid-line
    root = tmp_path / "baselines"
    assert save_baseline.main([str(run), "--root", str(root)]) == 0
    folder = root / "h200-2026-11-30"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "conv2d.json", "models.json",
                                                        "tests-summary.json"]
    summary = json.loads((folder / "tests-summary.json").read_text())
    assert summary["total"]["failed"] == 1 and summary["unfinished"] == ["tests/test_a.py::u"]
    assert save_baseline.main([str(run), "--root", str(root)]) == 1  # no silent overwrite


def test_roofline_plot_from_a_baseline_json(tmp_path):
    pytest.importorskip("matplotlib")
    import plot_roofline

    out = tmp_path / "dw.png"
    assert plot_roofline.main([str(BASELINE / "depthwise_conv2d.json"), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "skipped" in plot_roofline.plot(json.loads((BASELINE / "models.json").read_text()), tmp_path / "m.png")
