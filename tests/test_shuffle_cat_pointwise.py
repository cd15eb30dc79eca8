"""ShuffleNetV2's concat-free tails against ``F.channel_shuffle(torch.cat(...), 2)``, forward and backward."""

import pytest
import torch
import torch.nn.functional as F
from _conv_cases import backend_params, make_input
from _group_pointwise_cases import (  # noqa: F401
    DTYPES,
    LAYOUTS,
    assert_fused_matches_unfused,
    dtype_id,
    poison_outputs,
)
from tolerances import assert_matches_reference

import cnnkern
from cnnkern.reference.group_pointwise_conv2d import group_pointwise_conv2d as unfused_pw


def _bn(c, device, dtype):
    return (torch.rand(c, device=device) + 0.5).to(dtype), torch.randn(c, device=device).to(dtype)


def _w(c_out, c_in, device, dtype):
    return (torch.randn(c_out, c_in, 1, 1, device=device) / c_in ** 0.5).to(dtype)


# (N, C, H, W) of the unit input (split in two halves), conv output channels, shuffle_groups, epilogue.
STRIDE1 = [
    pytest.param((2, 10, 4, 3), 5, 2, True, id="c10-bn-relu"),   # the V2 unit: halves of 5 channels
    pytest.param((1, 14, 3, 5), 7, 2, False, id="c14-bias"),
    pytest.param((2, 6, 3, 3), 9, 3, True, id="unequal-s3"),     # cat of 3 + 9 channels, 3 shuffle groups
    pytest.param((1, 16, 3, 3), 8, 1, False, id="cat-only"),     # no shuffle: the conv's channels at 8..15
]


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape,c_out,shuffle_groups,bn_relu", STRIDE1)
def test_stride1_matches_cat_shuffle(poison_outputs, device, backend, layout, dtype, shape, c_out,  # noqa: F811
                                     shuffle_groups, bn_relu):
    unit_in = make_input(shape, dtype, device, layout)
    half = shape[1] // 2
    # As in torchvision's ShuffleNetV2: x1, x2 = x.chunk(2, dim=1); x2 goes through the branch.
    passthrough, branch = unit_in[:, :half], unit_in[:, half:].contiguous(memory_format=torch.channels_last
                                                                           if layout == "channels_last"
                                                                           else torch.contiguous_format)
    w = _w(c_out, shape[1] - half, device, dtype)
    scale, shift = _bn(c_out, device, dtype) if bn_relu else (None, None)
    b = None if bn_relu else torch.randn(c_out, device=device).to(dtype)

    def fused(p, x, w, b):
        return cnnkern.shuffle_cat_pointwise(p, x, w, b, scale=scale, shift=shift, relu=bn_relu,
                                             shuffle_groups=shuffle_groups)

    def plain(p, x, w, b):
        sc, sh = (None, None) if scale is None else (scale.to(x.dtype), shift.to(x.dtype))
        conv = unfused_pw(x, w, b, scale=sc, shift=sh, relu=bn_relu)
        return F.channel_shuffle(torch.cat([p, conv], 1), shuffle_groups)

    y, grads = assert_fused_matches_unfused(backend, fused, plain, (passthrough, branch, w, b),
                                            (True, True, True, b is not None))
    assert cnnkern.last_choice().backend == backend
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)
    assert grads[1].is_contiguous(memory_format=fmt)


