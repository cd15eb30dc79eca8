"""Fused conv + BatchNorm + activation as a problem: validation, the activation table, the kernel contract.

``conv_bn_relu(x, weight, bias, bn_weight, bn_bias, running_mean, running_var, training, momentum, eps, ...)``
equals ``act(F.batch_norm(F.conv2d(x, weight, bias, ...), running_mean, running_var, bn_weight, bn_bias,
training, momentum, eps))``. Its kernels, by the name the ops ask each backend for:

conv families (``<backend>/conv2d.py``, ``<backend>/depthwise_conv2d.py``):
  ``<family>_fwd_act(x, w, bias, scale, shift, out, spec, activation)``
      out = act((conv(x, w) + bias) * scale + shift) on the fp32 accumulator, rounded once; bias, scale and
      shift are per output channel and may be None (scale/shift fp32, or the input's dtype).
  ``<family>_fwd_stats(x, w, bias, out, spec) -> partials``
      out = conv(x, w) + bias as usual, and the per-channel statistics of the values *as stored in out*:
      a tensor (T, C_out, 3) (fp64 for fp64 input, else fp32) of (count, mean, M2) over T disjoint sets of
      output pixels covering all N*OH*OW of them (Welford within a set; ``combine_partials`` merges them
      with Chan's formula, so a channel whose mean is far larger than its spread keeps its variance).
the ``conv_bn_relu`` family (``<backend>/conv_bn_relu.py``), elementwise and per-channel reductions over a
4-D tensor y (the conv output) in any layout, per-channel vectors fp32 (fp64 for fp64 y) of shape (C,):
  ``conv_bn_relu_normalize(y, a, b, out, activation)``        out = act(y * a + b)
  ``conv_bn_relu_bwd_reduce(grad, y, a, b, mean, invstd, activation) -> (sum_dz, sum_dz_xhat)``
      with dz = grad * act'(y * a + b) and xhat = (y - mean) * invstd, both sums (C,) in fp32 (fp64)
  ``conv_bn_relu_bwd_apply(grad, y, a, b, mean, invstd, k_dz, k_one, k_xhat, out, activation)``
      out = k_dz * dz + k_one + k_xhat * xhat (the BatchNorm input gradient for suitable k's)
"""

from __future__ import annotations

import torch

ACTIVATIONS = (None, "relu", "relu6", "silu")


def check_activation(activation) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"conv_bn_relu: unknown activation {activation!r}; choose one of "
                         f"{[a for a in ACTIVATIONS if a]} or None")


def bn_param_dtype_ok(param_dtype: torch.dtype, input_dtype: torch.dtype) -> bool:
    """BatchNorm parameters and statistics: the input's dtype, or fp32 with fp16/bf16 input (AMP keeps them
    fp32, as ``F.batch_norm`` allows)."""
    return param_dtype == input_dtype or (param_dtype == torch.float32 and input_dtype in (torch.float16,
                                                                                             torch.bfloat16))


def check_batch_norm(input: torch.Tensor, c_out: int, tensors: dict, training: bool) -> None:
    """BatchNorm's tensors against the conv's output channels, with messages naming what is wrong."""
    dtypes = set()
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] != c_out:
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise RuntimeError(f"conv_bn_relu: expected {name} to be 1-dimensional with {c_out} elements (one per "
                               f"output channel of the conv), but got {got}")
        if t.device != input.device:
            raise RuntimeError(f"conv_bn_relu: {name} is on {t.device} but the input is on {input.device}")
        if not bn_param_dtype_ok(t.dtype, input.dtype):
            raise RuntimeError(f"conv_bn_relu: {name} has dtype {t.dtype}; BatchNorm parameters and statistics "
                               f"must have the input's dtype ({input.dtype}), or float32 for float16/bfloat16 "
                               "input")
        dtypes.add(t.dtype)
    if len(dtypes) > 1:
        raise RuntimeError(f"conv_bn_relu: the BatchNorm parameters and running statistics must share one dtype, "
                           f"got {sorted(str(d) for d in dtypes)}")
    have_mean, have_var = tensors.get("running_mean") is not None, tensors.get("running_var") is not None
    if have_mean != have_var:
        raise RuntimeError("conv_bn_relu: running_mean and running_var must both be given or both be None")
    if not training and not have_mean:
        raise RuntimeError("conv_bn_relu: running_mean must be defined in evaluation mode")


def combine_partials(partials: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(count, mean, M2) per set and channel -> (count, mean, biased variance) per channel, by Chan's
    parallel formula: M2 = sum(M2_i) + sum(n_i * (mean_i - mean)^2), which never subtracts two large sums.
    Runs on the device (no host synchronisation)."""
    n_i, mean_i, m2_i = partials.unbind(-1)
    n = n_i.sum(0)
    safe_n = n.clamp_min(1)
    mean = (n_i * mean_i).sum(0) / safe_n
    m2 = m2_i.sum(0) + (n_i * (mean_i - mean) ** 2).sum(0)
    return n, mean, m2 / safe_n
