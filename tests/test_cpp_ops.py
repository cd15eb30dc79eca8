"""The functional C++ ops ``torch.ops.cnnkern_cuda.*`` (conv2d and its backward ops, conv_transpose2d, the
grouped-pointwise family, channel_shuffle, the shuffled-concat ops) and their C++ autograd.

On the CPU these run the ops' ATen kernels (csrc/cpu/), which exist so that the schemas, the Meta kernels and
the C++ autograd formulas (first and second order) can be checked on machines without a GPU. The CUDA
kernels run the same checks and output specs; their tests are marked ``gpu``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck as _gradcheck
from torch.autograd import gradgradcheck as _gradgradcheck

from cnnkern._ext import extension, why_no_extension

if extension() is None or not hasattr(torch.ops.cnnkern_cuda, "conv2d"):
    pytest.skip(f"the C++ ops are not built: {why_no_extension() or 'rebuild cnnkern._C'}",
                allow_module_level=True)

C = torch.ops.cnnkern_cuda
CL = torch.channels_last
F64, F32 = torch.float64, torch.float32
LAYOUTS = ("nchw", "channels_last", "view")


# fast_mode checks a random projection of the Jacobian (as PyTorch's own OpInfo tests do for slow ops): the
# same bugs are caught in a fraction of the time.
def gradcheck(fn, inputs):
    return _gradcheck(fn, inputs, fast_mode=True)


def gradgradcheck(fn, inputs):
    return _gradgradcheck(fn, inputs, fast_mode=True)


def make(shape, layout="nchw", dtype=F64, device="cpu", requires_grad=False):
    """A tensor of ``shape`` laid out as NCHW, channels_last, or a strided view into a larger tensor."""
    if layout == "view":
        n, c, h, w = shape
        t = torch.randn(n, c + 2, h + 1, 2 * w, dtype=dtype, device=device)[:, 1:c + 1, 1:, ::2]
    else:
        t = torch.randn(shape, dtype=dtype, device=device)
        if layout == "channels_last":
            t = t.contiguous(memory_format=CL)
    return t.requires_grad_(requires_grad)


def is_cl(t):
    return t.dim() == 4 and t.is_contiguous(memory_format=CL) and not t.is_contiguous()


def aten_format(t):
    """The layout ATen's result has, in the terms the ops' rule uses."""
    return "channels_last" if is_cl(t) else "contiguous" if t.is_contiguous() else "other"


# ------------------------------------------------------------------------------------------------ conv2d
# (N, C_in, H, W, C_out, kH, kW, stride, padding (top, bottom, left, right), dilation, groups)
CONV_CASES = {
    "odd": (2, 3, 7, 9, 5, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    "groups2_asym": (1, 4, 8, 7, 6, 3, 2, (2, 1), (0, 1, 1, 0), (1, 1), 2),
    "depthwise_m2": (2, 4, 9, 9, 8, 3, 3, (2, 2), (2, 2, 2, 2), (2, 2), 4),
    "depthwise_rect": (1, 5, 6, 5, 5, 5, 1, (1, 1), (2, 2, 0, 0), (1, 1), 5),
    "pointwise_strided": (3, 2, 5, 4, 3, 1, 1, (1, 2), (0, 0, 0, 0), (1, 1), 1),
    "dilated_same_even": (1, 2, 6, 6, 2, 2, 2, (1, 1), (1, 0, 1, 0), (2, 1), 1),
}


def conv_operands(case, layout="nchw", dtype=F64, device="cpu", requires_grad=False, bias=True):
    n, c_in, h, w, c_out, kh, kw, stride, pad, dil, groups = case
    x = make((n, c_in, h, w), layout, dtype, device, requires_grad)
    wt = make((c_out, c_in // groups, kh, kw), "nchw", dtype, device, requires_grad)
    b = torch.randn(c_out, dtype=dtype, device=device, requires_grad=requires_grad) if bias else None
    return x, wt, b, list(stride), list(pad), list(dil), groups


def conv2d_ref(x, w, b, stride, pad, dil, groups):
    top, bottom, left, right = pad
    return F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride, 0, dil, groups)


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv2d_matches_aten(case, layout, dtype):
    x, w, b, *conf = conv_operands(case, layout, dtype)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == F32 else {}
    torch.testing.assert_close(C.conv2d(x, w, b, *conf), conv2d_ref(x, w, b, *conf), **tol)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv2d_grads_match_aten(case, layout):
    x, w, b, *conf = conv_operands(case, layout, requires_grad=True)
    out = C.conv2d(x, w, b, *conf)
    g = torch.randn_like(out)
    ours = torch.autograd.grad(out, (x, w, b), g)
    torch.testing.assert_close(ours, torch.autograd.grad(conv2d_ref(x, w, b, *conf), (x, w, b), g))
    # The backward ops called directly agree, and their results follow the requested layout.
    stride, pad, dil, groups = conf
    gi = C.conv2d_backward_input(g, w, list(x.shape), stride, pad, dil, groups, True)
    gw = C.conv2d_backward_weight(g, x, list(w.shape), stride, pad, dil, groups, True)
    torch.testing.assert_close((gi, gw), ours[:2])
    assert is_cl(gi) or gi.shape[1] == 1 and gi.is_contiguous(memory_format=CL)
    assert gw.is_contiguous(memory_format=CL)
    assert C.conv2d_backward_weight(g, x, list(w.shape), stride, pad, dil, groups).is_contiguous()


@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv2d_gradcheck_and_gradgradcheck(case):
    x, w, b, *conf = conv_operands(case, requires_grad=True)
    fn = lambda x, w, b: C.conv2d(x, w, b, *conf)
    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("case", [CONV_CASES["groups2_asym"], CONV_CASES["depthwise_m2"]], ids=["gemm", "dw"])
def test_conv2d_backward_ops_are_differentiable(case):
    """The backward ops' own derivatives (conv2d and the other backward op): third-order derivatives of a conv."""
    x, w, _, stride, pad, dil, groups = conv_operands(case, requires_grad=True)
    go = torch.randn_like(conv2d_ref(x, w, None, stride, pad, dil, groups)).requires_grad_()
    conf = (stride, pad, dil, groups)
    bwd_in = lambda go, w: C.conv2d_backward_input(go, w, list(x.shape), *conf, False)
    bwd_w = lambda go, x: C.conv2d_backward_weight(go, x, list(w.shape), *conf, False)
    assert gradcheck(bwd_in, (go, w)) and gradgradcheck(bwd_in, (go, w))
    assert gradcheck(bwd_w, (go, x)) and gradgradcheck(bwd_w, (go, x))