def _pair(s1, h1, s2, h2, groups):
    """The stride-2 tail fused, and as pointwise convs + cat + shuffle (bias on the first branch only)."""

    def fused(x1, w1, b1, x2, w2):
        return cnnkern.shuffle_cat_pointwise2(x1, w1, x2, w2, bias1=b1, groups=groups, scale1=s1, shift1=h1,
                                              scale2=s2, shift2=h2, relu=True)

    def plain(x1, w1, b1, x2, w2):
        dt = x1.dtype
        a = unfused_pw(x1, w1, b1, groups, scale=s1.to(dt), shift=h1.to(dt), relu=True)
        b = unfused_pw(x2, w2, None, groups, scale=s2.to(dt), shift=h2.to(dt), relu=True)
        return F.channel_shuffle(torch.cat([a, b], 1), 2)

    return fused, plain


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("c_in1,c_in2,c_out,groups", [(6, 5, 7, 1), (6, 4, 8, 2)])
def test_stride2_matches_cat_shuffle(poison_outputs, device, backend, layout, dtype, c_in1, c_in2, c_out,  # noqa: F811
                                     groups):
    """Both branches end in a pointwise conv (+BN+ReLU), on inputs with different channel counts."""
    x1 = make_input((2, c_in1, 3, 4), dtype, device, layout)
    x2 = make_input((2, c_in2, 3, 4), dtype, device, layout)
    w1, w2 = _w(c_out, c_in1 // groups, device, dtype), _w(c_out, c_in2 // groups, device, dtype)
    b1 = torch.randn(c_out, device=device).to(dtype)
    (s1, h1), (s2, h2) = _bn(c_out, device, dtype), _bn(c_out, device, dtype)

    fused, plain = _pair(s1, h1, s2, h2, groups)
    y, _ = assert_fused_matches_unfused(backend, fused, plain, (x1, w1, b1, x2, w2), (True,) * 5)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("device,backend", backend_params())
def test_fp64_gradcheck(device, backend):
    if backend == "cuda":
        pytest.skip("the CUDA kernels implement fp16/bf16/fp32 only; fp64 gradcheck runs on triton/reference")
    kw = {"dtype": torch.float64, "device": device, "requires_grad": True}
    p, x = torch.randn(1, 3, 2, 3, **kw), torch.randn(1, 4, 2, 3, **kw)
    w, b = torch.randn(5, 4, 1, 1, **kw), torch.randn(5, **kw)
    scale, shift = torch.randn(5, dtype=torch.float64, device=device), torch.randn(5, dtype=torch.float64,
                                                                                  device=device)
    w1 = torch.randn(4, 3, 1, 1, **kw)
    with cnnkern.use_backend(backend):
        assert torch.autograd.gradcheck(
            lambda p, x, w, b: cnnkern.shuffle_cat_pointwise(p, x, w, b, scale=scale, shift=shift, relu=True,
                                                             shuffle_groups=4),
            (p, x, w, b), fast_mode=True)
        assert torch.autograd.gradcheck(
            lambda p, w1, x, w: cnnkern.shuffle_cat_pointwise2(p, w1, x, w, bias2=b.detach(), scale1=scale[:4],
                                                               relu=True, shuffle_groups=3),
            (p, w1, x, w), fast_mode=True)


@pytest.mark.parametrize("device,backend", backend_params())
def test_opcheck(device, backend):
    p = torch.randn(2, 3, 3, 2, device=device, requires_grad=True)
    x = torch.randn(2, 4, 3, 2, device=device).to(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(6, 2, 1, 1, device=device, requires_grad=True)
    w1 = torch.randn(3, 3, 1, 1, device=device, requires_grad=True)
    w2 = torch.randn(3, 4, 1, 1, device=device, requires_grad=True)
    b = torch.randn(6, device=device, requires_grad=True)
    scale, shift = torch.randn(6, device=device), torch.randn(6, device=device)
    with cnnkern.use_backend(backend):
        # 3 + 6 channels, grouped conv branch, 3 shuffle groups.
        torch.library.opcheck(torch.ops.cnnkern.shuffle_cat_pointwise.default,
                              (p, x, w, b, scale, shift, 2, 3, True))
        torch.library.opcheck(torch.ops.cnnkern.shuffle_cat_pointwise2.default,
                              (p, w1, None, None, None, x, w2, b[:3], scale[:3], shift[:3], 1, 2, True))
        g = torch.randn(2, 9, 3, 2, device=device)
        torch.library.opcheck(torch.ops.cnnkern.shuffle_cat_pointwise_backward_passthrough.default,
                              (g, 3, 3, False))


def test_compile_fullgraph_v2_unit():
    """A ShuffleNetV2 stride-1 unit: split, pointwise + BN + ReLU, depthwise, and the fused tail."""
    x = torch.randn(2, 8, 4, 5).to(memory_format=torch.channels_last).requires_grad_()
    w1, w2 = torch.randn(4, 4, 1, 1, requires_grad=True), torch.randn(4, 4, 1, 1, requires_grad=True)
    w_dw = torch.randn(4, 1, 3, 3, requires_grad=True)
    scale, shift = torch.rand(4) + 0.5, torch.randn(4)

    def ours(x, w1, w_dw, w2):
        x1, x2 = x.chunk(2, dim=1)
        y = cnnkern.group_pointwise_conv2d(x2, w1, scale=scale, shift=shift, relu=True)
        y = cnnkern.depthwise_conv2d(y, w_dw, padding=1)
        return cnnkern.shuffle_cat_pointwise(x1, y, w2, scale=scale, shift=shift, relu=True)

    def plain(x, w1, w_dw, w2):
        x1, x2 = x.chunk(2, dim=1)
        y = unfused_pw(x2, w1, scale=scale, shift=shift, relu=True)
        y = F.conv2d(y, w_dw, padding=1, groups=4)
        return F.channel_shuffle(torch.cat([x1, unfused_pw(y, w2, scale=scale, shift=shift, relu=True)], 1), 2)

    params = (x, w1, w_dw, w2)
    out = torch.compile(ours, fullgraph=True, backend="aot_eager")(*params)
    grads = torch.autograd.grad(out.square().sum(), params)
    ref = plain(*params)
    ref_grads = torch.autograd.grad(ref.square().sum(), params)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)


def test_bad_input_errors():
    p, x, w = torch.randn(1, 3, 4, 4), torch.randn(1, 4, 4, 4), torch.randn(4, 4, 1, 1)
    with pytest.raises(RuntimeError, match=r"same batch and spatial size.*\[1, 3, 4, 5\] and \[1, 4, 4, 4\]"):
        cnnkern.shuffle_cat_pointwise(torch.randn(1, 3, 4, 5), x, w)
    with pytest.raises(RuntimeError, match=r"same dtype and device.*torch.float64.*torch.float32"):
        cnnkern.shuffle_cat_pointwise(p.double(), x, w)
    # 3 + 4 channels cannot be shuffled in 2 groups; F.channel_shuffle(torch.cat(...)) refuses too.
    with pytest.raises(RuntimeError, match=r"Number of channels must be divisible by groups. Got 7 channels"):
        cnnkern.shuffle_cat_pointwise(p, x, w)
    with pytest.raises(RuntimeError):
        F.channel_shuffle(torch.cat([p, F.conv2d(x, w)], 1), 2)
    with pytest.raises(RuntimeError, match=r"shuffle_cat_pointwise: expected a 1x1 weight.*\[4, 4, 3, 3\]"):
        cnnkern.shuffle_cat_pointwise(x, x, torch.randn(4, 4, 3, 3))
    with pytest.raises(RuntimeError, match=r"shuffle_cat_pointwise2: .*scale2 requires grad.*frozen BatchNorm"):
        cnnkern.shuffle_cat_pointwise2(x, w, x, w, scale2=torch.ones(4, requires_grad=True))
    with pytest.raises(RuntimeError, match=r"Given groups=2, weight of size \[4, 4, 1, 1\], expected input"):
        cnnkern.shuffle_cat_pointwise2(x, w, x, w, groups=2)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("n,c,hw", [(16, 116, 28), (16, 232, 14), (8, 176, 14), (4, 58, 33)])
def test_gpu_shufflenet_v2_shapes(poison_outputs, dtype, layout, n, c, hw):  # noqa: F811
    """ShuffleNetV2 1x/1.5x stage tails, both units, against cat + shuffle."""
    if "triton" not in cnnkern.available_backends():
        pytest.skip(f"triton: {cnnkern.backend_status()['triton']}")
    x1, x2 = make_input((n, c, hw, hw), dtype, "cuda", layout), make_input((n, c, hw, hw), dtype, "cuda", layout)
    w1, w2 = _w(c, c, "cuda", dtype), _w(c, c, "cuda", dtype)
    (s1, h1), (s2, h2) = _bn(c, "cuda", dtype), _bn(c, "cuda", dtype)

    b1 = torch.randn(c, device="cuda").to(dtype)
    fused, plain = _pair(s1, h1, s2, h2, 1)
    assert_fused_matches_unfused("triton", fused, plain, (x1, w1, b1, x2, w2), (True,) * 5)

    def fused1(p, x, w):
        return cnnkern.shuffle_cat_pointwise(p, x, w, scale=s2, shift=h2, relu=True)

    def plain1(p, x, w):
        dt = x.dtype
        return F.channel_shuffle(torch.cat([p, unfused_pw(x, w, scale=s2.to(dt), shift=h2.to(dt), relu=True)], 1),
                                 2)

    assert_fused_matches_unfused("triton", fused1, plain1, (x1, x2, w2), (True,) * 3)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("n,c,hw,pass_layout,fused", [
    (16, 116, (28, 28), "chunk", True),     # ShuffleNetV2 1x stage 2 tail: x.chunk(2, 1)[0], 4-byte row pieces
    (16, 232, (14, 14), "chunk", True),     # stage 3: 8-byte pieces
    (4, 48, (33, 31), "dense", True),       # a packed passthrough (one run per tile), ragged last tile
    (4, 30, (9, 11), "chunk", True),        # 15 channels: element loads, element steps
    (4, 116, (28, 28), "nchw", False),      # not channels_last: filled by channel_shuffle first
])
def test_gpu_fused_passthrough(dtype, n, c, hw, pass_layout, fused):
    """cnnkern_cuda.shuffle_cat_pointwise on a channels_last branch: the passthrough copied inside the small-K
    conv kernel (kernels/conv/group_pointwise_conv2d_smallk.cuh, plan.pass) where its plan takes it. The
    passthrough's channels must be bit-exact at their shuffled places, the conv's match the fp64 formula, and
    under the profiler no channel_shuffle kernel runs when fused (one runs when not)."""
    cl = torch.channels_last
    torch.manual_seed(3)
    half = c // 2
    unit = torch.randn(n, c, *hw, device="cuda", dtype=dtype)
    if pass_layout == "chunk":
        passthrough = unit.contiguous(memory_format=cl)[:, :half]
    elif pass_layout == "dense":
        passthrough = unit[:, :half].contiguous(memory_format=cl)
    else:
        passthrough = unit[:, :half].contiguous()
    x = unit[:, half:].contiguous(memory_format=cl)
    w = _w(c - half, c - half, "cuda", dtype)
    scale, shift = (torch.rand(c - half, device="cuda") + 0.5), torch.randn(c - half, device="cuda")
    # The op allocates its output through the caching allocator: hand it a NaN-filled block of the same size
    # first, so an element the kernel never writes stays NaN (and fails below).
    torch.full((n, c, *hw), float("nan"), device="cuda", dtype=dtype)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        got = torch.ops.cnnkern_cuda.shuffle_cat_pointwise(passthrough, x, w, None, scale, shift, 1, 2, True)
        torch.cuda.synchronize()
    names = [e.key for e in prof.key_averages()]
    assert any("gpw_smallk_kernel" in k for k in names), names
    assert any("channel_shuffle" in k for k in names) == (not fused), names
    assert got.is_contiguous(memory_format=cl)

    def conv(p, xx, ww, sc, sh):
        y = F.relu(F.conv2d(xx, ww) * sc.view(1, -1, 1, 1).to(xx.dtype) + sh.view(1, -1, 1, 1).to(xx.dtype))
        return F.channel_shuffle(torch.cat([p, y], 1), 2)

    want = conv(*(t.double() for t in (passthrough, x, w, scale, shift)))
    theirs = conv(passthrough, x, w, scale, shift)
    assert torch.equal(got[:, 0::2], passthrough), "passthrough channels must be copied exactly"
    assert_matches_reference(got, want, theirs, "out")
