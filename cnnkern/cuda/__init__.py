"""The ``cuda`` backend: thin adapters over the ``cnnkern_cuda::*`` ops that ``cnnkern._C`` registers.

One module per kernel family, as in ``cnnkern.triton`` and ``cnnkern.reference``: each has ``why_not``
(optionally ``WHY_NOT`` per kernel) and ``KERNELS`` (kernel name -> function), which the registry collects.
"""

from __future__ import annotations

import functools

import torch

from cnnkern._ext import extension, why_no_extension

_SUPPORTED = (torch.float16, torch.bfloat16, torch.float32)


@functools.cache
def why_unavailable() -> str | None:
    if extension() is None:
        return why_no_extension()
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    return None


@functools.cache
def _why_not_arch(index: int) -> str | None:
    major, minor = torch.cuda.get_device_capability(index)
    if major < 8:
        return f"the CUDA kernels need compute capability 8.0 or newer; this GPU is {major}.{minor}"
    return None


def why_not_problem(problem) -> str | None:
    """Device, dtype and architecture: what every CUDA kernel needs (``problem`` has .device and .dtype)."""
    if problem.device.type != "cuda":
        return f"tensors are on {problem.device.type}, the cuda backend needs CUDA tensors"
    if problem.dtype not in _SUPPORTED:
        return f"dtype {problem.dtype} is not supported by the CUDA kernels (fp16, bf16, fp32)"
    return _why_not_arch(problem.device.index if problem.device.index is not None else 0)


def has_op(name: str) -> bool:
    return extension() is not None and hasattr(torch.ops.cnnkern_cuda, name)


def why_not_with_op(op: str, family: str, problem) -> str | None:
    """``why_not_problem``, after checking that this build of the extension has the family's op."""
    if not has_op(op):
        return f"this build of cnnkern._C has no {family} kernels (rebuild the extension)"
    return why_not_problem(problem)


# The activation codes of the cnnkern_cuda ops (kernels/common/epilogue.cuh).
_ACTIVATION_CODES = {None: 0, "relu": 1, "relu6": 2, "silu": 3}


def activation_code(activation) -> int:
    """The ops' int code for an activation name (None, "relu", "relu6", "silu"); ValueError for others."""
    from cnnkern.problem.conv_bn import check_activation

    check_activation(activation)
    return _ACTIVATION_CODES[activation]


def stats_empty(shape, like: torch.Tensor) -> torch.Tensor:
    """An fp32 buffer a kernel fills (statistics partials, per-channel sums), allocated where every kernel
    output is (cnnkern.problem.memory) so that the NaN-poisoning tests cover it too."""
    from cnnkern.problem import memory

    proto = like if like.dtype == torch.float32 else like.new_empty((0,), dtype=torch.float32)
    return memory.empty(shape, proto, torch.contiguous_format)
