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


def why_unavailable() -> str | None:
    err = _import_error()
    if err is not None:
        return err
    if interpreting() or torch.cuda.is_available():
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
