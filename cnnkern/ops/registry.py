"""Registers the three backends and, for each, the ops it implements and the inputs it accepts."""

from __future__ import annotations

import cnnkern.reference.conv2d as ref_conv2d
from cnnkern import triton as triton_pkg
from cnnkern.ops import _cuda
from cnnkern.ops.backend import Backend, register_backend


def _lazy_triton(name: str):
    """Import the Triton module (and triton itself) only when a Triton kernel is first needed."""

    def why_not(problem):
        from cnnkern.triton import conv2d as mod

        return mod.why_not(problem)

    def impl(*args):
        from cnnkern.triton import conv2d as mod

        return getattr(mod, name)(*args)

    return why_not, impl


reference = register_backend(Backend("reference", lambda: None))
reference.register("conv2d_fwd", ref_conv2d.why_not, ref_conv2d.forward)
reference.register("conv2d_bwd_input", ref_conv2d.why_not, ref_conv2d.backward_input)
reference.register("conv2d_bwd_weight", ref_conv2d.why_not, ref_conv2d.backward_weight)

triton = register_backend(Backend("triton", triton_pkg.why_unavailable))
triton.register("conv2d_fwd", *_lazy_triton("forward"))
triton.register("conv2d_bwd_input", *_lazy_triton("backward_input"))
triton.register("conv2d_bwd_weight", *_lazy_triton("backward_weight"))

cuda = register_backend(Backend("cuda", _cuda.why_unavailable))
cuda.register("conv2d_fwd", _cuda.why_not_conv2d, _cuda.conv2d_forward)
cuda.register("conv2d_bwd_input", _cuda.why_not_conv2d, _cuda.conv2d_backward_input)
cuda.register("conv2d_bwd_weight", _cuda.why_not_conv2d, _cuda.conv2d_backward_weight)