def test_conv2d_double_backward_matches_aten():
    """A gradient penalty (WGAN-GP style): d/dw of |d out / d x|^2 through create_graph=True."""
    x, w, b, *conf = conv_operands(CONV_CASES["groups2_asym"], requires_grad=True)
    results = []
    for fn in (C.conv2d, conv2d_ref):
        (gx,) = torch.autograd.grad(fn(x, w, b, *conf).square().sum(), (x,), create_graph=True)
        results.append(torch.autograd.grad(gx.square().sum(), (w, b), allow_unused=True))
    torch.testing.assert_close(results[0][0], results[1][0])


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("x_layout,w_layout", [("nchw", "nchw"), ("channels_last", "nchw"),
                                               ("nchw", "channels_last"), ("channels_last", "channels_last")])
def test_conv2d_memory_formats_follow_aten(x_layout, w_layout, dtype):
    x = make((2, 4, 6, 5), x_layout, dtype, requires_grad=True)
    w = make((6, 4, 3, 3), w_layout, dtype, requires_grad=True)
    ours = C.conv2d(x, w, None, [1, 1], [1, 1, 1, 1], [1, 1], 1)
    ref = F.conv2d(x, w, None, 1, 1)
    assert aten_format(ours) == aten_format(ref)
    g = torch.randn_like(ref)
    # Each gradient in its operand's layout. ATen's own choice for the intermediate gradient depends on the
    # backend it picks (on the CPU oneDNN and the slow path differ with the shape; cuDNN looks at both
    # operands), but its AccumulateGrad copies it into the operand's layout: what ends up in .grad.
    gx, gw = torch.autograd.grad(ours, (x, w), g)
    assert aten_format(gx) == aten_format(x) and aten_format(gw) == aten_format(w)
    ref.backward(g)
    assert aten_format(x.grad) == aten_format(x) and aten_format(w.grad) == aten_format(w)


def test_conv2d_zero_input_channels_like_aten():
    x = torch.randn(2, 0, 5, 5, dtype=F64, requires_grad=True)
    w = torch.randn(4, 0, 3, 3, dtype=F64, requires_grad=True)
    b = torch.randn(4, dtype=F64, requires_grad=True)
    out = C.conv2d(x, w, b, [2, 2], [1, 1, 1, 1], [1, 1], 1)
    ref = F.conv2d(x, w, b, 2, 1)
    assert out.shape == ref.shape == (2, 0, 3, 3)
    gx, gw, gb = torch.autograd.grad(out.sum(), (x, w, b), allow_unused=True)
    assert gx.shape == x.shape and gw.shape == w.shape
    torch.testing.assert_close(gb, torch.zeros_like(b))


