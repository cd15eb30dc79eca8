"""Triton kernels. Importing this package does not import triton; each op module does, lazily."""

from __future__ import annotations

import functools
import os

import torch


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def _import_error() -> str | None:
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return f"triton is not installed ({exc})"
    return None


@functools.cache
def _interpreter_clash() -> str | None:
    """triton < 3.7's interpreter turns a kernel scalar (a 1-element array) into an int with ``int(array)``,
    which NumPy 2.4 made an error: every kernel whose loop bound is a runtime scalar then fails with
    "only 0-dimensional arrays can be converted to Python scalars" (triton-lang/triton#9171, fixed in 3.7).
    Interpreter only; compiled kernels do not go through NumPy."""
    import re

    import numpy as np
    import triton

    version = re.match(r"(\d+)\.(\d+)", triton.__version__)
    if version is None or (int(version[1]), int(version[2])) >= (3, 7):
        return None
    if np.lib.NumpyVersion(np.__version__) < "2.4.0":
        return None
    return (f"the interpreter of triton {triton.__version__} cannot run with numpy {np.__version__} "
            "(triton-lang/triton#9171): install numpy<2.4, or triton>=3.7")


def why_unavailable() -> str | None:
    err = _import_error()
    if err is not None:
        return err
    if interpreting():
        return _interpreter_clash()
    if torch.cuda.is_available():
        return None
    return "no CUDA GPU is visible, and TRITON_INTERPRET=1 is not set (the interpreter runs on the CPU)"


def why_not_device(device: torch.device) -> str | None:
    """Triton compiles for CUDA devices; the interpreter also accepts CPU tensors."""
    if device.type == "cuda":
        return None
    if device.type == "cpu" and interpreting():
        return None
    if device.type == "cpu":
        return "CPU tensors need the Triton interpreter (set TRITON_INTERPRET=1 before importing cnnkern)"
    return f"tensors on {device.type} are not supported by the triton backend"


SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INT32_MAX = 2**31 - 1


def why_not_problem(problem) -> str | None:
    """The device and dtype checks every Triton op shares (``problem`` has ``.device`` and ``.dtype``)."""
    why = why_not_device(problem.device)
    if why is not None:
        return why
    if problem.dtype not in SUPPORTED_DTYPES:
        return f"dtype {problem.dtype} is not supported by the triton kernels (fp16, bf16, fp32, fp64)"
    return None


def needs_int64(tensors) -> bool:
    """Whether any offset into these tensors can pass int32 (sliced views reach past numel: use the span).
    Runs on every launch: the arithmetic is cached per (shape, strides), which costs ~7 us otherwise."""
    return any(_geometry_needs_int64(t.shape, t.stride()) for t in tensors)


@functools.lru_cache(maxsize=4096)
def _geometry_needs_int64(shape, stride) -> bool:
    span = sum((d - 1) * abs(st) for d, st in zip(shape, stride)) + 1
    numel = 1
    for d in shape:
        numel *= d
    return max(span, numel) > _INT32_MAX
