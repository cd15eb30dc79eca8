"""pytest plugin: one JSON line per test outcome, written and flushed the moment pytest learns it.

Why: a GPU slot is short and its command is killed at a hard cap; pytest prints failing names only in its
final summary, so a run cut off by the cap used to report "343 failed" and name none of them. With this
plugin every finished test is already on disk (and every started one, so the tests that were running when
the cap hit are named too). ``scripts/gpu_summary.py`` turns the file into counts per test file and a
list of failures (tests-summary.json).

Use (the module lives in tests/, which is not a package, so put tests/ on the path)::

    PYTHONPATH=tests python -m pytest -p _outcome_log --outcome-log out.jsonl [--gpu-suite] \
        [-n 15 --restart-on-cuda-error] tests

Lines (``t`` = seconds since the session started):

    {"event": "session", ...}                          once, first: argv, workers, per-test timeout
    {"event": "collected", "n": 1600}                  tests selected to run (per xdist worker: the same n)
    {"event": "start", "nodeid": ..., "t": ...}        a test began
    {"event": "result", "nodeid": ..., "outcome": ..., "when": ..., "duration": ..., "message": ..., "t": ...}
    {"event": "worker_restart", "worker": ..., "after": ..., "not_run": ..., "message": ...}
    {"event": "finish", "exitstatus": 0, "t": ...}     only if pytest ended by itself

``outcome`` is passed, failed, skipped, error (setup/teardown or collection failed), timeout
(pytest-timeout fired), crashed (an xdist worker died while running the test), xfailed or xpassed.

With pytest-xdist the hooks used here run in the controller, which receives every worker's reports, so the
controller writes the log (workers load the plugin too, through ``-p``, and write only worker_restart).

``--gpu-suite`` keeps only the tests that run on a GPU: those marked ``gpu`` (this includes every
``cuda-*`` parametrization of tests/_conv_cases.backend_params) and those with ``cuda`` in their name or
parameter id (``-m gpu`` or ``-k cuda``, which pytest cannot express in one flag). Tests that use CUDA only
inside their body, without marker or name, are not selected.

``--restart-on-cuda-error`` (xdist workers only): a kernel fault such as an illegal memory access leaves
the process's CUDA context unusable, so every later test on that worker would fail with the same error and
bury the one test that caused it. After a failed test the worker checks its context (a synchronize and a
tiny launch); when that raises, it logs a worker_restart line and exits before starting the next test, and
xdist starts a fresh worker. xdist reports that next test as crashed although it never ran: the summary
names it as not run.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest

# How pytest-timeout's signal method words its failure: "Failed: Timeout (>90.0s) from pytest-timeout."
# (2.x) or "Failed: Timeout >90.0s" (1.x).
TIMEOUT_RE = re.compile(r"\bTimeout \(?>\d")
RESTART_EXIT_CODE = 75


def pytest_addoption(parser):
    group = parser.getgroup("outcome-log", "one line per test outcome (tests/_outcome_log.py)")
    group.addoption("--outcome-log", metavar="PATH", default=None,
                    help="write one JSON line per test start and outcome to PATH, flushed as it happens")
    group.addoption("--gpu-suite", action="store_true", default=False,
                    help="select only the tests that run on a GPU: marked 'gpu' or with 'cuda' in the name")
    group.addoption("--restart-on-cuda-error", action="store_true", default=False,
                    help="xdist workers: exit (and get replaced) when a failed test left the CUDA context "
                         "unusable")


def pytest_configure(config):
    path = config.getoption("outcome_log")
    worker = getattr(config, "workerinput", None)  # set in xdist workers only
    if path and worker is None:
        config.pluginmanager.register(OutcomeLog(path, config), "outcome-log-writer")
    if worker is not None and config.getoption("restart_on_cuda_error"):
        config.pluginmanager.register(CudaGuard(path, worker.get("workerid")), "outcome-log-cuda-guard")


def runs_on_gpu(item) -> bool:
    return item.get_closest_marker("gpu") is not None or "cuda" in item.name.lower()


def pytest_collection_modifyitems(config, items):
    if not config.getoption("gpu_suite"):
        return
    keep = [it for it in items if runs_on_gpu(it)]
    dropped = [it for it in items if not runs_on_gpu(it)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def first_line(text: str | None, limit: int = 300) -> str:
    """The first non-empty line (failure messages can be pages long; the summary wants one line), without
    pytest's "E   " error-line prefix."""
    for line in (text or "").splitlines():
        line = re.sub(r"^E\s{2,}", "", line.strip())
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


def failure_message(report) -> str:
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, lineno, reason)
        return first_line(str(longrepr[2]))
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return first_line(crash.message)
    text = str(longrepr)
    # No crash entry (e.g. an xdist crash report or a collection error): the last line says what happened.
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return first_line(lines[-1] if lines else text)