def test_empty_batch_conv_ops():
    for case in CONV_CASES.values():
        x, w, b, *conf = conv_operands(case, requires_grad=True)
        x = x[:0].detach().requires_grad_()
        out = C.conv2d(x, w, b, *conf)
        assert out.shape == conv2d_ref(x, w, b, *conf).shape
        gx, gw, gb = torch.autograd.grad(out.sum(), (x, w, b))
        assert gx.shape == x.shape and not gw.any() and not gb.any()
    x, w = torch.randn(0, 4, 5, 5, requires_grad=True), torch.randn(4, 3, 3, 3, requires_grad=True)
    out = C.conv_transpose2d(x, w, None, [2, 2], [1, 1], [1, 1], [1, 1], 1)
    assert out.shape == F.conv_transpose2d(x, w, None, 2, 1, 1).shape
    assert not torch.autograd.grad(out.sum(), w)[0].any()


# ------------------------------------------------------------------------------------- conv_transpose2d
# (N, C_in, H, W, C_out, kH, kW, stride, padding, output_padding, dilation, groups)
TCONV_CASES = {
    "stride2": (2, 4, 5, 4, 3, 3, 3, (2, 2), (1, 1), (1, 0), (1, 1), 1),
    "groups2_dilated": (1, 4, 4, 5, 6, 4, 3, (2, 1), (1, 0), (1, 0), (1, 2), 2),
    "depthwise": (2, 3, 4, 4, 3, 3, 3, (1, 1), (1, 1), (0, 0), (1, 1), 3),
    "output_padding_past_reach": (1, 2, 3, 3, 2, 3, 3, (2, 2), (0, 0), (2, 2), (3, 3), 2),
}


