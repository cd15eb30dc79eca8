"""Reference grouped 1x1 conv with the fused epilogue and shuffled store, on ATen.

The kernels' semantics spelled out in plain tensor ops: z = conv + bias; z = z * scale + shift; relu(z);
then channel ``c`` is stored at ``ChannelMap.dest(c)``. The backward reads the gradient back through the
same map, masks it where the stored output is not positive (ReLU) and multiplies by the scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnkern.problem.channel_map import ChannelMap, GroupPointwiseProblem, GroupPointwiseSpec


def group_pointwise_conv2d(input, weight, bias=None, groups=1, shuffle_groups=None, *, scale=None, shift=None,
                           relu=False):
    """The unfused composition the fused op must equal (any dtype; pass fp64 tensors for the baseline)."""
    z = F.conv2d(input, weight, bias, groups=groups)
    if scale is not None:
        z = z * scale.view(1, -1, 1, 1)
    if shift is not None:
        z = z + shift.view(1, -1, 1, 1)
    if relu:
        z = F.relu(z)
    return F.channel_shuffle(z, shuffle_groups) if shuffle_groups else z


def why_not(problem: GroupPointwiseProblem) -> str | None:
    if not problem.dtype.is_floating_point:
        return f"dtype {problem.dtype} is not a floating-point type"
    return None


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def forward(x, w, bias, scale, shift, out, spec: GroupPointwiseSpec) -> None:
    acc = _acc_dtype(x.dtype)
    # The epilogue runs on the fp32 accumulator, as the kernels do, and is rounded once at the store.
    z = F.conv2d(x, w, bias, groups=spec.groups).to(acc)
    if scale is not None:
        z = z * scale.to(acc).view(1, -1, 1, 1)
    if shift is not None:
        z = z + shift.to(acc).view(1, -1, 1, 1)
    if spec.relu:
        z = F.relu(z)
    out.index_copy_(1, spec.channels.dest_index(w.shape[0], out.device), z.to(out.dtype))


def _grad_z(grad_out, output, scale, c_out: int, cmap: ChannelMap):
    """The gradient with respect to the pre-epilogue conv output, in the conv's own channel order."""
    dest = cmap.dest_index(c_out, grad_out.device)
    g = grad_out.index_select(1, dest)
    if output is not None:
        g = torch.where(output.index_select(1, dest) > 0, g, 0)
    if scale is not None:  # in fp32 (scale may be fp32 with fp16/bf16 gradients), rounded once
        acc = _acc_dtype(g.dtype)
        g = (g.to(acc) * scale.to(acc).view(1, -1, 1, 1)).to(g.dtype)
    return g


def backward_input(grad_out, w, output, scale, grad_in, spec: GroupPointwiseSpec) -> None:
    g = _grad_z(grad_out, output, scale, w.shape[0], spec.channels)
    grad_in.copy_(torch.nn.grad.conv2d_input(grad_in.shape, w, g, groups=spec.groups))


def backward_weight(grad_out, x, output, scale, grad_w, spec: GroupPointwiseSpec) -> None:
    g = _grad_z(grad_out, output, scale, grad_w.shape[0], spec.channels)
    grad_w.copy_(torch.nn.grad.conv2d_weight(x, grad_w.shape, g, groups=spec.groups))


# The kernels this module gives the registry (cnnkern.ops.registry), by the name the ops ask for.
KERNELS = {"group_pointwise_conv2d_fwd": forward, "group_pointwise_conv2d_bwd_input": backward_input,
           "group_pointwise_conv2d_bwd_weight": backward_weight}
