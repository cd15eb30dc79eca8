"""The ``cuda`` backend: thin adapters over the ``cnnkern_cuda::*`` ops that ``cnnkern._C`` registers."""

from __future__ import annotations

import functools

import torch

from cnnkern._ext import extension, why_no_extension
from cnnkern.ops._conv_args import Conv2dProblem, Conv2dSpec

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


def why_not_conv2d(problem: Conv2dProblem) -> str | None:
    if problem.device.type != "cuda":
        return f"tensors are on {problem.device.type}, the cuda backend needs CUDA tensors"
    if problem.dtype not in _SUPPORTED:
        return f"dtype {problem.dtype} is not supported by the CUDA kernels (fp16, bf16, fp32)"
    return _why_not_arch(problem.device.index if problem.device.index is not None else 0)


def conv2d_forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.conv2d_fwd(x, w, bias, out, list(spec.stride), list(spec.pad_tl),
                                      list(spec.dilation), spec.groups)


def conv2d_backward_input(grad_out, w, grad_in, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.conv2d_bwd_input(grad_out, w, grad_in, list(spec.stride), list(spec.pad_tl),
                                            list(spec.dilation), spec.groups)


def conv2d_backward_weight(grad_out, x, grad_w, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.conv2d_bwd_weight(grad_out, x, grad_w, list(spec.stride), list(spec.pad_tl),
                                             list(spec.dilation), spec.groups)


def _has_op(name: str) -> bool:
    return extension() is not None and hasattr(torch.ops.cnnkern_cuda, name)


def why_not_depthwise(problem: Conv2dProblem) -> str | None:
    if not _has_op("depthwise_conv2d_fwd"):
        return "this build of cnnkern._C has no depthwise kernels (rebuild the extension)"
    return why_not_conv2d(problem)


def depthwise_conv2d_forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.depthwise_conv2d_fwd(x, w, bias, out, list(spec.stride), list(spec.pad_tl),
                                                list(spec.dilation))


def depthwise_conv2d_backward_input(grad_out, w, grad_in, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.depthwise_conv2d_bwd_input(grad_out, w, grad_in, list(spec.stride),
                                                      list(spec.pad_tl), list(spec.dilation))


def depthwise_conv2d_backward_weight(grad_out, x, grad_w, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.depthwise_conv2d_bwd_weight(grad_out, x, grad_w, list(spec.stride),
                                                       list(spec.pad_tl), list(spec.dilation),
                                                       torch.are_deterministic_algorithms_enabled())