def tconv_operands(case, layout="nchw", dtype=F64, requires_grad=False):
    n, c_in, h, w, c_out, kh, kw, stride, pad, out_pad, dil, groups = case
    x = make((n, c_in, h, w), layout, dtype, requires_grad=requires_grad)
    wt = make((c_in, c_out // groups, kh, kw), "nchw", dtype, requires_grad=requires_grad)
    b = torch.randn(c_out, dtype=dtype, requires_grad=requires_grad)
    return x, wt, b, list(stride), list(pad), list(out_pad), list(dil), groups


def tconv_ref(x, w, b, stride, pad, out_pad, dil, groups):
    return F.conv_transpose2d(x, w, b, stride, pad, out_pad, groups, dil)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", TCONV_CASES.values(), ids=TCONV_CASES.keys())
def test_conv_transpose2d_matches_aten(case, layout):
    x, w, b, *conf = tconv_operands(case, layout, requires_grad=True)
    out = C.conv_transpose2d(x, w, b, *conf)
    ref = tconv_ref(x, w, b, *conf)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, (x, w, b), g), torch.autograd.grad(ref, (x, w, b), g))
    x32, w32, b32 = (t.detach().float() for t in (x, w, b))
    torch.testing.assert_close(C.conv_transpose2d(x32, w32, b32, *conf), tconv_ref(x32, w32, b32, *conf),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", TCONV_CASES.values(), ids=TCONV_CASES.keys())
def test_conv_transpose2d_gradcheck_and_gradgradcheck(case):
    x, w, b, *conf = tconv_operands(case, requires_grad=True)
    fn = lambda x, w, b: C.conv_transpose2d(x, w, b, *conf)
    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("x_layout,w_layout", [("channels_last", "nchw"), ("nchw", "channels_last")])
def test_conv_transpose2d_memory_formats_follow_aten(x_layout, w_layout):
    x = make((2, 4, 5, 5), x_layout, F32, requires_grad=True)
    w = make((4, 3, 3, 3), w_layout, F32, requires_grad=True)
    ours = C.conv_transpose2d(x, w, None, [2, 2], [1, 1], [1, 1], [1, 1], 1)
    ref = F.conv_transpose2d(x, w, None, 2, 1, 1)
    assert aten_format(ours) == aten_format(ref)
    g = torch.randn_like(ref)
    gx, gw = torch.autograd.grad(ours, (x, w), g)
    assert aten_format(gx) == aten_format(x) and aten_format(gw) == aten_format(w)


def test_conv_transpose2d_rejects_a_weight_without_input_channels_like_aten():
    x, w = torch.randn(2, 0, 5, 5), torch.randn(0, 4, 3, 3)
    with pytest.raises(RuntimeError) as aten:
        F.conv_transpose2d(x, w)
    with pytest.raises(RuntimeError) as ours:
        C.conv_transpose2d(x, w, None, [1, 1], [0, 0], [0, 0], [1, 1], 1)
    assert str(ours.value).splitlines()[0] == str(aten.value).splitlines()[0]


# -------------------------------------------------------------------------------- grouped pointwise
# (N, C_in, H, W, C_out, groups, shuffle_groups, relu, bias, scale, shift)
GPW_CASES = {
    "g3_shuffle3": (2, 6, 5, 4, 6, 3, 3, False, True, False, False),
    "g4_bn_relu": (1, 8, 3, 5, 12, 4, 4, True, True, True, True),
    "g2_scale_relu": (2, 4, 4, 3, 6, 2, 1, True, False, True, False),
    "g1_shift": (1, 3, 2, 2, 4, 1, 2, False, False, False, True),
}


def gpw_operands(case, layout="nchw", dtype=F64, requires_grad=False):
    n, c_in, h, w, c_out, groups, sg, relu, has_b, has_scale, has_shift = case
    x = make((n, c_in, h, w), layout, dtype, requires_grad=requires_grad)
    wt = make((c_out, c_in // groups, 1, 1), "nchw", dtype, requires_grad=requires_grad)
    b = torch.randn(c_out, dtype=dtype, requires_grad=requires_grad) if has_b else None
    scale = torch.rand(c_out, dtype=dtype) + 0.5 if has_scale else None
    shift = torch.randn(c_out, dtype=dtype) if has_shift else None
    return x, wt, b, scale, shift, groups, sg, relu


def pointwise_ref(x, w, b, scale, shift, groups, relu):
    z = F.conv2d(x, w, b, groups=groups)
    if scale is not None:
        z = z * scale.view(1, -1, 1, 1)
    if shift is not None:
        z = z + shift.view(1, -1, 1, 1)
    return F.relu(z) if relu else z


def gpw_ref(x, w, b, scale, shift, groups, sg, relu):
    return F.channel_shuffle(pointwise_ref(x, w, b, scale, shift, groups, relu), sg)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", GPW_CASES.values(), ids=GPW_CASES.keys())
def test_group_pointwise_conv2d_matches_reference(case, layout):
    x, w, b, scale, shift, groups, sg, relu = gpw_operands(case, layout, requires_grad=True)
    out = C.group_pointwise_conv2d(x, w, b, scale, shift, groups, sg, relu)
    ref = gpw_ref(x, w, b, scale, shift, groups, sg, relu)
    torch.testing.assert_close(out, ref)
    assert aten_format(out) == aten_format(F.conv2d(x, w, groups=groups))
    g = torch.randn_like(ref)
    params = tuple(t for t in (x, w, b) if t is not None)
    torch.testing.assert_close(torch.autograd.grad(out, params, g), torch.autograd.grad(ref, params, g))
    x32, w32 = x.detach().float(), w.detach().float()
    b32, s32, t32 = (None if t is None else t.detach().float() for t in (b, scale, shift))
    torch.testing.assert_close(C.group_pointwise_conv2d(x32, w32, b32, s32, t32, groups, sg, relu),
                               gpw_ref(x32, w32, b32, s32, t32, groups, sg, relu), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", GPW_CASES.values(), ids=GPW_CASES.keys())
def test_group_pointwise_conv2d_gradcheck_and_gradgradcheck(case):
    x, w, b, scale, shift, groups, sg, relu = gpw_operands(case, requires_grad=True)
    if b is None:
        b = torch.randn(w.shape[0], dtype=F64, requires_grad=True)
    fn = lambda x, w, b: C.group_pointwise_conv2d(x, w, b, scale, shift, groups, sg, relu)
    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


def gpw_backward_operands():
    """A conv of 4 channels stored at offset 6 of 10 shuffled channels (a shuffled concat), with a ReLU mask."""
    go = torch.randn(2, 10, 3, 4, dtype=F64, requires_grad=True)
    w = torch.randn(4, 3, 1, 1, dtype=F64, requires_grad=True)
    x = torch.randn(2, 6, 3, 4, dtype=F64, requires_grad=True)
    output = torch.randn(2, 10, 3, 4, dtype=F64)
    scale = torch.rand(4, dtype=F64) + 0.5
    return go, w, x, output, scale


def test_group_pointwise_backward_ops_match_formula():
    go, w, x, output, scale = gpw_backward_operands()
    dest = torch.arange(10).view(5, 2).t().reshape(-1)[6:10]  # ChannelMap(10, 2, 6).dest
    gz = torch.where(output[:, dest] > 0, go[:, dest], 0) * scale.view(1, -1, 1, 1)
    gi = C.group_pointwise_conv2d_backward_input(go, w, output, scale, 2, 2, 6, True)
    torch.testing.assert_close(gi, torch.nn.grad.conv2d_input(x.shape, w, gz, groups=2))
    assert is_cl(gi)
    gw = C.group_pointwise_conv2d_backward_weight(go, x, output, scale, 2, 2, 6, 4)
    torch.testing.assert_close(gw, torch.nn.grad.conv2d_weight(x, w.shape, gz, groups=2))


def test_group_pointwise_backward_ops_are_differentiable():
    go, w, x, output, scale = gpw_backward_operands()
    bwd_in = lambda go, w: C.group_pointwise_conv2d_backward_input(go, w, output, scale, 2, 2, 6, False)
    bwd_w = lambda go, x: C.group_pointwise_conv2d_backward_weight(go, x, output, scale, 2, 2, 6, 4)
    assert gradcheck(bwd_in, (go, w)) and gradgradcheck(bwd_in, (go, w))
    assert gradcheck(bwd_w, (go, x)) and gradgradcheck(bwd_w, (go, x))


# ---------------------------------------------------------------------------- channel_shuffle, concat
@pytest.mark.parametrize("layout", LAYOUTS)
def test_channel_shuffle(layout):
    x = make((2, 12, 3, 5), layout, requires_grad=True)
    out = C.channel_shuffle(x, 3)
    torch.testing.assert_close(out, F.channel_shuffle(x, 3))
    assert aten_format(out) == ("channels_last" if layout == "channels_last" else "contiguous")
    assert gradcheck(lambda x: C.channel_shuffle(x, 3), (x,))
    assert gradgradcheck(lambda x: C.channel_shuffle(x, 4), (x,))
    assert C.channel_shuffle(x[:0], 3).shape == (0, 12, 3, 5)


def shuffle_cat_operands(layout="nchw", requires_grad=True):
    whole = make((2, 10, 3, 4), layout, requires_grad=False)
    passthrough = whole[:, :4].detach().requires_grad_(requires_grad)  # a channel slice, as in ShuffleNetV2
    x = whole[:, 4:].detach().requires_grad_(requires_grad)
    w = torch.randn(6, 3, 1, 1, dtype=F64, requires_grad=requires_grad)
    b = torch.randn(6, dtype=F64, requires_grad=requires_grad)
    return passthrough, x, w, b


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("relu", [False, True])
def test_shuffle_cat_pointwise(layout, relu):
    p, x, w, b = shuffle_cat_operands(layout)
    scale, shift = torch.rand(6, dtype=F64) + 0.5, torch.randn(6, dtype=F64)
    out = C.shuffle_cat_pointwise(p, x, w, b, scale, shift, 2, 2, relu)
    ref = F.channel_shuffle(torch.cat([p, pointwise_ref(x, w, b, scale, shift, 2, relu)], 1), 2)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, (p, x, w, b), g), torch.autograd.grad(ref, (p, x, w, b), g))
    fn = lambda p, x, w, b: C.shuffle_cat_pointwise(p, x, w, b, scale, shift, 2, 2, relu)
    assert gradcheck(fn, (p, x, w, b)) and gradgradcheck(fn, (p, x, w, b))


@pytest.mark.parametrize("relu", [False, True])
def test_shuffle_cat_pointwise2(relu):
    x1, w1 = make((2, 4, 3, 3), requires_grad=True), torch.randn(4, 2, 1, 1, dtype=F64, requires_grad=True)
    x2, w2 = make((2, 6, 3, 3), "channels_last", requires_grad=True), torch.randn(6, 3, 1, 1, dtype=F64,
                                                                                   requires_grad=True)
    b2, s1 = torch.randn(6, dtype=F64, requires_grad=True), torch.rand(4, dtype=F64) + 0.5
    out = C.shuffle_cat_pointwise2(x1, w1, None, s1, None, x2, w2, b2, None, None, 2, 2, relu)
    ref = F.channel_shuffle(torch.cat([pointwise_ref(x1, w1, None, s1, None, 2, relu),
                                       pointwise_ref(x2, w2, b2, None, None, 2, relu)], 1), 2)
    torch.testing.assert_close(out, ref)
    assert is_cl(out)
    inputs = (x1, w1, x2, w2, b2)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref, inputs, g))
    fn = lambda x1, w1, x2, w2, b2: C.shuffle_cat_pointwise2(
        x1, w1, None, s1, None, x2, w2, b2, None, None, 2, 2, relu)
    assert gradcheck(fn, inputs) and gradgradcheck(fn, inputs)