def classify(report) -> str | None:
    """The outcome a report stands for, or None when it adds nothing (a passed setup or teardown)."""
    when = report.when
    xfail = hasattr(report, "wasxfail")
    if when == "call":
        if report.passed:
            return "xpassed" if xfail else "passed"
        if report.skipped:
            return "xfailed" if xfail else "skipped"
        return "timeout" if TIMEOUT_RE.search(failure_message(report)) else "failed"
    if when in ("setup", "teardown"):
        if report.failed:
            return "timeout" if TIMEOUT_RE.search(failure_message(report)) else "error"
        if report.skipped and when == "setup":
            return "xfailed" if xfail else "skipped"
        return None
    # xdist reports a worker that died mid-test with when="???"
    return "crashed" if report.failed else None


def worker_of(report) -> str | None:
    """The xdist worker a report came from (gw0, gw1, ...), if any."""
    wid = getattr(report, "worker_id", None)
    if wid:
        return wid
    return getattr(getattr(getattr(report, "node", None), "gateway", None), "id", None)


def append_line(path: str, rec: dict) -> None:
    """One line appended with O_APPEND: the controller and the workers can share the file."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")


class OutcomeLog:
    def __init__(self, path: str, config):
        self.path = path
        self.config = config
        self.t0 = time.monotonic()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        open(path, "w").close()  # truncate, then append: workers append worker_restart lines to it
        self.fh = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - open for the session

    def write(self, **rec) -> None:
        rec["t"] = round(time.monotonic() - self.t0, 3)
        self.fh.write(json.dumps(rec) + "\n")
        self.fh.flush()  # line buffering already flushes; explicit so a kill right after loses nothing

    def pytest_sessionstart(self, session):
        opt = self.config.option
        self.write(event="session", time=time.strftime("%Y-%m-%dT%H:%M:%S%z"), argv=sys.argv[1:],
                   cwd=os.getcwd(), workers=getattr(opt, "numprocesses", None),
                   per_test_timeout=getattr(opt, "timeout", None), gpu_suite=bool(opt.gpu_suite))

    def pytest_collection_finish(self, session):
        if not self.config.pluginmanager.hasplugin("dsession"):  # without xdist the controller collects
            self.write(event="collected", n=len(session.items))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        self.write(event="collected", n=len(ids), worker=getattr(node.gateway, "id", None))

    def pytest_collectreport(self, report):
        if report.failed:
            self.write(event="result", nodeid=report.nodeid, outcome="error", when="collect", duration=None,
                       message=failure_message(report))

    def pytest_runtest_logstart(self, nodeid, location):
        self.write(event="start", nodeid=nodeid)

    def pytest_runtest_logreport(self, report):
        outcome = classify(report)
        if outcome is None:
            return
        rec = {"event": "result", "nodeid": report.nodeid, "outcome": outcome, "when": report.when,
               "duration": round(report.duration, 3) if report.duration is not None else None}
        if outcome not in ("passed", "xpassed"):
            rec["message"] = failure_message(report)
        worker = worker_of(report)
        if worker:
            rec["worker"] = worker
        self.write(**rec)

    def pytest_sessionfinish(self, session, exitstatus):
        self.write(event="finish", exitstatus=int(exitstatus))

    def pytest_unconfigure(self, config):
        self.fh.close()


def cuda_context_error() -> str | None:
    """None if this process's CUDA context still works (or CUDA was never used here), else the error."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is None or not cuda.is_available() or not cuda.is_initialized():
        return None
    try:
        cuda.synchronize()
        torch.ones(1, device="cuda").add_(1)  # a launch too: some faults only show on the next one
        cuda.synchronize()
    except Exception as e:  # noqa: BLE001 - any failure here means the context is gone
        return first_line(f"{type(e).__name__}: {e}")
    return None


class CudaGuard:
    """In an xdist worker: after a failure, exit before the next test if CUDA no longer works."""

    def __init__(self, path: str | None, worker: str | None):
        self.path = path
        self.worker = worker
        self.last_failed: str | None = None

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.last_failed = report.nodeid

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        if self.last_failed is None:
            return
        after, self.last_failed = self.last_failed, None
        err = cuda_context_error()
        if err is None:
            return
        if self.path:
            append_line(self.path, {"event": "worker_restart", "worker": self.worker, "after": after,
                                    "not_run": item.nodeid, "message": err})
        sys.stderr.write(f"\n[outcome-log] {self.worker}: CUDA context unusable after {after} ({err}); exiting "
                         f"so xdist starts a fresh worker ({item.nodeid} did not run)\n")
        sys.stderr.flush()
        os._exit(RESTART_EXIT_CODE)
