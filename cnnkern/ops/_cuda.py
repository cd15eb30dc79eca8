"""The ``cuda`` backend: thin adapters over the ``cnnkern_cuda::*`` ops that ``cnnkern._C`` registers."""

from __future__ import annotations

import functools

import torch

from cnnkern._ext import extension, why_no_extension
from cnnkern.problem.conv2d import Conv2dProblem, Conv2dSpec

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


# Transposed conv2d forward = the input gradient of its equivalent conv2d (``spec``), bias included.
_GRID_Z_LIMIT = 65535


def why_not_conv_transpose2d(problem: Conv2dProblem) -> str | None:
    if not _has_op("conv_transpose2d_fwd"):
        return "this build of cnnkern._C has no conv_transpose2d kernel (rebuild the extension)"
    spec = problem.spec
    if spec.groups * spec.stride[0] * spec.stride[1] > _GRID_Z_LIMIT:
        return (f"groups={spec.groups} times the {spec.stride[0]}x{spec.stride[1]} stride phases exceeds the "
                f"CUDA grid limit {_GRID_Z_LIMIT}")
    return why_not_conv2d(problem)


def conv_transpose2d_forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.conv_transpose2d_fwd(x, w, bias, out, list(spec.stride), list(spec.pad_tl),
                                                list(spec.dilation), spec.groups)


def why_not_depthwise_conv_transpose2d(problem: Conv2dProblem) -> str | None:
    reason = why_not_depthwise(problem)
    if reason is not None:
        return reason
    spec = problem.spec
    # The depthwise input-gradient op checks its geometry as a conv2d's: output rows past the reach of
    # every input (output_padding - padding >= stride, possible when dilation > stride) fail that check.
    if spec.padding[1] <= -spec.stride[0] or spec.padding[3] <= -spec.stride[1]:
        return ("output_padding - padding >= stride: output rows past every input's reach are not supported "
                "by the depthwise input-gradient kernel")
    return None


def depthwise_conv_transpose2d_forward(x, w, bias, out, spec: Conv2dSpec) -> None:
    torch.ops.cnnkern_cuda.depthwise_conv2d_bwd_input(x, w, out, list(spec.stride), list(spec.pad_tl),
                                                      list(spec.dilation))
    if bias is not None:
        # A second pass over out: the depthwise kernels have no bias in their input-gradient epilogue, and
        # depthwise transposed convs are rare enough not to warrant one.
        out.add_(bias.view(1, -1, 1, 1))


def why_not_group_pointwise(problem) -> str | None:
    """For the grouped pointwise conv ops and channel_shuffle (a GroupPointwiseProblem)."""
    if not _has_op("group_pointwise_conv2d_fwd"):
        return "this build of cnnkern._C has no group_pointwise_conv2d kernels (rebuild the extension)"
    return why_not_conv2d(problem)


def group_pointwise_conv2d_forward(x, w, bias, scale, shift, out, spec) -> None:
    cm = spec.channels
    torch.ops.cnnkern_cuda.group_pointwise_conv2d_fwd(x, w, bias, scale, shift, out, spec.groups, cm.shuffle_groups,
                                                      cm.offset, spec.relu)


def group_pointwise_conv2d_backward_input(grad_out, w, output, scale, grad_in, spec) -> None:
    cm = spec.channels
    torch.ops.cnnkern_cuda.group_pointwise_conv2d_bwd_input(grad_out, w, output, scale, grad_in, spec.groups,
                                                            cm.shuffle_groups, cm.offset)


def group_pointwise_conv2d_backward_weight(grad_out, x, output, scale, grad_w, spec) -> None:
    cm = spec.channels
    torch.ops.cnnkern_cuda.group_pointwise_conv2d_bwd_weight(grad_out, x, output, scale, grad_w, spec.groups,
                                                             cm.shuffle_groups, cm.offset)


def channel_map(src, dst, cmap, scatter: bool) -> None:
    torch.ops.cnnkern_cuda.channel_map(src, dst, cmap.shuffle_groups, cmap.offset, scatter)