def test_shuffle_cat_passthrough_backward_is_differentiable():
    go = torch.randn(2, 10, 3, 2, dtype=F64, requires_grad=True)
    fn = lambda go: C.shuffle_cat_pointwise_backward_passthrough(go, 4, 2, False)
    torch.testing.assert_close(fn(go), F.channel_shuffle(go, 5)[:, :4])  # the inverse shuffle's first channels
    assert gradcheck(fn, (go,)) and gradgradcheck(fn, (go,))


def test_empty_batch_pointwise_ops():
    x, w, b, scale, shift, groups, sg, relu = gpw_operands(GPW_CASES["g4_bn_relu"], requires_grad=True)
    x = x[:0].detach().requires_grad_()
    out = C.group_pointwise_conv2d(x, w, b, scale, shift, groups, sg, relu)
    assert out.shape == (0, 12, 3, 5)
    gx, gw, gb = torch.autograd.grad(out.sum(), (x, w, b))
    assert gx.shape == x.shape and not gw.any() and not gb.any()
    p, x, w, b = shuffle_cat_operands()
    out = C.shuffle_cat_pointwise(p[:0], x[:0], w, b, None, None, 2, 2, False)
    assert out.shape == (0, 10, 3, 4)


# ---------------------------------------------------------------------------------------------- opcheck
def opcheck_samples():
    x, w, b, *conf = conv_operands(CONV_CASES["groups2_asym"], requires_grad=True)
    yield C.conv2d.default, (x, w, b, *conf)
    xd, wd, _, *confd = conv_operands(CONV_CASES["depthwise_m2"], "channels_last", requires_grad=True)
    yield C.conv2d.default, (xd, wd, None, *confd)
    go = conv2d_ref(x, w, b, *conf).detach().requires_grad_()
    yield C.conv2d_backward_input.default, (go, w, list(x.shape), *conf, True)
    yield C.conv2d_backward_weight.default, (go, x, list(w.shape), *conf, False)
    yield C.conv_transpose2d.default, tconv_operands(TCONV_CASES["output_padding_past_reach"], requires_grad=True)
    yield C.conv_transpose2d.default, tconv_operands(TCONV_CASES["depthwise"], "channels_last", requires_grad=True)
    yield C.group_pointwise_conv2d.default, gpw_operands(GPW_CASES["g4_bn_relu"], requires_grad=True)
    go, w, x, output, scale = gpw_backward_operands()
    yield C.group_pointwise_conv2d_backward_input.default, (go, w, output, scale, 2, 2, 6, True)
    yield C.group_pointwise_conv2d_backward_weight.default, (go, x, output, scale, 2, 2, 6, 4)
    yield C.channel_shuffle.default, (make((2, 6, 3, 3), "channels_last", requires_grad=True), 3)
    p, x, w, b = shuffle_cat_operands()
    yield C.shuffle_cat_pointwise.default, (p, x, w, b, None, None, 2, 2, True)
    yield C.shuffle_cat_pointwise2.default, (x, w, b, None, None, x, w, None, None, None, 2, 2, False)
    yield C.shuffle_cat_pointwise_backward_passthrough.default, (go, 4, 2, True)


