"""Validation and the problem description shared by the channel-shuffle ops.

A channel shuffle is a permutation of channels, so every op here is described by one ``ChannelMap``: the
op's own channels ``c`` sit at ``offset + c`` of a (possibly concatenated) channel order of ``total``
channels, which is then shuffled with ``shuffle_groups`` groups. ``ChannelMap.dest`` is where channel ``c``
lands in the stored tensor; kernels write (forward) or read (backward) there, so neither the concat nor the
shuffle ever exists as a tensor of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cnnkern.problem.conv2d import check_tensors, conv2d_spec
from cnnkern.problem.operands import Problem


@dataclass(frozen=True)
class ChannelMap:
    """Channel ``c`` of an op goes to ``dest(c)`` of a ``total``-channel tensor (see the module doc)."""

    total: int
    shuffle_groups: int = 1
    offset: int = 0

    @property
    def per_group(self) -> int:
        return self.total // self.shuffle_groups

    def dest(self, c):
        d = c + self.offset
        return (d % self.per_group) * self.shuffle_groups + d // self.per_group

    def dest_index(self, channels: int, device) -> torch.Tensor:
        if torch._C._len_torch_dispatch_stack() or torch.compiler.is_compiling():
            # While tracing (fake tensors, compile) the index is a traced value, never a cached one.
            return self.dest(torch.arange(channels, device=device))
        return _dest_index(self.total, self.shuffle_groups, self.offset, channels, torch.device(device))


    def source_index(self, channels: int, device) -> torch.Tensor:
        """For each of the ``total`` stored positions, the op channel (< ``channels``) stored there, or -1: the
        inverse of ``dest`` as an int32 index (a gather kernel writes whole stored rows from it)."""
        if torch._C._len_torch_dispatch_stack() or torch.compiler.is_compiling():
            return _source_index_of(self, channels, torch.device(device))
        return _source_index(self.total, self.shuffle_groups, self.offset, channels, torch.device(device))


def _source_index_of(cmap: ChannelMap, channels: int, device: torch.device) -> torch.Tensor:
    src = torch.full((cmap.total,), -1, dtype=torch.int32, device=device)
    return src.index_copy_(0, cmap.dest(torch.arange(channels, device=device)),
                           torch.arange(channels, dtype=torch.int32, device=device))


@functools.lru_cache(maxsize=256)
def _source_index(total: int, shuffle_groups: int, offset: int, channels: int, device: torch.device) -> torch.Tensor:
    # Cached like _dest_index; callers only read it.
    return _source_index_of(ChannelMap(total, shuffle_groups, offset), channels, device)


@functools.lru_cache(maxsize=256)
def _dest_index(total: int, shuffle_groups: int, offset: int, channels: int, device: torch.device) -> torch.Tensor:
    # Built once per map and device (a few small tensor ops otherwise paid on every call); callers only read it.
    return ChannelMap(total, shuffle_groups, offset).dest(torch.arange(channels, device=device))


@dataclass(frozen=True)
class GroupPointwiseSpec:
    """A grouped 1x1 convolution, its epilogue flags, and where its output channels are stored."""

    groups: int
    channels: ChannelMap
    relu: bool = False


# A grouped pointwise conv's or a channel map's operands and spec (``spec``: GroupPointwiseSpec or ChannelMap).
GroupPointwiseProblem = Problem


def check_shuffle_groups(channels: int, groups, what: str = "channels") -> None:
    """F.channel_shuffle's own checks and wording."""
    if isinstance(groups, bool) or not isinstance(groups, (int, torch.SymInt)):
        raise TypeError(f"channel_shuffle: groups must be an int, got {groups!r}")
    if groups <= 0:
        raise RuntimeError(f"Number of groups to divide channels in must be positive. Value of groups:{groups}")
    if channels % groups != 0:
        raise RuntimeError(f"Number of channels must be divisible by groups. Got {channels} {what} and "
                           f"{groups} groups.")


def check_group_pointwise(input: torch.Tensor, weight: torch.Tensor, bias, scale, shift, groups,
                          op: str = "group_pointwise_conv2d") -> None:
    """F.conv2d's checks (with its messages), the 1x1 weight, and the epilogue vectors."""
    check_tensors(input, weight, bias, op)
    if input.dim() != 4:
        raise RuntimeError(f"Expected 3D (unbatched) or 4D (batched) input to {op}, but got input of size: "
                           f"{list(input.shape)}")
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (1, 1):
        raise RuntimeError(f"{op}: expected a 1x1 weight of size (C_out, C_in/groups, 1, 1), but got weight of "
                           f"size {list(weight.shape)} for input of size {list(input.shape)}")
    conv2d_spec(input.shape, weight.shape, None if bias is None else bias.shape, 1, 0, 1, groups)
    for name, vec in (("scale", scale), ("shift", shift)):
        if vec is None:
            continue
        if not isinstance(vec, torch.Tensor) or vec.dim() != 1 or vec.shape[0] != weight.shape[0]:
            got = list(vec.shape) if isinstance(vec, torch.Tensor) else type(vec).__name__
            raise RuntimeError(f"{op}: expected {name} to be 1-dimensional with {weight.shape[0]} elements "
                               f"(one per output channel of weight {list(weight.shape)}), but got {got}")
        if not epilogue_dtype_ok(vec.dtype, input.dtype) or vec.device != input.device:
            raise RuntimeError(f"{op}: {name} ({vec.dtype}, {vec.device}) must be on the input's device "
                               f"({input.device}) and have the input's dtype ({input.dtype}), or float32 for "
                               "float16/bfloat16 input")


def epilogue_dtype_ok(vec_dtype: torch.dtype, input_dtype: torch.dtype) -> bool:
    """scale/shift: the input's dtype, or fp32 with fp16/bf16 input (folded BatchNorm parameters are fp32;
    every backend applies them on its fp32 accumulator)."""
    return vec_dtype == input_dtype or (vec_dtype == torch.float32 and input_dtype in (torch.float16,
                                                                                         torch.bfloat16))


def frozen_epilogue_error(name: str, op: str) -> RuntimeError:
    return RuntimeError(
        f"{op}: {name} requires grad, but the fused scale/shift epilogue is for inference or frozen "
        f"BatchNorm and has no gradient for it; pass {name}.detach(), or apply a trainable BatchNorm after "
        "an unfused convolution"
    )


def check_frozen_epilogue(named_vectors: dict, op: str) -> None:
    """The fused scale/shift is folded inference BatchNorm: it has no gradient of its own."""
    if not torch.is_grad_enabled():
        return
    for name, vec in named_vectors.items():
        if vec is not None and vec.requires_grad:
            raise frozen_epilogue_error(name, op)


def batched(input: torch.Tensor, op: str) -> tuple[torch.Tensor, bool]:
    if input.dim() not in (3, 4):
        raise RuntimeError(f"Expected 3D (unbatched) or 4D (batched) input to {op}, but got input of size: "
                           f"{list(input.shape)}")
    return (input.unsqueeze(0), True) if input.dim() == 3 else (input, False)


def out_shape(input_shape: Sequence[int], channels: int) -> tuple[int, int, int, int]:
    return (input_shape[0], channels, input_shape[2], input_shape[3])
