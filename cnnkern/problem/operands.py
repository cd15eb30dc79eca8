"""What a backend is asked about: the operands of one kernel call (outputs excluded) and the validated spec.

Backends decide from it whether they can run a problem (``why_not``): dtype, device, and what the spec says.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Problem:
    tensors: tuple[torch.Tensor, ...]
    spec: object

    @property
    def dtype(self) -> torch.dtype:
        return self.tensors[0].dtype

    @property
    def device(self) -> torch.device:
        return self.tensors[0].device
