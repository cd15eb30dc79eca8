"""Loads the compiled CUDA extension ``cnnkern._C`` and remembers why it could not be used."""

from __future__ import annotations

import functools
import os

import torch


@functools.cache
def _load() -> tuple[object | None, str | None]:
    if os.environ.get("CNNKERN_DISABLE_EXTENSION", "").strip() not in ("", "0"):
        # Behave as a pure-Python install (Triton + reference) without rebuilding: for comparisons and tests.
        return None, "the CUDA extension is disabled by CNNKERN_DISABLE_EXTENSION=1"
    try:
        from cnnkern import _C  # registers the cnnkern_cuda::* ops
    except ImportError as exc:
        text = str(exc)
        if "No module named" in text or "cannot import name '_C'" in text:
            return None, ("the CUDA extension cnnkern._C was not built (no CUDA toolkit at install time, or "
                          "CNNKERN_SKIP_CUDA_BUILD=1)")
        return None, f"the CUDA extension cnnkern._C failed to load: {text}"
    info = _C.build_info()
    built = str(info.get("torch_version", ""))
    running = torch.__version__.split("+")[0]
    if built and built != running:
        return None, (f"cnnkern._C was built against torch {built} but torch {running} is running; reinstall "
                      "cnnkern with `pip install --no-build-isolation .` against this torch")
    return _C, None


def extension():
    """The loaded extension module, or None."""
    return _load()[0]


def why_no_extension() -> str | None:
    return _load()[1]


def build_info() -> dict:
    ext = extension()
    return dict(ext.build_info()) if ext is not None else {}
