"""Memory formats and allocation: ATen's output-layout rule, and the one place every output is allocated.

ATen picks a convolution's output layout from *both* operands: channels_last when the input or the weight
"suggests" channels_last (``TensorBase::suggest_memory_format``, which reads the stride order, so a sliced
channels_last view still counts), except fp64 on CUDA, where cuDNN stays NCHW. A drop-in replacement must
return the same layout or a model's later ops change speed (or a ``view`` that worked stops working).
"""

from __future__ import annotations

import torch


def suggests_channels_last(t: torch.Tensor) -> bool:
    """ATen's ``is_channels_last_strides_2d`` for a 4-D tensor: strides ordered C < W < H < N.

    Ambiguous cases (size-1 dims, C == 1) fall back to contiguous exactly as ATen's rule does, so e.g. an
    (N, 1, H, W) tensor is never called channels_last.
    """
    if t.dim() != 4:
        return False
    sizes, strides = t.shape, t.stride()
    if strides[1] == 0:
        return False
    least = 0
    for d in (1, 3, 2, 0):
        if sizes[d] == 0 or strides[d] < least:
            return False
        if d == 0 and least == strides[1]:
            return False
        least = strides[d] * sizes[d] if sizes[d] > 1 else strides[d]
    return True


def format_of(t: torch.Tensor) -> torch.memory_format:
    """``t.suggest_memory_format()`` as ATen computes it (channels_last or contiguous)."""
    return torch.channels_last if suggests_channels_last(t) else torch.contiguous_format


def conv_output_format(input: torch.Tensor, weight: torch.Tensor) -> torch.memory_format:
    """The layout ATen gives a convolution's output (and its gradients): see the module docstring."""
    if input.device.type == "cuda" and input.dtype == torch.float64:
        return torch.contiguous_format
    if suggests_channels_last(input) or suggests_channels_last(weight):
        return torch.channels_last
    return torch.contiguous_format


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def empty(shape, like: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """Every tensor a cnnkern kernel writes is allocated here (tests NaN-fill it to catch unwritten elements).

    Only ``torch.empty`` through the caching allocator: nothing that synchronises, so CUDA-graph capture works.
    """
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=memory_format)