@pytest.mark.parametrize("index", range(13))
def test_opcheck(index):
    op, args = list(opcheck_samples())[index]
    torch.library.opcheck(op, args)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_torch_compile_fullgraph_traces_ops_and_cpp_autograd(dynamic):
    def chain(x, w, b, p, w2):
        y = C.conv2d(x, w, b, [1, 1], [1, 0, 1, 0], [1, 1], 2)
        return C.channel_shuffle(C.shuffle_cat_pointwise(p, y, w2, None, None, None, 2, 2, True), 2).square().sum()

    args = (make((2, 4, 6, 6), requires_grad=True), make((6, 2, 2, 2), requires_grad=True),
            torch.randn(6, dtype=F64, requires_grad=True), make((2, 6, 6, 6), requires_grad=True),
            make((6, 3, 1, 1), requires_grad=True))
    compiled = torch.compile(chain, backend="aot_eager", fullgraph=True, dynamic=dynamic)
    out, ref = compiled(*args), chain(*args)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(torch.autograd.grad(out, args), torch.autograd.grad(ref, args))


# ------------------------------------------------------------------------------------------- bad input
def bad_inputs():
    x, w = torch.randn(2, 4, 5, 5), torch.randn(6, 2, 3, 3)
    conf = ([1, 1], [1, 1, 1, 1], [1, 1])
    yield "groups", lambda: C.conv2d(x, w, None, *conf, 1), "expected input\\[2, 4, 5, 5\\] to have 2 channels"
    yield "divisible", lambda: C.conv2d(x, torch.randn(6, 1, 3, 3), None, *conf, 4), "divisible by 4"
    yield "dtype", lambda: C.conv2d(x, w.double(), None, *conf, 2), "same dtype"
    yield "int", lambda: C.conv2d(x.int(), w.int(), None, *conf, 2), "floating-point"
    yield "device", lambda: C.conv2d(x, w.to("meta"), None, *conf, 2), "same device"
    yield "bias", lambda: C.conv2d(x, w, torch.randn(5), *conf, 2), "bias to be 1-dimensional with 6 elements"
    yield "rank", lambda: C.conv2d(x[0], w, None, *conf, 2), "4-D"
    yield "kernel", lambda: C.conv2d(x, torch.randn(6, 4, 9, 9), None, *conf, 1), "Kernel size can't be greater"
    yield "stride", lambda: C.conv2d(x, w, None, [0, 1], [1, 1, 1, 1], [1, 1], 2), "non-positive stride"
    yield "padding", lambda: C.conv2d(x, w, None, [1, 1], [1, -1, 1, 1], [1, 1], 2), "negative padding"
    yield "pad_len", lambda: C.conv2d(x, w, None, [1, 1], [1, 1, 1], [1, 1], 2), "padding"
    yield "zero_h", lambda: C.conv2d(torch.randn(2, 4, 0, 5), w, None, [1, 1], [2, 2, 1, 1], [1, 1], 2), \
        "Only zero batch or zero channel"
    yield "no_out_channels", lambda: C.conv2d(x, torch.randn(0, 4, 3, 3), None, *conf, 1), "at least 1"
    yield "grad_output", lambda: C.conv2d_backward_input(torch.randn(2, 6, 4, 5), w, [2, 4, 5, 5], *conf, 2,
                                                          False), "expected grad_output of size \\[2, 6, 5, 5\\]"
    yield "input_size", lambda: C.conv2d_backward_weight(torch.randn(2, 6, 5, 5), x, [6, 2, 3], *conf, 2), \
        "weight_size"
    yield "output_padding", lambda: C.conv_transpose2d(x, torch.randn(4, 3, 3, 3), None, [2, 2], [1, 1], [2, 0],
                                                       [1, 1], 1), "output padding must be smaller"
    yield "tconv_channels", lambda: C.conv_transpose2d(x, torch.randn(3, 3, 3, 3), None, [1, 1], [0, 0], [0, 0],
                                                       [1, 1], 1), "transposed=1"
    w1 = torch.randn(6, 2, 1, 1)
    yield "not_1x1", lambda: C.group_pointwise_conv2d(x, w, None, None, None, 2, 1, False), "1x1 weight"
    yield "shuffle", lambda: C.group_pointwise_conv2d(x, w1, None, None, None, 2, 4, False), \
        "Number of channels must be divisible by groups. Got 6 channels and 4 groups"
    yield "scale_size", lambda: C.group_pointwise_conv2d(x, w1, None, torch.rand(5), None, 2, 1, False), \
        "scale to be 1-dimensional with 6 elements"
    yield "scale_dtype", lambda: C.group_pointwise_conv2d(x, w1, None, torch.rand(6).double(), None, 2, 1,
                                                          False), "float32 for float16/bfloat16"
    yield "frozen", lambda: C.group_pointwise_conv2d(x, w1, None, torch.rand(6, requires_grad=True), None, 2, 1,
                                                     False), "scale requires grad"
    yield "pixels", lambda: C.shuffle_cat_pointwise(torch.randn(2, 4, 5, 4), x, w1, None, None, None, 2, 2,
                                                    False), "same batch and spatial size"
    yield "offset", lambda: C.group_pointwise_conv2d_backward_weight(torch.randn(2, 6, 5, 5), x, None, None, 2, 1,
                                                                     3, 6), "do not fit"
    yield "shuffle_groups", lambda: C.channel_shuffle(x, 0), "must be positive"
    yield "shuffle_rank", lambda: C.channel_shuffle(x[0], 2), "4-D"


