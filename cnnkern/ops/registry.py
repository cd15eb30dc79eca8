"""The three backends, and how a kernel of an op family is found in each.

Every backend is a package with one module per op family (``cnnkern.reference.conv2d``,
``cnnkern.triton.conv2d``, ``cnnkern.cuda.conv2d``, ...). A module gives ``why_not(problem)`` (optionally
``WHY_NOT`` per kernel) and ``KERNELS``, kernel name -> function. A family without a module in a backend has
no kernels there. Modules are imported when first asked about, so ``import cnnkern`` never imports triton.
This module only builds the table; the chooser (``cnnkern.ops.backend``) reads it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

BACKEND_NAMES = ("cuda", "triton", "reference")


def _reference_available() -> str | None:
    return None


def _triton_unavailable() -> str | None:
    from cnnkern import triton  # the package only: it imports triton itself lazily

    return triton.why_unavailable()


def _cuda_unavailable() -> str | None:
    from cnnkern import cuda

    return cuda.why_unavailable()


@dataclass
class Backend:
    name: str
    package: str
    why_unavailable: Callable[[], str | None]
    _modules: dict = field(default_factory=dict)

    def module(self, family: str):
        """The backend's module for ``family``, or None when it has none."""
        if family not in self._modules:
            name = f"{self.package}.{family}"
            try:
                self._modules[family] = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name != name:  # the module exists but something it imports does not: say so
                    raise
                self._modules[family] = None
        return self._modules[family]

    def why_not(self, family: str, kernel: str, problem) -> str | None:
        reason = self.why_unavailable()
        if reason is not None:
            return reason
        module = self.module(family)
        if module is None or kernel not in module.KERNELS:
            return f"the {self.name} backend has no {kernel} kernel"
        return getattr(module, "WHY_NOT", {}).get(kernel, module.why_not)(problem)

    def kernel(self, family: str, kernel: str) -> Callable[..., None]:
        fn = self.module(family).KERNELS[kernel]
        return _on_tensor_device(fn) if self.name == "triton" else fn


def _on_tensor_device(fn: Callable[..., None]) -> Callable[..., None]:
    """Triton launches on the *current* CUDA device, not the tensors' one (the CUDA extension guards itself):
    a kernel on cuda:1 tensors must run with cuda:1 current."""

    def launch(*args):
        device = args[0].device
        if device.type != "cuda" or device.index is None or device.index == torch.cuda.current_device():
            return fn(*args)
        with torch.cuda.device(device):
            return fn(*args)

    return launch


BACKENDS: dict[str, Backend] = {
    "cuda": Backend("cuda", "cnnkern.cuda", _cuda_unavailable),
    "triton": Backend("triton", "cnnkern.triton", _triton_unavailable),
    "reference": Backend("reference", "cnnkern.reference", _reference_available),
}
