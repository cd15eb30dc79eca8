"""Argument normalisation and validation for 2-D convolutions.

Every public entry point and every custom op goes through ``conv2d_spec`` so that all backends see the
same, already-checked problem: explicit per-side padding and the output size. Error messages follow
PyTorch's wording so code that catches ``RuntimeError`` from ``F.conv2d`` keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cnnkern.problem.operands import Problem

IntOrPair = int | Sequence[int]


def _pair(value: IntOrPair, name: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise TypeError(f"conv2d: {name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, torch.SymInt):
        return (value, value)
    vals = tuple(value)
    if len(vals) == 1:
        return (vals[0], vals[0])
    if len(vals) != 2:
        raise RuntimeError(f"conv2d: expected {name} to be a single int or a pair of ints, got {list(vals)}")
    return (vals[0], vals[1])


@dataclass(frozen=True)
class Conv2dSpec:
    """A validated convolution: padding is explicit per side (top, bottom, left, right)."""

    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    groups: int
    out_hw: tuple[int, int]

    @property
    def pad_tl(self) -> tuple[int, int]:
        """The (top, left) padding that kernels need; bottom/right are implied by the output size."""
        return (self.padding[0], self.padding[2])

    @property
    def symmetric(self) -> bool:
        return self.padding[0] == self.padding[1] and self.padding[2] == self.padding[3]


def resolve_padding(
    padding: str | IntOrPair | Sequence[int],
    kernel_hw: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int, int, int]:
    """Turn ``padding`` ('same', 'valid', 'full', int, pair or 4 explicit sides) into (top, bottom, left, right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if any(s != 1 for s in stride):
                raise RuntimeError("padding='same' is not supported for strided convolutions")
            sides = []
            for k, d in zip(kernel_hw, dilation):
                total = d * (k - 1)
                # PyTorch puts the odd extra pixel on the bottom/right for even effective kernels.
                sides += [total // 2, total - total // 2]
            return tuple(sides)
        if padding == "full":
            # The seed notes' third convolution mode (cnnkern's extension of PyTorch's strings): every
            # position where kernel and input overlap gives an output, so dilation * (k - 1) on every side.
            return tuple(d * (k - 1) for k, d in zip(kernel_hw, dilation) for _side in (0, 1))
        raise RuntimeError(f"Invalid padding string '{padding}', should be one of {{'valid', 'same', 'full'}}")
    if not isinstance(padding, (int, torch.SymInt)) and len(tuple(padding)) == 4:
        top, bottom, left, right = tuple(padding)
        return (top, bottom, left, right)
    ph, pw = _pair(padding, "padding")
    return (ph, ph, pw, pw)


def check_ranks(op: str, input_shape: Sequence[int], weight_shape: Sequence[int], weight_layout: str) -> None:
    """Both 4-D (an unbatched input is batched by the caller); ``weight_layout`` names the weight's dims."""
    if len(input_shape) != 4:
        raise RuntimeError(
            f"Expected 3D (unbatched) or 4D (batched) input to {op}, but got input of size: {list(input_shape)}"
        )
    if len(weight_shape) != 4:
        raise RuntimeError(f"{op}: expected a 4-D weight {weight_layout}, got {list(weight_shape)}")


def stride_dilation_pairs(stride: IntOrPair, dilation: IntOrPair) -> tuple[tuple[int, int], tuple[int, int]]:
    """(stride, dilation) as pairs, the stride checked positive (dilation's message differs per op)."""
    stride_p = _pair(stride, "stride")
    dilation_p = _pair(dilation, "dilation")
    if any(s <= 0 for s in stride_p):
        raise RuntimeError(f"non-positive stride is not supported (got stride={list(stride_p)})")
    return stride_p, dilation_p


def check_groups_and_kernel(op: str, weight_shape: Sequence[int], groups) -> None:
    """groups > 0, a non-empty kernel, and weight dim 0 split evenly into groups: conv2d and transposed alike."""
    if isinstance(groups, bool) or not isinstance(groups, (int, torch.SymInt)) or groups <= 0:
        raise RuntimeError(f"non-positive groups is not supported (got groups={groups!r})")
    kh, kw = weight_shape[2], weight_shape[3]
    if kh <= 0 or kw <= 0:
        raise RuntimeError(f"{op}: kernel size must be positive, got weight of size {list(weight_shape)}")
    if weight_shape[0] < groups:  # ATen's check (so a weight without output channels is an error)
        raise RuntimeError(f"Given groups={groups}, expected weight to be at least {groups} at dimension 0, but got "
                           f"weight of size {list(weight_shape)} instead")
    if weight_shape[0] % groups != 0:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
            f"but got weight of size {list(weight_shape)} instead"
        )


def conv2d_spec(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    bias_shape: Sequence[int] | None,
    stride: IntOrPair,
    padding,
    dilation: IntOrPair,
    groups: int,
) -> Conv2dSpec:
    """Validate a batched (4-D) convolution problem and compute its output size."""
    check_ranks("conv2d", input_shape, weight_shape, "(C_out, C_in/groups, kH, kW)")
    stride_p, dilation_p = stride_dilation_pairs(stride, dilation)
    if any(d <= 0 for d in dilation_p):
        raise RuntimeError(f"dilation should be greater than zero (got dilation={list(dilation_p)})")
    check_groups_and_kernel("conv2d", weight_shape, groups)
    _n, c_in, h, w = input_shape
    c_out, cg_in, kh, kw = weight_shape
    if cg_in * groups != c_in:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {list(weight_shape)}, expected input{list(input_shape)} "
            f"to have {cg_in * groups} channels, but got {c_in} channels instead"
        )
    if bias_shape is not None and (len(bias_shape) != 1 or bias_shape[0] != c_out):
        raise RuntimeError(
            f"Given weight of size {list(weight_shape)}, expected bias to be 1-dimensional with {c_out} "
            f"elements, but got bias of size {list(bias_shape)} instead"
        )
    pads = resolve_padding(padding, (kh, kw), stride_p, dilation_p)
    if any(p < 0 for p in pads):
        raise RuntimeError(f"negative padding is not supported (got padding={list(pads)})")
    padded_h = h + pads[0] + pads[1]
    padded_w = w + pads[2] + pads[3]
    eff_kh = dilation_p[0] * (kh - 1) + 1
    eff_kw = dilation_p[1] * (kw - 1) + 1
    if padded_h < eff_kh or padded_w < eff_kw:
        raise RuntimeError(
            f"Calculated padded input size per channel: ({padded_h} x {padded_w}). "
            f"Kernel size: ({eff_kh} x {eff_kw}). Kernel size can't be greater than actual input size"
        )
    out_h = (padded_h - eff_kh) // stride_p[0] + 1
    out_w = (padded_w - eff_kw) // stride_p[1] + 1
    return Conv2dSpec(stride_p, pads, dilation_p, int(groups), (out_h, out_w))