@pytest.mark.parametrize("name,fn,match", list(bad_inputs()), ids=[b[0] for b in bad_inputs()])
def test_bad_input_raises_a_clear_error(name, fn, match):
    with pytest.raises(RuntimeError, match=match):
        fn()


def test_forward_mode_ad_is_refused():
    import torch.autograd.forward_ad as fwAD

    x, w, b, *conf = conv_operands(CONV_CASES["odd"])
    with fwAD.dual_level():
        dual = fwAD.make_dual(x, torch.randn_like(x))
        with pytest.raises(RuntimeError, match="forward-mode AD"):
            C.conv2d(dual, w, b, *conf)


# ------------------------------------------------------------------------------------------ CUDA kernels
def _cuda_check(fn, *tensors, atol=1e-4, rtol=1e-4):
    """fn on CUDA tensors vs the same op on CPU (fp64): outputs and input gradients."""
    cpu = [t.detach().double().requires_grad_(t.requires_grad) if t is not None else None for t in tensors]
    cuda = [t.detach().float().cuda().requires_grad_(t.requires_grad) if t is not None else None for t in tensors]
    out_cpu, out_cuda = fn(*cpu), fn(*cuda)
    torch.testing.assert_close(out_cuda.double().cpu(), out_cpu, atol=atol, rtol=rtol)
    assert aten_format(out_cuda) == aten_format(out_cpu)
    g = torch.randn_like(out_cpu)
    diff = [i for i, t in enumerate(tensors) if t is not None and t.requires_grad]
    gc = torch.autograd.grad(out_cpu, [cpu[i] for i in diff], g)
    gg = torch.autograd.grad(out_cuda, [cuda[i] for i in diff], g.float().cuda())
    for a, r in zip(gg, gc):
        torch.testing.assert_close(a.double().cpu(), r, atol=atol * 10, rtol=rtol * 10)


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_cuda_conv2d(case, layout):
    x, w, b, *conf = conv_operands(case, layout, requires_grad=True)
    _cuda_check(lambda x, w, b: C.conv2d(x, w, b, *conf), x, w, b)


