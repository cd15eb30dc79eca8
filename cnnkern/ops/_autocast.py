"""Autocast for the public cnnkern functions, as ATen does it for its convolutions.

Under ``torch.autocast`` ATen runs conv2d / conv_transpose2d in the autocast dtype (they are on its
lower-precision list), so a drop-in replacement must too: otherwise a converted model silently trains in
fp32 under AMP. The custom ops themselves have no autocast kernel; the public functions cast their floating
tensor arguments before calling them, which eager mode and ``torch.compile`` both see.
"""

from __future__ import annotations

import torch

# One C call answers "is autocast on for any device" (~0.1 us); the per-device questions cost more.
any_enabled = getattr(torch._C, "_is_any_autocast_enabled", None) or (
    lambda: torch.is_autocast_enabled("cuda") or torch.is_autocast_enabled("cpu"))


def autocast_dtype(input) -> torch.dtype | None:
    """The dtype autocast wants for a convolution on ``input``'s device, or None when it is off."""
    if not isinstance(input, torch.Tensor):
        return None
    device_type = input.device.type
    if device_type not in ("cuda", "cpu") or not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def cast(dtype: torch.dtype | None, *tensors):
    """Floating tensors cast to ``dtype`` (None and non-floating arguments pass through); the inputs when
    autocast is off, and fp64 stays fp64 as ATen keeps it."""
    if dtype is None:
        return tensors
    return tuple(t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point()
                 and t.dtype != torch.float64 else t for t in tensors)
