#!/usr/bin/env python
"""Host overhead per call: every cnnkern op and module against the same ATen call, on tiny shapes.

The shapes are tiny (batch 1, 4-8 channels, 6x6 pixels) so that compute is negligible and what is timed is
the Python/C++ path from the call to the kernel: argument checks, the plan lookup, dispatch, autograd
bookkeeping, allocation. Issue 11's targets, per op: forward within 10 us of the same ATen call,
forward+backward within 1.5x of ATen's. For the fused ops "the same ATen call" is the unfused ATen
composition they replace (e.g. ``F.channel_shuffle(F.conv2d(x, w, b, groups=2), 2)``), printed beside
every row.

Timing is pytest-benchmark's (``benchmark.pedantic``: warm-up rounds, then rounds of many calls, one
number per round = time / calls); one intra-op thread (``torch.set_num_threads(1)``), garbage collection
off while timing. A loaded machine inflates some rounds, so the number reported is the minimum over a few
consecutive chunks of rounds of each chunk's median; on the CPU the script's default timer is the calling
thread's CPU time (``time.thread_time``, the CPU autograd engine runs backward on the calling thread), which
does not count time the thread spends preempted. Both still move with cache and memory-bandwidth contention
from other processes: CPU numbers on a shared machine are noisy, compare ratios, not absolute values.

Row groups (each cnnkern row measured right after its ATen row):

* CPU ``auto``: what a user gets: the automatic backend choice, which on the CPU is the reference backend,
  so the public function runs the ``aten`` route (``cnnkern.ops._route``).
* CPU ``python``: the plan's route forced to ``python`` (autograd Functions calling the chosen kernels),
  with the reference kernels: the host cost of the route a Triton call takes on a GPU, plus the reference
  kernels' own extra copy into the preallocated output. Forced with ``cnnkern.ops._route.forced_route``.
  Forcing the Triton backend on the CPU would time the interpreter, so it is not done.
* CPU ``cpp``: the route forced to the C++ ops (``torch.ops.cnnkern_cuda.*`` with their C++ autograd) on
  their CPU kernels, when the extension registers them: the host cost of the route a CUDA-backend call
  takes on a GPU.
* GPU: ``auto``, and each backend forced (``cuda``, ``triton``, ``reference``), all on CUDA tensors; plus
  the host time to enqueue 1,000 forward calls without synchronizing and the wait for them afterwards.

Run it as a script (prints the table and the target verdicts; CI runs ``--short``)::

    python bench/bench_overhead.py [--short] [--json PATH|none] [--timer cpu|wall] [-k EXPR] [--strict]

or through pytest-benchmark (bench/ is not in the test paths, so a plain ``pytest`` never collects it)::

    python -m pytest bench/bench_overhead.py --benchmark-only --benchmark-group-by=group [-k conv2d]
    BENCH_OVERHEAD_SHORT=1 python -m pytest bench/bench_overhead.py --benchmark-only --benchmark-json=o.json

Exit code of the script: 1 if any measurement failed (or, with ``--strict``, a target was missed), else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from cnnkern.ops import _route
from cnnkern.ops import backend as _backend

# One intra-op thread for the whole process, in both modes: ATen's thread pool would otherwise add its
# wake-up cost to both sides and the load of the machine to the variance.
torch.set_num_threads(1)

BENCH_DIR = Path(__file__).resolve().parent
FWD_TARGET_US = 10.0  # forward: cnnkern - ATen <= 10 us
FWDBWD_TARGET = 1.5  # forward+backward: cnnkern / ATen <= 1.5
CHAIN_CALLS = 1000
CPU_NOTICE = ("CPU numbers on a shared machine are noisy (other processes share the cores and caches): read "
              "the ratios, and re-run before trusting a single value. Host overhead only, tiny shapes.")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Rounds and calls per round; ``chunks`` consecutive slices of the rounds give one median each."""

    rounds: int
    chunks: int
    warmup_rounds: int
    calls_fwd: int
    calls_fwdbwd: int
    chain_rounds: int


FULL = Settings(rounds=60, chunks=4, warmup_rounds=3, calls_fwd=40, calls_fwdbwd=15, chain_rounds=5)
SHORT = Settings(rounds=20, chunks=4, warmup_rounds=2, calls_fwd=20, calls_fwdbwd=8, chain_rounds=3)


