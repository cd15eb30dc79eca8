"""Backend choice: which of cuda / triton / reference runs a kernel, why not the others, and its cache.

A backend says, for one kernel and one concrete problem, either nothing (it can run it) or a sentence saying
why not. The chooser walks the device's preference list (fastest first), takes the first backend that
accepts, and keeps every rejection so ``explain_*`` can report it. A forced backend (``use_backend`` or
``CNNKERN_BACKEND``) never falls back silently: if it cannot run the problem, the call raises with its
reason.

Choosing costs tens of microseconds of Python, so the public functions do it once per *problem signature*
(shapes, strides, dtype, device, the op's arguments) and keep the result in a plan cache. ``dispatch_state()``
is part of every key: it changes with ``use_backend``, ``CNNKERN_BACKEND`` and deterministic mode, so a
change of any of them makes the next call choose again. ``clear_plans()`` drops everything (tests that
change what a backend accepts call it).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from cnnkern.ops.registry import BACKEND_NAMES, BACKENDS, Backend

# Fastest first, per device type. On the CPU the Triton interpreter is far slower than ATen, so it is
# only used when forced (that is how CI exercises the Triton kernels).
_PREFERENCE = {
    "cuda": ("cuda", "triton", "reference"),
    "cpu": ("reference", "triton"),
}
_DEFAULT_PREFERENCE = ("reference",)

# Process-wide, not thread-local: autograd runs CUDA backward passes on its own worker threads, and a
# backend forced around `loss.backward()` must reach the backward ops there too.
_forced_stack: list[str | None] = []
_forced_lock = threading.Lock()
_local = threading.local()

# os.environ.get costs ~1 us (it encodes the key); its backing dict is read directly on the hot path. Every
# os.environ / monkeypatch.setenv change goes through that dict.
_ENV = getattr(os.environ, "_data", None)
_ENV_KEY = os.environ.encodekey("CNNKERN_BACKEND") if _ENV is not None else None


def _env_backend_raw():
    return _ENV.get(_ENV_KEY) if _ENV is not None else os.environ.get("CNNKERN_BACKEND")


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown cnnkern backend {name!r}; choose one of {list(BACKEND_NAMES)}")
    return BACKENDS[name]


def backend_status() -> dict[str, str | None]:
    """Every backend with ``None`` if it is usable on this machine, else the reason it is not."""
    return {name: BACKENDS[name].why_unavailable() for name in BACKEND_NAMES}


def available_backends() -> list[str]:
    """Names of the backends usable on this machine, in preference order for CUDA tensors."""
    return [name for name, why in backend_status().items() if why is None]


def _validate_name(name: str) -> str:
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown cnnkern backend {name!r}; choose one of {list(BACKEND_NAMES)} or 'auto'")
    return name


def forced_backend() -> str | None:
    """The backend forced by ``use_backend`` (innermost wins) or by env ``CNNKERN_BACKEND``."""
    if _forced_stack:
        return _forced_stack[-1]
    raw = _env_backend_raw()
    if not raw:
        return None
    env = (raw.decode() if isinstance(raw, bytes) else raw).strip().lower()
    if env in ("", "auto"):
        return None
    return _validate_name(env)


def dispatch_state() -> tuple:
    """Everything outside the problem that the choice depends on; part of every plan-cache key."""
    if _forced_stack:
        forced = _forced_stack[-1]
    else:
        raw = _env_backend_raw()
        forced = forced_backend() if raw else None
    return (forced, torch.are_deterministic_algorithms_enabled())


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Force every cnnkern op that runs inside the block onto one backend, in every thread of the process
    (``None`` or 'auto' restores the automatic choice). A forward that runs inside the block picks its
    backward's backends then as well (the whole op is planned at once); ops called after the block use the
    automatic choice again."""
    if name is not None and name != "auto":
        _validate_name(name)
    with _forced_lock:
        _forced_stack.append(None if name == "auto" else name)
    try:
        yield
    finally:
        with _forced_lock:
            _forced_stack.pop()


