"""Transposed conv2d as a problem: validation and the equivalent conv2d.

A transposed convolution is the input gradient of its "equivalent conv2d" (input = the transposed conv's
output y, output = its input x, same weight, stride, dilation and groups, top/left padding = ``padding``).
The backends get that conv2d's ``Conv2dSpec``; its bottom/right padding is ``padding - output_padding`` and
may be negative (output_padding rows past the last input's reach).
"""

from __future__ import annotations

from collections.abc import Sequence

from cnnkern.problem.conv2d import (
    Conv2dSpec,
    _pair,
    check_groups_and_kernel,
    check_ranks,
    stride_dilation_pairs,
)

_OP = "conv_transpose2d"


def _nonneg_pair(value, name: str, what: str) -> tuple[int, int]:
    if isinstance(value, str):
        raise TypeError(f"{_OP}(): argument '{name}' must be an int or a pair of ints, not str")
    pair = _pair(value, name)
    if any(v < 0 for v in pair):
        raise RuntimeError(f"negative {what} is not supported (got {name}={list(pair)})")
    return pair


def conv_transpose2d_spec(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    bias_shape: Sequence[int] | None,
    stride,
    padding,
    output_padding,
    dilation,
    groups: int,
) -> tuple[Conv2dSpec, tuple[int, int, int, int]]:
    """Validate a batched transposed conv; return the equivalent conv2d's spec and the output shape."""
    check_ranks(_OP, input_shape, weight_shape, "(C_in, C_out/groups, kH, kW)")
    stride_p, dilation_p = stride_dilation_pairs(stride, dilation)
    if any(d <= 0 for d in dilation_p):
        raise RuntimeError(f"dilation should be greater than zero, but got dilation_height: {dilation_p[0]}, "
                           f"dilation_width: {dilation_p[1]}")
    pad_p = _nonneg_pair(padding, "padding", "padding")
    out_pad = _nonneg_pair(output_padding, "output_padding", "output_padding")
    check_groups_and_kernel(_OP, weight_shape, groups)
    n, c_in, h, w = input_shape
    w_in, cg_out, kh, kw = weight_shape
    if w_in != c_in:
        raise RuntimeError(
            f"Given transposed=1, weight of size {list(weight_shape)}, expected input{list(input_shape)} "
            f"to have {w_in} channels, but got {c_in} channels instead"
        )
    c_out = cg_out * groups
    if bias_shape is not None and (len(bias_shape) != 1 or bias_shape[0] != c_out):
        raise RuntimeError(
            f"Given transposed=1, weight of size {list(weight_shape)}, expected bias to be 1-dimensional with "
            f"{c_out} elements, but got bias of size {list(bias_shape)} instead"
        )
    if any(op >= s and op >= d for op, s, d in zip(out_pad, stride_p, dilation_p)):
        raise RuntimeError(
            "output padding must be smaller than either stride or dilation, but got "
            f"output_padding_height: {out_pad[0]} output_padding_width: {out_pad[1]} "
            f"stride_height: {stride_p[0]} stride_width: {stride_p[1]} "
            f"dilation_height: {dilation_p[0]} dilation_width: {dilation_p[1]}"
        )
    out_hw = tuple((i - 1) * s - 2 * p + d * (k - 1) + op + 1
                   for i, s, p, d, k, op in zip((h, w), stride_p, pad_p, dilation_p, (kh, kw), out_pad))
    if any(o <= 0 for o in out_hw):
        raise RuntimeError(f"Given input size per channel: ({h} x {w}). Calculated output size per channel: "
                           f"({out_hw[0]} x {out_hw[1]}). Output size is too small")
    pads = (pad_p[0], pad_p[0] - out_pad[0], pad_p[1], pad_p[1] - out_pad[1])
    spec = Conv2dSpec(stride_p, pads, dilation_p, int(groups), (h, w))
    return spec, (n, c_out, out_hw[0], out_hw[1])


def equivalent_conv2d_padding(spec: Conv2dSpec, out_hw) -> tuple[list[int], tuple[int, int]]:
    """4-sided padding for the equivalent conv2d over y, and how many rows/columns of y it reaches.

    The conv2d ops reject negative padding; any bottom padding in [p - op, p - op + s - 1] gives the same
    output size, so a non-negative one is used where it exists, else the rows past the reach are cropped
    (they only get the bias's gradient).
    """
    pads, keep = [], []
    for axis in (0, 1):
        top, bottom = spec.padding[2 * axis], spec.padding[2 * axis + 1]
        stride = spec.stride[axis]
        if bottom >= 0:
            pads += [top, bottom]
            keep.append(out_hw[axis])
        elif bottom + stride - 1 >= 0:
            pads += [top, 0]
            keep.append(out_hw[axis])
        else:
            pads += [top, 0]
            keep.append(out_hw[axis] + bottom)
    return pads, tuple(keep)