@pytest.mark.gpu
@pytest.mark.parametrize("case", TCONV_CASES.values(), ids=TCONV_CASES.keys())
def test_cuda_conv_transpose2d(case):
    x, w, b, *conf = tconv_operands(case, requires_grad=True)
    _cuda_check(lambda x, w, b: C.conv_transpose2d(x, w, b, *conf), x, w, b)


@pytest.mark.gpu
@pytest.mark.parametrize("case", GPW_CASES.values(), ids=GPW_CASES.keys())
def test_cuda_group_pointwise_and_concat(case):
    x, w, b, scale, shift, groups, sg, relu = gpw_operands(case, requires_grad=True)
    scale, shift = (None if t is None else t.requires_grad_(False) for t in (scale, shift))
    _cuda_check(lambda x, w, b, s, t: C.group_pointwise_conv2d(x, w, b, s, t, groups, sg, relu),
                x, w, b, scale, shift)
    p, x, w, b = shuffle_cat_operands("channels_last")
    _cuda_check(lambda p, x, w, b: C.shuffle_cat_pointwise(p, x, w, b, None, None, 2, 2, True), p, x, w, b)
    _cuda_check(lambda x: C.channel_shuffle(x, 2), x)


@pytest.mark.gpu
def test_cuda_opcheck_and_double_backward():
    x, w, b, *conf = conv_operands(CONV_CASES["groups2_asym"], dtype=F32, device="cuda", requires_grad=True)
    torch.library.opcheck(C.conv2d.default, (x, w, b, *conf))
    (gx,) = torch.autograd.grad(C.conv2d(x, w, b, *conf).square().sum(), (x,), create_graph=True)
    (gw,) = torch.autograd.grad(gx.square().sum(), (w,))
    (rx,) = torch.autograd.grad(conv2d_ref(x, w, b, *conf).square().sum(), (x,), create_graph=True)
    (rw,) = torch.autograd.grad(rx.square().sum(), (w,))
    torch.testing.assert_close(gw, rw, atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
def test_cuda_graph_capture():
    """No host synchronisation and only caching-allocator memory: the ops capture and replay."""
    x, w, b, *conf = conv_operands(CONV_CASES["depthwise_m2"], dtype=F32, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        C.conv2d(x, w, b, *conf)  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = C.conv2d(x, w, b, *conf)
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.testing.assert_close(out, conv2d_ref(x, w, b, *conf), atol=1e-4, rtol=1e-4)