@dataclass
class Choice:
    op: str  # the kernel's name
    backend: str | None
    forced: bool
    rejected: dict[str, str]
    family: str = ""  # the op family whose backend modules hold the kernel
    timings: dict | None = None  # ms per backend, when the choice was measured (cnnkern.ops.autotune)

    def __str__(self) -> str:
        head = f"{self.op}: " + (f"using '{self.backend}'" if self.backend else "no backend can run this")
        if self.forced:
            head += " (forced)"
        if self.timings:
            head += " (measured: " + ", ".join(
                f"{name} {ms:.3f} ms" if ms is not None and ms != float("inf") else f"{name} failed"
                for name, ms in self.timings.items()) + ")"
        lines = [head] + [f"  {name}: not used: {why}" for name, why in self.rejected.items()]
        return "\n".join(lines)

    def raise_if_none(self) -> None:
        if self.backend is not None:
            return
        if self.forced:
            (name, why), = self.rejected.items()
            raise RuntimeError(f"cnnkern: backend '{name}' was forced but cannot run {self.op}: {why}")
        raise RuntimeError(f"cnnkern: no backend can run {self.op}:\n{self}")


def choose(family: str, op: str, problem, device: torch.device, forced: str | None = ...) -> Choice:
    """Pick the backend for kernel ``op`` of ``family`` on ``problem``; never raises (``select`` does)."""
    if forced is ...:
        forced = forced_backend()
    if forced is not None:
        why = BACKENDS[forced].why_not(family, op, problem)
        return Choice(op, None if why else forced, True, {forced: why} if why else {}, family)
    rejected: dict[str, str] = {}
    for name in _PREFERENCE.get(device.type, _DEFAULT_PREFERENCE):
        why = BACKENDS[name].why_not(family, op, problem)
        if why is None:
            return Choice(op, name, False, rejected, family)
        rejected[name] = why
    return Choice(op, None, False, rejected, family)


def acceptors(family: str, op: str, problem, device: torch.device) -> tuple[list[str], dict[str, str]]:
    """Every backend that can run kernel ``op`` (preference order), and why the others cannot."""
    accepted, rejected = [], {}
    for name in _PREFERENCE.get(device.type, _DEFAULT_PREFERENCE):
        why = BACKENDS[name].why_not(family, op, problem)
        if why is None:
            accepted.append(name)
        else:
            rejected[name] = why
    return accepted, rejected


def implementation(choice: Choice) -> Callable[..., None]:
    """The kernel a (successful) choice names; raises with every rejection reason if there is none."""
    choice.raise_if_none()
    return BACKENDS[choice.backend].kernel(choice.family, choice.op)


def select(family: str, op: str, problem, device: torch.device) -> Callable[..., None]:
    """Choose (uncached) and return the implementation, recording the choice for ``last_choice``."""
    choice = choose(family, op, problem, device)
    impl = implementation(choice)
    _local.last_choice = choice
    return impl


def record(choice: Choice) -> None:
    _local.last_choice = choice


def last_choice() -> Choice | None:
    """The choice made by the most recent cnnkern op call on this thread (for debugging)."""
    return getattr(_local, "last_choice", None)


# ------------------------------------------------------------------------------------------ plan cache
# One dict for every op: keys start with the op's name. Bounded, because a model with varying input sizes
# would otherwise keep a plan per size forever; dropping everything is cheap to recover from.
_PLANS: dict = {}
_PLAN_LIMIT = 4096


def cached_plan(key, build: Callable[[], object]):
    plan = _PLANS.get(key)
    if plan is None:
        plan = build()
        if len(_PLANS) >= _PLAN_LIMIT:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def clear_plans() -> None:
    """Forget every cached backend decision (they are re-made on the next call)."""
    _PLANS.clear()
