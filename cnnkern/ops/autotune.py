"""The measured backend choice: never slower than ATen.

For a CUDA problem the heuristic order (cuda, triton, reference) picks the first backend that *can* run a
kernel, which is not the one that runs it fastest: the 2026-11-30 H200 run had cnnkern's kernels 2-18x
behind cuDNN, so ``cnnkern.convert(model)`` made models slower. Like ``torch.backends.cudnn.benchmark`` and
Inductor's autotuning, each kernel of a new problem signature is timed once on every backend that accepts it
(the reference candidate is the ATen call itself, so ATen/cuDNN competes as it runs in the aten route) and
the fastest is kept: in memory in the plan, and on disk, keyed by GPU, versions and problem, so the next
process starts with the answer. ``explain_*`` shows the timings.

Measuring happens only for CUDA tensors, without a forced backend, outside CUDA-graph capture and tracing.
``CNNKERN_AUTOTUNE=0`` (or ``cnnkern.ops.autotune.set_enabled(False)``) turns it off: the heuristic order,
for reproducible runs. ``CNNKERN_CACHE_DIR`` moves the disk cache (default ``~/.cache/cnnkern``).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import threading

import torch

from cnnkern._version import __version__

_lock = threading.Lock()
_enabled: bool | None = None  # None: from the environment
_DEVICE_TYPES = {"cuda"}  # tests add "cpu" together with a fake timer
_REPEATS = 5


def enabled() -> bool:
    if _enabled is not None:
        return _enabled
    return os.environ.get("CNNKERN_AUTOTUNE", "1").strip() not in ("0", "off", "false", "")


def set_enabled(flag: bool | None) -> None:
    """Measure (True), use the heuristic order (False), or follow ``CNNKERN_AUTOTUNE`` (None)."""
    global _enabled
    _enabled = flag
    from cnnkern.ops.backend import clear_plans

    clear_plans()


@contextlib.contextmanager
def autotuning(flag: bool):
    previous = _enabled
    set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(previous)


def applies(device: torch.device, forced: str | None) -> bool:
    """Whether a plan for tensors on ``device`` measures its candidates now."""
    if forced is not None or device.type not in _DEVICE_TYPES or not enabled():
        return False
    if torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack():
        return False
    return not (device.type == "cuda" and torch.cuda.is_current_stream_capturing())


# --------------------------------------------------------------------------------------------- timing
def _time_cuda(fn) -> float:
    fn()  # warm-up: Triton compiles and autotunes here
    times = []
    for _ in range(_REPEATS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _time_host(fn) -> float:
    import time

    fn()
    times = []
    for _ in range(_REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def time_ms(fn, device: torch.device) -> float:
    """The median time of ``fn`` in milliseconds (CUDA events on a GPU). Tests replace this."""
    return _time_cuda(fn) if device.type == "cuda" else _time_host(fn)


# ----------------------------------------------------------------------------------------- disk cache
_cache: dict | None = None


def _cache_path() -> str:
    root = os.environ.get("CNNKERN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "cnnkern")
    return os.path.join(root, "autotune-v1.json")


def _load() -> dict:
    global _cache
    if _cache is None:
        try:
            with open(_cache_path(), encoding="utf-8") as f:
                _cache = json.load(f)
        except (OSError, ValueError):
            _cache = {}
    return _cache


def _save() -> None:
    path = _cache_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_cache, f, indent=0, sort_keys=True)
        os.replace(tmp, path)  # atomic: concurrent processes never read half a file
    except OSError:
        pass  # a read-only home: the in-memory decision still holds


def _environment(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    return f"{name}|torch {torch.__version__}|triton {triton_version}|cnnkern {__version__}"


def forget() -> None:
    """Drop the in-memory copy of the disk cache (tests; a changed CNNKERN_CACHE_DIR)."""
    global _cache
    _cache = None


# ------------------------------------------------------------------------------------------- deciding
def decide(signature: str, device: torch.device, candidates: dict) -> tuple[str, dict[str, float]]:
    """The fastest candidate (name -> zero-argument callable) and every measured time in ms; a candidate
    that raises is out (its time is inf). Decisions persist on disk under GPU, versions and ``signature``."""
    key = f"{_environment(device)}|{signature}"
    with _lock:
        cached = _load().get(key)
    if cached is not None and cached.get("best") in candidates:
        return cached["best"], cached.get("ms", {})
    times = {}
    for name, fn in candidates.items():
        try:
            times[name] = time_ms(fn, device)
        except Exception:  # noqa: BLE001  (a kernel that cannot run this problem simply loses)
            times[name] = float("inf")
    best = min(times, key=lambda n: times[n])
    with _lock:
        _load()[key] = {"best": best, "ms": {n: (t if t != float("inf") else None) for n, t in times.items()}}
        _save()
    return best, times


def choose(family: str, name: str, problem, device: torch.device, default, signature: str, candidate):
    """The measured ``Choice`` of kernel ``name`` among the backends that accept ``problem`` (``default``, the
    heuristic choice, when fewer than two do). ``candidate(backend, kernel)`` returns the zero-argument call
    to time (``kernel`` is None for the reference backend, whose candidate is the ATen call)."""
    from cnnkern.ops import backend as _backend

    accepted, rejected = _backend.acceptors(family, name, problem, device)
    if len(accepted) < 2:
        return default
    calls = {b: candidate(b, None if b == "reference" else _backend.BACKENDS[b].kernel(family, name))
             for b in accepted}
    best, timings = decide(f"{name}|{signature}", device, calls)
    return _backend.Choice(name, best, False, rejected, family, timings)
