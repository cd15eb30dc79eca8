"""The three backends and, for each, the kernels it implements and the inputs it accepts.

This module only builds the table; the chooser (``cnnkern.ops.backend``) reads it. Importing it does not
import triton: the Triton kernel modules load when a Triton kernel is first asked about.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import cnnkern.reference.channel_shuffle as ref_channel_shuffle
import cnnkern.reference.conv2d as ref_conv2d
import cnnkern.reference.conv_transpose2d as ref_conv_transpose2d
import cnnkern.reference.group_pointwise_conv2d as ref_group_pointwise
from cnnkern import triton as triton_pkg
from cnnkern.ops import _cuda

BACKEND_NAMES = ("cuda", "triton", "reference")


@dataclass
class Backend:
    name: str
    why_unavailable: Callable[[], str | None]
    # kernel name -> (why_not(problem) -> Optional[str], implementation)
    ops: dict[str, tuple[Callable[..., str | None], Callable[..., None]]] = field(default_factory=dict)

    def register(self, op: str, why_not: Callable[..., str | None], impl: Callable[..., None]) -> None:
        self.ops[op] = (why_not, impl)

    def why_not(self, op: str, problem) -> str | None:
        reason = self.why_unavailable()
        if reason is not None:
            return reason
        if op not in self.ops:
            return f"the {self.name} backend has no {op} kernel"
        return self.ops[op][0](problem)


def _lazy_triton(module: str, name: str):
    """Import the Triton module (and triton itself) only when a Triton kernel is first needed."""

    def why_not(problem):
        return importlib.import_module(f"cnnkern.triton.{module}").why_not(problem)

    def impl(*args):
        return getattr(importlib.import_module(f"cnnkern.triton.{module}"), name)(*args)

    return why_not, impl


reference = Backend("reference", lambda: None)
reference.register("conv2d_fwd", ref_conv2d.why_not, ref_conv2d.forward)
reference.register("conv2d_bwd_input", ref_conv2d.why_not, ref_conv2d.backward_input)
reference.register("conv2d_bwd_weight", ref_conv2d.why_not, ref_conv2d.backward_weight)
# ATen picks its own depthwise kernels for groups == C_in, so the reference serves both families.
reference.register("depthwise_conv2d_fwd", ref_conv2d.why_not, ref_conv2d.forward)
reference.register("depthwise_conv2d_bwd_input", ref_conv2d.why_not, ref_conv2d.backward_input)
reference.register("depthwise_conv2d_bwd_weight", ref_conv2d.why_not, ref_conv2d.backward_weight)
reference.register("group_pointwise_conv2d_fwd", ref_group_pointwise.why_not, ref_group_pointwise.forward)
reference.register("group_pointwise_conv2d_bwd_input", ref_group_pointwise.why_not,
                   ref_group_pointwise.backward_input)
reference.register("group_pointwise_conv2d_bwd_weight", ref_group_pointwise.why_not,
                   ref_group_pointwise.backward_weight)
reference.register("channel_shuffle", ref_channel_shuffle.why_not, ref_channel_shuffle.channel_map)
for _op in ("conv_transpose2d_fwd", "depthwise_conv_transpose2d_fwd"):
    reference.register(_op, ref_conv_transpose2d.why_not, ref_conv_transpose2d.forward)

triton = Backend("triton", triton_pkg.why_unavailable)
for _family in ("conv2d", "depthwise_conv2d", "group_pointwise_conv2d"):
    triton.register(f"{_family}_fwd", *_lazy_triton(_family, "forward"))
    triton.register(f"{_family}_bwd_input", *_lazy_triton(_family, "backward_input"))
    triton.register(f"{_family}_bwd_weight", *_lazy_triton(_family, "backward_weight"))
triton.register("channel_shuffle", *_lazy_triton("channel_shuffle", "channel_map"))
triton.register("conv_transpose2d_fwd", *_lazy_triton("conv_transpose2d", "forward"))
triton.register("depthwise_conv_transpose2d_fwd", *_lazy_triton("conv_transpose2d", "forward_depthwise"))

cuda = Backend("cuda", _cuda.why_unavailable)
cuda.register("conv2d_fwd", _cuda.why_not_conv2d, _cuda.conv2d_forward)
cuda.register("conv2d_bwd_input", _cuda.why_not_conv2d, _cuda.conv2d_backward_input)
cuda.register("conv2d_bwd_weight", _cuda.why_not_conv2d, _cuda.conv2d_backward_weight)
cuda.register("depthwise_conv2d_fwd", _cuda.why_not_depthwise, _cuda.depthwise_conv2d_forward)
cuda.register("depthwise_conv2d_bwd_input", _cuda.why_not_depthwise, _cuda.depthwise_conv2d_backward_input)
cuda.register("depthwise_conv2d_bwd_weight", _cuda.why_not_depthwise, _cuda.depthwise_conv2d_backward_weight)
cuda.register("conv_transpose2d_fwd", _cuda.why_not_conv_transpose2d, _cuda.conv_transpose2d_forward)
cuda.register("depthwise_conv_transpose2d_fwd", _cuda.why_not_depthwise_conv_transpose2d,
              _cuda.depthwise_conv_transpose2d_forward)
cuda.register("group_pointwise_conv2d_fwd", _cuda.why_not_group_pointwise, _cuda.group_pointwise_conv2d_forward)
cuda.register("group_pointwise_conv2d_bwd_input", _cuda.why_not_group_pointwise,
              _cuda.group_pointwise_conv2d_backward_input)
cuda.register("group_pointwise_conv2d_bwd_weight", _cuda.why_not_group_pointwise,
              _cuda.group_pointwise_conv2d_backward_weight)
cuda.register("channel_shuffle", _cuda.why_not_group_pointwise, _cuda.channel_map)

BACKENDS: dict[str, Backend] = {b.name: b for b in (cuda, triton, reference)}
