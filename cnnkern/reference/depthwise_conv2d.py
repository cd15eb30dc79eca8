"""Reference depthwise conv2d: ATen picks its own depthwise kernels for groups == C_in, so the general
reference conv serves this family too."""

from __future__ import annotations

from cnnkern.reference.conv2d import (  # noqa: F401
    backward_input,
    backward_weight,
    forward,
    forward_act,
    forward_stats,
    why_not,
)

KERNELS = {"depthwise_conv2d_fwd": forward, "depthwise_conv2d_bwd_input": backward_input,
           "depthwise_conv2d_bwd_weight": backward_weight, "depthwise_conv2d_fwd_act": forward_act,
           "depthwise_conv2d_fwd_stats": forward_stats}