# ------------------------------------------------------------------------------------------------ cases
# A case builds, for one device/dtype, two implementations of one call: (forward closure, leaves) each.
# Both see the same input tensors; module cases get two modules with the same parameter values.
@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    aten: str  # the ATen call or composition cnnkern is compared with
    build: Callable


def _leaf(*shape, device, dtype):
    return torch.randn(*shape, device=device, dtype=dtype).requires_grad_(True)


def _functional(aten_fn, ck_fn, *tensors):
    leaves = [t for t in tensors if t is not None]
    return {"aten": (lambda: aten_fn(*tensors), leaves), "cnnkern": (lambda: ck_fn(*tensors), leaves)}


def _conv2d(device, dtype):
    x, w, b = _leaf(1, 4, 6, 6, device=device, dtype=dtype), _leaf(4, 4, 3, 3, device=device, dtype=dtype), \
        _leaf(4, device=device, dtype=dtype)
    return _functional(lambda x, w, b: F.conv2d(x, w, b, 1, 1), lambda x, w, b: cnnkern.conv2d(x, w, b, 1, 1),
                       x, w, b)


def _depthwise(device, dtype):
    x, w, b = _leaf(1, 8, 6, 6, device=device, dtype=dtype), _leaf(8, 1, 3, 3, device=device, dtype=dtype), \
        _leaf(8, device=device, dtype=dtype)
    return _functional(lambda x, w, b: F.conv2d(x, w, b, 1, 1, 1, 8),
                       lambda x, w, b: cnnkern.depthwise_conv2d(x, w, b, 1, 1), x, w, b)


def _group_pointwise(device, dtype):
    x, w, b = _leaf(1, 8, 6, 6, device=device, dtype=dtype), _leaf(8, 4, 1, 1, device=device, dtype=dtype), \
        _leaf(8, device=device, dtype=dtype)
    return _functional(lambda x, w, b: F.channel_shuffle(F.conv2d(x, w, b, groups=2), 2),
                       lambda x, w, b: cnnkern.group_pointwise_conv2d(x, w, b, groups=2, shuffle_groups=2),
                       x, w, b)


def _shuffle_cat(device, dtype):
    x1, x2 = _leaf(1, 4, 6, 6, device=device, dtype=dtype), _leaf(1, 4, 6, 6, device=device, dtype=dtype)
    w = _leaf(4, 4, 1, 1, device=device, dtype=dtype)
    return _functional(lambda x1, x2, w: F.channel_shuffle(torch.cat([x1, F.conv2d(x2, w)], 1), 2),
                       lambda x1, x2, w: cnnkern.shuffle_cat_pointwise(x1, x2, w), x1, x2, w)


def _conv_transpose(device, dtype):
    x, w, b = _leaf(1, 4, 6, 6, device=device, dtype=dtype), _leaf(4, 4, 3, 3, device=device, dtype=dtype), \
        _leaf(4, device=device, dtype=dtype)
    return _functional(lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 1),
                       lambda x, w, b: cnnkern.conv_transpose2d(x, w, b, 2, 1, 1), x, w, b)


def _channel_shuffle(device, dtype):
    x = _leaf(1, 8, 6, 6, device=device, dtype=dtype)
    return _functional(lambda x: F.channel_shuffle(x, 2), lambda x: cnnkern.channel_shuffle(x, 2), x)


def _module(torch_cls, ck_cls, in_shape, *args, **kwargs):
    def build(device, dtype):
        ref = torch_cls(*args, **kwargs).to(device=device, dtype=dtype)
        mine = ck_cls(*args, **kwargs).to(device=device, dtype=dtype)
        mine.load_state_dict(ref.state_dict())
        x = _leaf(*in_shape, device=device, dtype=dtype)
        return {"aten": (lambda: ref(x), [x, *ref.parameters()]),
                "cnnkern": (lambda: mine(x), [x, *mine.parameters()])}
    return build


