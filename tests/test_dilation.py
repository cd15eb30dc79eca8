"""Dilation 1-4 combined with stride > 1 on every conv op (direct, depthwise, transposed): forward and all
gradients against the fp64 reference. Dilation and stride differ per axis so a swapped index fails."""

import pytest
import torch
import torch.nn.functional as F
from _conv_cases import backend_params, make_input
from tolerances import assert_matches_reference

import cnnkern

# op, input shape, C_out, kernel, stride, dilation, padding, extra kwargs, dtype, layout
CASES = [
    pytest.param("conv2d", (1, 3, 13, 11), 4, (3, 2), (2, 3), (4, 2), (2, 1), {"groups": 1}, torch.float32,
                 "nchw", id="conv2d-d4x2-s2x3"),
    pytest.param("conv2d", (2, 4, 9, 12), 6, (2, 3), (3, 2), (3, 4), (1, 3), {"groups": 2}, torch.float16,
                 "channels_last", id="conv2d-d3x4-s3x2-g2"),
    pytest.param("depthwise", (1, 3, 12, 13), 6, (3, 3), (2, 2), (4, 1), (3, 1), {}, torch.float32, "strided",
                 id="depthwise-d4x1-s2-m2"),
    pytest.param("depthwise", (2, 4, 10, 9), 4, (2, 3), (3, 2), (2, 3), (0, 2), {}, torch.bfloat16,
                 "channels_last", id="depthwise-d2x3-s3x2"),
    pytest.param("transposed", (1, 4, 4, 3), 6, (3, 2), (2, 3), (4, 3), (2, 1), {"groups": 2,
                 "output_padding": (3, 1)}, torch.float32, "nchw", id="transposed-d4x3-s2x3-op3"),
    pytest.param("transposed", (2, 3, 3, 4), 3, (2, 3), (3, 2), (1, 4), (0, 3), {"groups": 3,
                 "output_padding": (2, 3)}, torch.float16, "channels_last", id="transposed-depthwise-d1x4-s3x2"),
]


def _call(op, lib, x, w, b, stride, dilation, padding, extra):
    if op == "transposed":
        fn = cnnkern.conv_transpose2d if lib == "cnnkern" else F.conv_transpose2d
        return fn(x, w, b, stride=stride, padding=padding, dilation=dilation, **extra)
    groups = x.shape[1] if op == "depthwise" else extra["groups"]
    if lib == "cnnkern" and op == "depthwise":
        return cnnkern.depthwise_conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    fn = cnnkern.conv2d if lib == "cnnkern" else F.conv2d
    return fn(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _weight_shape(op, c_in, c_out, kernel, extra):
    if op == "transposed":
        return (c_in, c_out // extra["groups"], *kernel)
    if op == "depthwise":
        return (c_out, 1, *kernel)
    return (c_out, c_in // extra["groups"], *kernel)


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("op,shape,c_out,kernel,stride,dilation,padding,extra,dtype,layout", CASES)
def test_dilation_with_stride(device, backend, op, shape, c_out, kernel, stride, dilation, padding, extra, dtype,
                              layout):
    x = make_input(shape, dtype, device, layout)
    w = (torch.randn(_weight_shape(op, shape[1], c_out, kernel, extra), device=device) * 0.5).to(dtype)
    b = torch.randn(c_out, device=device, dtype=dtype)
    leaves = [t.detach().requires_grad_() for t in (x, w, b)]
    with cnnkern.use_backend(backend):
        y = _call(op, "cnnkern", *leaves, stride, dilation, padding, extra)
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(2)).to(y)
        grads = torch.autograd.grad(y, leaves, g)
    results = []
    for dt in (torch.float64, dtype):
        # fp16 convolution is not on every CPU path: fp32 rounded to fp16 stands in for PyTorch's own error.
        compute = torch.float32 if (dt == torch.float16 and device == "cpu") else dt
        ref_leaves = [t.detach().to(dt).requires_grad_() for t in (x, w, b)]
        ref = _call(op, "torch", *[t.to(compute) for t in ref_leaves], stride, dilation, padding, extra)
        ref_grads = torch.autograd.grad(ref, ref_leaves, g.to(compute))
        results.append((ref.to(dt), [r.to(dt) for r in ref_grads]))
    (y64, g64), (ydt, gdt) = results
    assert_matches_reference(y, y64, ydt, "output")
    for name, got, want, theirs in zip(("grad_input", "grad_weight", "grad_bias"), grads, g64, gdt):
        assert_matches_reference(got, want, theirs, name)
