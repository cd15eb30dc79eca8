"""Backend registry and chooser.

A backend says, for one op and one concrete problem, either nothing (it can run it) or a sentence saying
why not. The chooser walks the device's preference list (fastest first), takes the first backend that
accepts, and keeps every rejection so ``explain_*`` can report it. A forced backend (``use_backend`` or
``CNNKERN_BACKEND``) never falls back silently: if it cannot run the problem, the call raises with its
reason.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

BACKEND_NAMES = ("cuda", "triton", "reference")

# Fastest first, per device type. On the CPU the Triton interpreter is far slower than ATen, so it is
# only used when forced (that is how CI exercises the Triton kernels).
_PREFERENCE = {
    "cuda": ("cuda", "triton", "reference"),
    "cpu": ("reference", "triton"),
}
_DEFAULT_PREFERENCE = ("reference",)


@dataclass
class Backend:
    name: str
    why_unavailable: Callable[[], str | None]
    # op name -> (why_not(problem) -> Optional[str], implementation)
    ops: dict[str, tuple[Callable[..., str | None], Callable[..., None]]] = field(default_factory=dict)

    def register(self, op: str, why_not: Callable[..., str | None], impl: Callable[..., None]) -> None:
        self.ops[op] = (why_not, impl)

    def why_not(self, op: str, problem) -> str | None:
        reason = self.why_unavailable()
        if reason is not None:
            return reason
        if op not in self.ops:
            return f"the {self.name} backend has no {op} kernel"
        return self.ops[op][0](problem)


_BACKENDS: dict[str, Backend] = {}
# Process-wide, not thread-local: autograd runs CUDA backward passes on its own worker threads, and a
# backend forced around `loss.backward()` must reach the backward ops there too.
_forced_stack: list[str | None] = []
_forced_lock = threading.Lock()
_local = threading.local()


def register_backend(backend: Backend) -> Backend:
    _BACKENDS[backend.name] = backend
    return backend


def get_backend(name: str) -> Backend:
    _ensure_loaded()
    if name not in _BACKENDS:
        raise ValueError(f"unknown cnnkern backend {name!r}; choose one of {list(BACKEND_NAMES)}")
    return _BACKENDS[name]


def _ensure_loaded() -> None:
    # Importing the backend modules registers them; done lazily to keep `import cnnkern` cheap and to
    # avoid import cycles.
    if len(_BACKENDS) == len(BACKEND_NAMES):
        return
    from cnnkern.ops import registry  # noqa: F401


def backend_status() -> dict[str, str | None]:
    """Every backend with ``None`` if it is usable on this machine, else the reason it is not."""
    _ensure_loaded()
    return {name: _BACKENDS[name].why_unavailable() for name in BACKEND_NAMES}


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
    env = os.environ.get("CNNKERN_BACKEND", "").strip().lower()
    if env in ("", "auto"):
        return None
    return _validate_name(env)


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Force every cnnkern op that runs inside the block onto one backend, in every thread of the process
    (``None`` or 'auto' restores the automatic choice). Ops run when they are called, so a backward pass
    started after the block uses the automatic choice again."""
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
    op: str
    backend: str | None
    forced: bool
    rejected: dict[str, str]

    def __str__(self) -> str:
        head = f"{self.op}: " + (f"using '{self.backend}'" if self.backend else "no backend can run this")
        if self.forced:
            head += " (forced)"
        lines = [head] + [f"  {name}: not used: {why}" for name, why in self.rejected.items()]
        return "\n".join(lines)


def choose(op: str, problem, device: torch.device) -> Choice:
    """Pick the backend for ``op`` on ``problem``; never raises (see ``select`` for the raising form)."""
    _ensure_loaded()
    forced = forced_backend()
    if forced is not None:
        why = _BACKENDS[forced].why_not(op, problem)
        return Choice(op, None if why else forced, True, {forced: why} if why else {})
    rejected: dict[str, str] = {}
    order = _PREFERENCE.get(device.type, _DEFAULT_PREFERENCE)
    for name in order:
        why = _BACKENDS[name].why_not(op, problem)
        if why is None:
            return Choice(op, name, False, rejected)
        rejected[name] = why
    return Choice(op, None, False, rejected)


def select(op: str, problem, device: torch.device) -> Callable[..., None]:
    """The implementation to run; raises with every rejection reason if none can run the problem."""
    choice = choose(op, problem, device)
    if choice.backend is None:
        if choice.forced:
            (name, why), = choice.rejected.items()
            raise RuntimeError(f"cnnkern: backend '{name}' was forced but cannot run {op}: {why}")
        raise RuntimeError(f"cnnkern: no backend can run {op}:\n{choice}")
    _local.last_choice = choice
    return _BACKENDS[choice.backend].ops[op][1]


def last_choice() -> Choice | None:
    """The choice made by the most recent cnnkern op call on this thread (for debugging)."""
    return getattr(_local, "last_choice", None)