CASES = [
    Case("conv2d", "F.conv2d(x, w, b, padding=1)", _conv2d),
    Case("depthwise_conv2d", "F.conv2d(x, w, b, padding=1, groups=C)", _depthwise),
    Case("group_pointwise_conv2d", "F.channel_shuffle(F.conv2d(x, w, b, groups=2), 2)", _group_pointwise),
    Case("shuffle_cat_pointwise", "F.channel_shuffle(torch.cat([x1, F.conv2d(x2, w)]), 2)", _shuffle_cat),
    Case("conv_transpose2d", "F.conv_transpose2d(x, w, b, 2, 1, 1)", _conv_transpose),
    Case("channel_shuffle", "F.channel_shuffle(x, 2)", _channel_shuffle),
    Case("nn.Conv2d 3x3", "torch.nn.Conv2d(4, 4, 3, padding=1)",
         _module(torch.nn.Conv2d, cnnkern.nn.Conv2d, (1, 4, 6, 6), 4, 4, 3, padding=1)),
    Case("nn.Conv2d depthwise", "torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)",
         _module(torch.nn.Conv2d, cnnkern.nn.Conv2d, (1, 8, 6, 6), 8, 8, 3, padding=1, groups=8)),
    Case("nn.Conv2d 1x1", "torch.nn.Conv2d(8, 8, 1)",
         _module(torch.nn.Conv2d, cnnkern.nn.Conv2d, (1, 8, 6, 6), 8, 8, 1)),
    Case("nn.ConvTranspose2d", "torch.nn.ConvTranspose2d(4, 4, 3, 2, 1, 1)",
         _module(torch.nn.ConvTranspose2d, cnnkern.nn.ConvTranspose2d, (1, 4, 6, 6), 4, 4, 3, 2, 1, 1)),
]
CASE_BY_NAME = {c.name: c for c in CASES}


# ------------------------------------------------------------------------------------------ row groups
def cpp_ops_available() -> bool:
    """The C++ route can be timed on CPU tensors: the extension registers every functional op."""
    names = ("conv2d", "conv_transpose2d", "channel_shuffle", "group_pointwise_conv2d", "shuffle_cat_pointwise")
    try:
        return all(_route.cpp_op(n) is not None for n in names)
    except Exception:  # noqa: BLE001 - a broken extension: the group is simply not offered
        return False


@contextlib.contextmanager
def forced_backend(name: str | None):
    _backend.clear_plans()
    try:
        with cnnkern.use_backend(name):
            yield
    finally:
        _backend.clear_plans()


ON_GPU = torch.cuda.is_available()
if ON_GPU:
    GROUPS = {
        "auto": ("automatic backend choice on CUDA tensors", lambda: forced_backend(None)),
        "cuda": ("cuda backend forced", lambda: forced_backend("cuda")),
        "triton": ("triton backend forced", lambda: forced_backend("triton")),
        "reference": ("reference backend forced (the aten route)", lambda: forced_backend("reference")),
    }
else:
    GROUPS = {"auto": ("automatic choice: reference backend, so the aten route", lambda: forced_backend(None))}
    if hasattr(_route, "forced_route"):
        GROUPS["python"] = ("route forced to 'python' (autograd Functions) with the reference kernels",
                            lambda: _route.forced_route("python"))
    if hasattr(_route, "forced_route") and cpp_ops_available():
        GROUPS["cpp"] = ("route forced to the C++ ops (torch.ops.cnnkern_cuda.*, C++ autograd), CPU kernels",
                         lambda: _route.forced_route("cuda"))
DEVICE = torch.device("cuda" if ON_GPU else "cpu")
DTYPE = torch.float32
MODES = ("fwd", "fwdbwd")
IMPLS = ("aten", "cnnkern")


def plan_routes() -> list[str]:
    """The routes of the plans cached right now (the context clears them first, so: this case's)."""
    return sorted({p.route for p in _backend._PLANS.values() if isinstance(getattr(p, "route", None), str)})


# ------------------------------------------------------------------------------------------ measuring
def settings_from_env() -> Settings:
    return SHORT if os.environ.get("BENCH_OVERHEAD_SHORT", "") not in ("", "0") else FULL