def check_tensors(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, op: str = "conv2d"):
    """Dtype / device agreement, as F.conv2d demands it, with every tensor named."""
    if not isinstance(input, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError(f"{op}: input and weight must be tensors, got {type(input).__name__} and "
                        f"{type(weight).__name__}")
    tensors = [("input", input), ("weight", weight)] + ([("bias", bias)] if bias is not None else [])
    for name, t in tensors:
        if not t.is_floating_point():
            raise RuntimeError(f"{op}: expected floating-point tensors, but {name} has dtype {t.dtype}")
    for name, t in tensors[1:]:
        if t.dtype != input.dtype:
            raise RuntimeError(
                f"{op}: input ({input.dtype}) and {name} ({t.dtype}) should have the same dtype "
                f"(input size {list(input.shape)}, weight size {list(weight.shape)})"
            )
        if t.device != input.device:
            raise RuntimeError(
                f"{op}: expected all tensors to be on the same device, but input is on {input.device} "
                f"and {name} is on {t.device}"
            )


def is_depthwise(input_channels: int, weight_shape: Sequence[int], groups: int) -> bool:
    """Every input channel is its own group (the channel multiplier is ``C_out / C_in``)."""
    return groups == input_channels and len(weight_shape) == 4 and weight_shape[1] == 1


def kernel_family(op: str, input_channels: int, weight_shape: Sequence[int], groups: int) -> str:
    """Backend op name for a conv2d op: ``conv2d_fwd`` -> ``depthwise_conv2d_fwd`` for depthwise problems."""
    return f"depthwise_{op}" if is_depthwise(input_channels, weight_shape, groups) else op


# A conv2d kernel call's operands and its Conv2dSpec.
Conv2dProblem = Problem