def best_median_us(per_call_s: list[float], chunks: int) -> float:
    """Min over ``chunks`` consecutive slices of the rounds of each slice's median, in microseconds."""
    n = max(1, len(per_call_s) // chunks)
    slices = [per_call_s[i:i + n] for i in range(0, len(per_call_s) - n + 1, n)] or [per_call_s]
    return min(statistics.median(s) for s in slices) * 1e6


def make_step(call: Callable, leaves: list, mode: str) -> Callable:
    """The timed callable: a forward (the caller disables grad), or forward + backward via
    ``torch.autograd.grad`` with a fixed output gradient (no ``.grad`` accumulation on either side)."""
    if mode == "fwd":
        return call
    out = call()
    grad_out = torch.randn_like(out)
    inputs = tuple(leaves)

    def step():
        torch.autograd.grad(call(), inputs, grad_out)
    return step


def check_same(built: dict, device) -> None:
    """Before timing: the cnnkern call computes what its ATen counterpart does (a forced route that broke
    an op would otherwise be timed happily)."""
    ref, ref_leaves = built["aten"]
    mine, my_leaves = built["cnnkern"]
    a, b = ref(), mine()
    tol = 1e-2 if device.type == "cuda" else 1e-4  # TF32 convs on the GPU
    torch.testing.assert_close(b, a, rtol=tol, atol=tol)
    g = torch.randn_like(a)
    for ga, gb in zip(torch.autograd.grad(a, ref_leaves, g), torch.autograd.grad(b, my_leaves, g)):
        torch.testing.assert_close(gb, ga, rtol=tol, atol=tol)


def _collector(config):
    return getattr(config, "cnnkern_overhead", None)


def _settings(config) -> Settings:
    plugin = _collector(config)
    return plugin.settings if plugin is not None else settings_from_env()


def _is_forced_rejection(e: BaseException) -> bool:
    return "was forced but cannot run" in str(e)


# ----------------------------------------------------------------------------- pytest-benchmark tests
PARAMS = [pytest.param(g, c.name, m, i, id=f"{g}-{c.name.replace(' ', '_')}-{m}-{i}")
          for g in GROUPS for c in CASES for m in MODES for i in IMPLS]


@pytest.mark.parametrize(("group", "case", "mode", "impl"), PARAMS)
def test_overhead(benchmark, request, group, case, mode, impl):
    """Per-call host time of one implementation of one case in one row group."""
    settings = _settings(request.config)
    _label, context = GROUPS[group]
    benchmark.group = f"{group} | {case} | {mode}"
    benchmark.extra_info.update(group=group, case=case, mode=mode, impl=impl, aten=CASE_BY_NAME[case].aten)
    rec = {"group": group, "case": case, "mode": mode, "impl": impl, "aten_call": CASE_BY_NAME[case].aten}
    plugin = _collector(request.config)
    try:
        with context():
            torch.manual_seed(0)
            built = CASE_BY_NAME[case].build(DEVICE, DTYPE)
            if impl == "cnnkern":
                check_same(built, DEVICE)
            call, leaves = built[impl]
            calls = settings.calls_fwd if mode == "fwd" else settings.calls_fwdbwd
            with torch.set_grad_enabled(mode != "fwd"):
                step = make_step(call, leaves, mode)
                step()  # plans, caches, Triton autotuning: before any round
                if impl == "cnnkern":
                    rec["routes"] = plan_routes()
                benchmark.pedantic(step, rounds=settings.rounds, iterations=calls,
                                   warmup_rounds=settings.warmup_rounds)
    except Exception as e:
        if impl == "cnnkern" and _is_forced_rejection(e):
            rec.update(status="n/a", note=str(e).splitlines()[0])
            if plugin is not None:
                plugin.records.append(rec)
            pytest.skip(rec["note"])
        rec.update(status="error", note=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        if plugin is not None:
            plugin.records.append(rec)
        raise
    data = list(benchmark.stats.stats.data)
    rec.update(status="ok", us=best_median_us(data, settings.chunks),
               median_us=statistics.median(data) * 1e6, rounds=len(data), calls_per_round=calls)
    benchmark.extra_info.update(best_median_us=rec["us"], routes=rec.get("routes"))
    if plugin is not None:
        plugin.records.append(rec)


CHAIN_PARAMS = [pytest.param(g, c.name, i, id=f"chain-{g}-{c.name.replace(' ', '_')}-{i}")
                for g in GROUPS for c in CASES for i in IMPLS]


@pytest.mark.skipif(not ON_GPU, reason="enqueue chains need a CUDA GPU")
@pytest.mark.parametrize(("group", "case", "impl"), CHAIN_PARAMS)
def test_enqueue_chain(benchmark, request, group, case, impl):
    """Host time to enqueue CHAIN_CALLS forward calls without synchronizing in between (perf_counter around
    the loop), then the wait for the GPU to finish them (one synchronize, timed separately)."""
    settings = _settings(request.config)
    _label, context = GROUPS[group]
    benchmark.group = f"chain | {group} | {case}"
    rec = {"group": group, "case": case, "mode": "chain", "impl": impl, "aten_call": CASE_BY_NAME[case].aten}
    plugin = _collector(request.config)
    sync_s: list[float] = []

    def chain():
        for _ in range(CHAIN_CALLS):
            call()

    def wait():
        t = time.perf_counter()
        torch.cuda.synchronize()
        sync_s.append(time.perf_counter() - t)

    try:
        with context(), torch.no_grad():
            torch.manual_seed(0)
            call, _ = CASE_BY_NAME[case].build(DEVICE, DTYPE)[impl]
            call()  # autotuning and plans before the first round
            torch.cuda.synchronize()
            # setup (untimed) drains the queue so each round starts empty; teardown times the wait.
            benchmark.pedantic(chain, setup=torch.cuda.synchronize, teardown=wait, rounds=settings.chain_rounds,
                               warmup_rounds=1)
    except Exception as e:
        if impl == "cnnkern" and _is_forced_rejection(e):
            rec.update(status="n/a", note=str(e).splitlines()[0])
            if plugin is not None:
                plugin.records.append(rec)
            pytest.skip(rec["note"])
        rec.update(status="error", note=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        if plugin is not None:
            plugin.records.append(rec)
        raise
    data = list(benchmark.stats.stats.data)
    rec.update(status="ok", host_ms=min(data) * 1e3, host_us_per_call=min(data) * 1e6 / CHAIN_CALLS,
               sync_ms=statistics.median(sync_s[1:] or sync_s) * 1e3, rounds=len(data))
    benchmark.extra_info.update(host_ms=rec["host_ms"], sync_ms=rec["sync_ms"])
    if plugin is not None:
        plugin.records.append(rec)


# ------------------------------------------------------------------------------------ table, verdicts
def pair_rows(records: list[dict]) -> list[dict]:
    """One row per (group, case, mode): ATen and cnnkern times, the difference, the ratio, the verdict."""
    by_key: dict = {}
    for r in records:
        if r["mode"] in MODES:
            by_key.setdefault((r["group"], r["case"], r["mode"]), {})[r["impl"]] = r
    rows = []
    for (group, case, mode), pair in by_key.items():
        a, c = pair.get("aten", {}), pair.get("cnnkern", {})
        row = {"group": group, "case": case, "mode": mode, "aten_call": CASE_BY_NAME[case].aten,
               "aten_us": a.get("us"), "cnnkern_us": c.get("us"), "routes": c.get("routes")}
        if row["aten_us"] is None or row["cnnkern_us"] is None:
            bad = c if c.get("status") != "ok" else a
            row.update(verdict=bad.get("status", "missing").upper(), note=bad.get("note"))
        else:
            row["delta_us"] = row["cnnkern_us"] - row["aten_us"]
            row["ratio"] = row["cnnkern_us"] / row["aten_us"]
            if mode == "fwd":
                row["target"] = f"<= +{FWD_TARGET_US:g} us"
                ok = row["delta_us"] <= FWD_TARGET_US
            else:
                row["target"] = f"<= {FWDBWD_TARGET:g}x"
                ok = row["ratio"] <= FWDBWD_TARGET
            row["verdict"] = "PASS" if ok else "FAIL"
        rows.append(row)
    return rows


def _fmt(v, spec):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def print_compact(rows: list[dict], out=print) -> None:
    """One Markdown table, one line per op: ATen's time, then cnnkern's per row group with its difference
    (forward) or ratio (forward+backward) to the ATen row measured beside it; x marks a missed target."""
    groups = [g for g in GROUPS if any(r["group"] == g for r in rows)]
    cell = {(r["group"], r["case"], r["mode"]): r for r in rows}

    def fmt(r, mode):
        if r is None:
            return "-"
        if "ratio" not in r:
            return r["verdict"].lower()
        mark = "" if r["verdict"] == "PASS" else " x"
        return (f"{r['cnnkern_us']:.1f} ({r['delta_us']:+.1f}){mark}" if mode == "fwd"
                else f"{r['cnnkern_us']:.1f} ({r['ratio']:.2f}x){mark}")

    head = ["op / module", "same ATen call", "fwd ATen"] + [f"fwd {g}" for g in groups] + ["fwd+bwd ATen"] + \
        [f"fwd+bwd {g}" for g in groups]
    out("| " + " | ".join(head) + " |")
    out("|---|---|" + "---:|" * (len(head) - 2))
    for case in CASES:
        line = [case.name, f"`{case.aten}`"]
        for mode in MODES:
            base = cell.get((groups[0], case.name, mode)) if groups else None
            line.append(_fmt(base.get("aten_us") if base else None, ".1f"))
            line += [fmt(cell.get((g, case.name, mode)), mode) for g in groups]
        if any(c != "-" for c in line[2:]):
            out("| " + " | ".join(line) + " |")
    out(f"\nµs per call; fwd: cnnkern (difference to ATen), target <= +{FWD_TARGET_US:g} µs; fwd+bwd: cnnkern "
        f"(ratio to ATen), target <= {FWDBWD_TARGET:g}x; x = target missed. Each cnnkern number is compared "
        f"with the ATen call measured right before it (the 'ATen' columns show the {groups[0] if groups else '-'} "
        "group's). Groups: " + "; ".join(f"{g}: {GROUPS[g][0]}" for g in groups) + ".")


def print_table(rows: list[dict], records: list[dict], out=print) -> None:
    for group in GROUPS:
        grows = [r for r in rows if r["group"] == group]
        if not grows:
            continue
        out(f"\n### {group}: {GROUPS[group][0]}\n")
        out("| op / module | same ATen call | mode | ATen µs | cnnkern µs | Δ µs | ratio | target | verdict |")
        out("|---|---|---|---:|---:|---:|---:|---|---|")
        for r in grows:
            mode = "fwd" if r["mode"] == "fwd" else "fwd+bwd"
            verdict = r["verdict"] + (f" ({r['note']})" if r.get("note") else "")
            out(f"| {r['case']} | `{r['aten_call']}` | {mode} | {_fmt(r['aten_us'], '.1f')} | "
                f"{_fmt(r['cnnkern_us'], '.1f')} | {_fmt(r.get('delta_us'), '+.1f')} | "
                f"{_fmt(r.get('ratio'), '.2f')} | {r.get('target', '-')} | {verdict} |")
    chains = [r for r in records if r["mode"] == "chain"]
    if chains:
        out(f"\n### enqueue {CHAIN_CALLS} forward calls without synchronizing (host ms, then the wait)\n")
        out("| group | op / module | impl | host ms | host µs/call | synchronize ms |")
        out("|---|---|---|---:|---:|---:|")
        for r in chains:
            out(f"| {r['group']} | {r['case']} | {r['impl']} | {_fmt(r.get('host_ms'), '.2f')} | "
                f"{_fmt(r.get('host_us_per_call'), '.1f')} | {_fmt(r.get('sync_ms'), '.2f')} |"
                + (f" {r['status']}: {r.get('note')}" if r.get("status") != "ok" else ""))


def summarize(rows: list[dict]) -> list[dict]:
    """Per group and mode: how many rows pass, and the worst one."""
    out = []
    for group in GROUPS:
        for mode in MODES:
            sel = [r for r in rows if r["group"] == group and r["mode"] == mode and "ratio" in r]
            if not sel:
                continue
            key = "delta_us" if mode == "fwd" else "ratio"
            worst = max(sel, key=lambda r: r[key])
            out.append({"group": group, "mode": mode, "passed": sum(r["verdict"] == "PASS" for r in sel),
                        "n": len(sel), "worst_case": worst["case"], "worst": worst[key], "key": key})
    return out


class Collector:
    """The script's pytest plugin: hands the settings to the tests and receives their records."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.records: list[dict] = []

    def pytest_configure(self, config):
        config.cnnkern_overhead = self


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true", help="fewer rounds and calls (CI)")
    p.add_argument("--json", help="default bench/results/overhead-<device>.json; 'none' to skip")
    p.add_argument("--timer", choices=("cpu", "wall"),
                   help="cpu: time.thread_time (default on the CPU); wall: time.perf_counter (default on a GPU, "
                        "where host time includes waiting on the driver)")
    p.add_argument("-k", dest="select", help="pytest -k expression over the test ids, e.g. 'conv2d and fwd'")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--detail", action="store_true", help="also one table per row group (ATen, cnnkern, Δ, ratio)")
    args = p.parse_args(argv)

    sys.path.insert(0, str(BENCH_DIR))
    import _common as C

    settings = SHORT if args.short else FULL
    timer = args.timer or ("wall" if ON_GPU else "cpu")
    plugin = Collector(settings)
    pytest_args = [str(Path(__file__).resolve()), "-q", "-p", "no:cacheprovider", "--benchmark-only",
                   "--benchmark-quiet", "--benchmark-disable-gc", "-o", "addopts=", "--no-header",
                   f"--benchmark-timer=time.{'thread_time' if timer == 'cpu' else 'perf_counter'}"]
    if args.select:
        pytest_args += ["-k", args.select]
    meta = C.run_metadata(DEVICE)
    meta.update(cnnkern=cnnkern.__version__, timer=f"time.{'thread_time' if timer == 'cpu' else 'perf_counter'}",
                settings=dataclasses.asdict(settings), groups={g: v[0] for g, v in GROUPS.items()},
                statistic="min over chunks of consecutive rounds of each chunk's median time per call",
                targets={"fwd": f"cnnkern - ATen <= {FWD_TARGET_US} us",
                         "fwdbwd": f"cnnkern / ATen <= {FWDBWD_TARGET}"})
    print(f"bench_overhead: {meta['device']} | torch {meta['torch']} | cnnkern {cnnkern.__version__} | "
          f"threads {torch.get_num_threads()} | timer {meta['timer']} | {'short' if args.short else 'full'} "
          f"({settings.rounds} rounds x {settings.calls_fwd} fwd / {settings.calls_fwdbwd} fwd+bwd calls, "
          f"min of {settings.chunks} chunk medians)")
    if not ON_GPU:
        print(CPU_NOTICE)
    t0 = time.perf_counter()
    rc = pytest.main(pytest_args, plugins=[plugin])
    meta["elapsed_s"] = round(time.perf_counter() - t0, 1)

    rows = pair_rows(plugin.records)
    if args.detail:
        print_table(rows, plugin.records)
    else:  # the enqueue chains (GPU) only
        print_table([], plugin.records)
    print()
    print_compact(rows)
    summary = summarize(rows)
    print(f"\n== issue 11 targets: forward <= ATen + {FWD_TARGET_US:g} us, forward+backward <= "
          f"{FWDBWD_TARGET:g}x ATen ==")
    for s in summary:
        worst = f"{s['worst']:+.1f} us" if s["key"] == "delta_us" else f"{s['worst']:.2f}x"
        print(f"  {s['group']:9} {'fwd' if s['mode'] == 'fwd' else 'fwd+bwd':8} {s['passed']}/{s['n']} pass; "
              f"worst: {s['worst_case']} {worst}")
    if not ON_GPU:
        print("reminder: " + CPU_NOTICE)
    failed = [r for r in rows if r["verdict"] == "FAIL"]
    errors = [r for r in plugin.records if r.get("status") == "error"]
    print(f"{len(plugin.records)} measurements in {meta['elapsed_s']} s; {len(errors)} errors; "
          f"{len(failed)} rows miss their target")
    json_path = args.json or C.RESULTS_DIR / f"overhead-{C.slug(meta['device'])}.json"
    if str(json_path).lower() != "none":
        print(f"wrote {C.write_json(json_path, meta, plugin.records, rows=rows, summary=summary)}")
    if rc not in (0, pytest.ExitCode.NO_TESTS_COLLECTED) or errors:
        return 1
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
