"""group_pointwise_conv2d (grouped 1x1 conv + shuffled store + folded-BN/ReLU epilogue) against unfused PyTorch."""

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
from cnnkern.reference.group_pointwise_conv2d import group_pointwise_conv2d as unfused

# (N, C_in, H, W), C_out, groups, shuffle_groups, epilogue. Channel counts mostly not multiples of 8;
# shuffle_groups equal to groups (ShuffleNetV1), different from it, and absent.
CASES = [
    pytest.param((2, 5, 4, 5), 7, 1, None, "bias", id="g1"),
    pytest.param((2, 6, 3, 5), 10, 2, 2, "bn-relu", id="g2-s2"),
    pytest.param((1, 9, 4, 6), 12, 3, 3, "relu", id="g3-s3"),
    pytest.param((2, 12, 3, 5), 20, 4, 2, "scale", id="g4-s2"),
    pytest.param((1, 16, 3, 4), 24, 8, 8, "bias-bn", id="g8-s8"),
    pytest.param((2, 6, 5, 3), 10, 2, 5, "bn32-relu", id="g2-s5-bn32"),
    pytest.param((1, 7, 3, 7), 9, 1, 3, "none", id="g1-s3"),
    # Channel runs of 8 / 4 elements (the Triton slab forward's 16 / 8-byte accesses, channels_last), and a
    # group wider than one program's 128 columns (two column tiles per pixel tile).
    pytest.param((1, 24, 3, 5), 48, 3, None, "relu", id="g3-run8"),
    pytest.param((1, 12, 3, 5), 12, 3, 3, "bias", id="g3-s3-run4"),
    pytest.param((1, 4, 2, 3), 272, 2, 2, "relu", id="g2-s2-wide"),
    pytest.param((1, 272, 2, 3), 4, 2, None, "scale", id="g2-wide-in"),  # the input gradient's column tiles
    # More pixels than the interpreter's one split (64): the weight gradient's splits, several K steps per
    # split and a short last one.
    pytest.param((2, 6, 9, 8), 9, 3, 3, "relu", id="g3-s3-splits"),
]
EPILOGUES = {  # epilogue -> (bias, scale, shift, relu, scale/shift in fp32 whatever the input dtype)
    "none": (False, False, False, False, False),
    "bias": (True, False, False, False, False),
    "relu": (True, False, False, True, False),
    "scale": (False, True, False, False, False),
    "bn-relu": (False, True, True, True, False),
    "bn32-relu": (False, True, True, True, True),  # folded BN parameters kept in fp32
    "bias-bn": (True, True, True, False, False),
}


def _operands(shape, c_out, groups, epilogue, dtype, device, layout):
    has_bias, has_scale, has_shift, relu, vec_f32 = EPILOGUES[epilogue]
    x = make_input(shape, dtype, device, layout)
    cg_in = shape[1] // groups
    w = (torch.randn(c_out, cg_in, 1, 1, device=device) / cg_in ** 0.5).to(dtype)

    def vec(on, base=0.0, vec_dtype=dtype):
        return (base + torch.randn(c_out, device=device)).to(vec_dtype) if on else None

    bn_dtype = torch.float32 if vec_f32 and dtype != torch.float64 else dtype
    return x, w, vec(has_bias), vec(has_scale, 1.0, bn_dtype), vec(has_shift, 0.0, bn_dtype), relu


def _check(device, backend, layout, dtype, shape, c_out, groups, shuffle_groups, epilogue, grad_layout="output"):
    x, w, b, scale, shift, relu = _operands(shape, c_out, groups, epilogue, dtype, device, layout)

    def fused(x, w, b):
        return cnnkern.group_pointwise_conv2d(x, w, b, groups, shuffle_groups, scale=scale, shift=shift, relu=relu)

    def plain(x, w, b):
        sc = None if scale is None else scale.to(x.dtype)
        sh = None if shift is None else shift.to(x.dtype)
        return unfused(x, w, b, groups, shuffle_groups, scale=sc, shift=sh, relu=relu)

    return assert_fused_matches_unfused(backend, fused, plain, (x, w, b), (True, True, b is not None),
                                        grad_layout)


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape,c_out,groups,shuffle_groups,epilogue", CASES)
def test_matches_unfused(poison_outputs, device, backend, layout, dtype, shape, c_out, groups,  # noqa: F811
                         shuffle_groups, epilogue):
    y, grads = _check(device, backend, layout, dtype, shape, c_out, groups, shuffle_groups, epilogue)
    assert cnnkern.last_choice().backend == backend
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)
    # grad_input follows the input's memory format, as ATen's does.
    assert grads[0].is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape,c_out,groups,shuffle_groups,epilogue", [CASES[1], CASES[7]])
def test_channels_last_with_contiguous_grad(poison_outputs, device, backend, dtype, shape, c_out,  # noqa: F811
                                            groups, shuffle_groups, epilogue):
    """A channels-last conv whose output gradient arrives contiguous (NCHW): mixed layouts in the backward."""
    _, grads = _check(device, backend, "channels_last", dtype, shape, c_out, groups, shuffle_groups, epilogue,
                      grad_layout="contiguous")
    assert grads[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shuffle_groups", [None, 3], ids=["plain", "s3"])
def test_channels_last_views_without_one_pixel_pitch(poison_outputs, device, backend, dtype,  # noqa: F811
                                                     shuffle_groups):
    """Channels-last inputs cropped in W (the row pitch is not W times the pixel pitch, so pixel offsets
    need (n, h, w)), with 8-channel runs; the output is written in the input's layout."""
    big = torch.randn(2, 24, 3, 7, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    x = big[..., 1:6]
    assert x.stride(1) == 1 and x.stride(2) != x.shape[3] * x.stride(3)
    w = (torch.randn(48, 8, 1, 1, device=device) / 8 ** 0.5).to(dtype)
    b = torch.randn(48, device=device).to(dtype)

    def fused(x, w, b):
        return cnnkern.group_pointwise_conv2d(x, w, b, 3, shuffle_groups, relu=True)

    def plain(x, w, b):
        return unfused(x, w, b, 3, shuffle_groups, relu=True)

    y, _ = assert_fused_matches_unfused(backend, fused, plain, (x, w, b), (True, True, True))
    assert cnnkern.last_choice().backend == backend
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
def test_nan_propagates_through_relu(device, backend, dtype):
    """A NaN input stays NaN through the fused ReLU (as through ATen's), in exactly the outputs it reaches."""
    x = torch.randn(1, 6, 2, 3, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    x[0, 1, 1, 2] = float("nan")
    w = torch.randn(9, 2, 1, 1, device=device).to(dtype)
    with cnnkern.use_backend(backend):
        y = cnnkern.group_pointwise_conv2d(x, w, None, 3, 3, relu=True)
    ref = unfused(x.double(), w.double(), None, 3, 3, relu=True)
    assert torch.isnan(ref).sum() == 3
    assert torch.equal(torch.isnan(y), torch.isnan(ref))


@pytest.mark.parametrize("device,backend", backend_params())
def test_unbatched_and_defaults(device, backend):
    x = torch.randn(6, 3, 4, device=device)
    w = torch.randn(4, 3, 1, 1, device=device)
    with cnnkern.use_backend(backend):
        y = cnnkern.group_pointwise_conv2d(x, w, groups=2)
    torch.testing.assert_close(y, F.conv2d(x, w, groups=2))
    assert y.shape == (4, 3, 4)


@pytest.mark.parametrize("device,backend", backend_params())
def test_fp64_gradcheck(device, backend):
    if backend == "cuda":
        pytest.skip("the CUDA kernels implement fp16/bf16/fp32 only; fp64 gradcheck runs on triton/reference")
    x = torch.randn(2, 6, 3, 2, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(9, 2, 1, 1, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(9, dtype=torch.float64, device=device, requires_grad=True)
    scale, shift = torch.randn(9, dtype=torch.float64, device=device), torch.randn(9, dtype=torch.float64)

    def fn(x, w, b):
        return cnnkern.group_pointwise_conv2d(x, w, b, 3, 3, scale=scale, shift=shift.to(device), relu=True)

    with cnnkern.use_backend(backend):
        assert torch.autograd.gradcheck(fn, (x, w, b), fast_mode=True)
        xc = x.detach().to(memory_format=torch.channels_last).requires_grad_()
        assert torch.autograd.gradcheck(lambda x, w: cnnkern.group_pointwise_conv2d(x, w, None, 3, 9), (xc, w),
                                        fast_mode=True)


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_opcheck(device, backend, layout):
    x = make_input((2, 6, 3, 4), torch.float32, device, layout).requires_grad_()
    w = torch.randn(9, 2, 1, 1, device=device, requires_grad=True)
    b = torch.randn(9, device=device, requires_grad=True)
    scale, shift = torch.randn(9, device=device), torch.randn(9, device=device)
    with cnnkern.use_backend(backend):
        torch.library.opcheck(torch.ops.cnnkern.group_pointwise_conv2d.default, (x, w, b, scale, shift, 3, 3, True))
        y = torch.ops.cnnkern.group_pointwise_conv2d(x, w, b, scale, shift, 3, 3, True)
        # The backward ops are not differentiable themselves (no double backward): plain tensors.
        x, w, y, g = x.detach(), w.detach(), y.detach(), torch.randn_like(y)
        torch.library.opcheck(torch.ops.cnnkern.group_pointwise_conv2d_backward_input.default,
                              (g, w, y, scale, 3, 3, 0, layout == "channels_last"))
        torch.library.opcheck(torch.ops.cnnkern.group_pointwise_conv2d_backward_weight.default,
                              (g, x, None, scale, 3, 3, 0, 9))


def test_compile_fullgraph():
    """A ShuffleNetV1 unit body: fused 1x1 + shuffle, depthwise 3x3, fused 1x1 with BN + ReLU."""
    x = torch.randn(2, 6, 5, 4, requires_grad=True)
    w1 = torch.randn(9, 2, 1, 1, requires_grad=True)
    w_dw = torch.randn(9, 1, 3, 3, requires_grad=True)
    w2 = torch.randn(6, 3, 1, 1, requires_grad=True)
    scale, shift = torch.rand(6) + 0.5, torch.randn(6)

    def unit(gpw, dw, x, w1, w_dw, w2):
        y = gpw(x, w1, groups=3, shuffle_groups=3)
        y = dw(y, w_dw)
        return gpw(y, w2, groups=3, scale=scale, shift=shift, relu=True) + x

    def ours(*args):
        return unit(cnnkern.group_pointwise_conv2d, lambda y, w: cnnkern.depthwise_conv2d(y, w, padding=1), *args)

    def plain(*args):
        return unit(unfused, lambda y, w: F.conv2d(y, w, padding=1, groups=9), *args)

    params = (x, w1, w_dw, w2)
    out = torch.compile(ours, fullgraph=True, backend="aot_eager")(*params)
    grads = torch.autograd.grad(out.square().sum(), params)
    ref = plain(*params)
    ref_grads = torch.autograd.grad(ref.square().sum(), params)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("device,backend", backend_params(device_backends={"triton", ("cuda", "cuda")}))
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_weight_grad_is_bitwise_reproducible(device, backend, layout):
    # More pixels than one split holds, so partial sums from several programs are combined.
    x = make_input((2, 4, 9, 8), torch.float32, device, layout)
    w = torch.randn(6, 2, 1, 1, device=device, requires_grad=True)
    g = torch.randn(2, 6, 9, 8, device=device)

    def weight_grad():
        with cnnkern.use_backend(backend):
            return torch.autograd.grad(cnnkern.group_pointwise_conv2d(x, w, None, 2, 3, relu=True), w, g)[0]

    first, second = weight_grad(), weight_grad()
    assert torch.equal(first, second)


def test_trainable_scale_or_shift_is_refused():
    x, w = torch.randn(1, 4, 2, 2), torch.randn(4, 4, 1, 1, requires_grad=True)
    scale = torch.ones(4, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"scale requires grad.*inference or frozen BatchNorm.*detach"):
        cnnkern.group_pointwise_conv2d(x, w, scale=scale)
    with pytest.raises(RuntimeError, match=r"shift requires grad.*frozen BatchNorm"):
        cnnkern.group_pointwise_conv2d(x, w, shift=scale)
    # Under no_grad (inference) it is fine, and so is a detached scale.
    with torch.no_grad():
        cnnkern.group_pointwise_conv2d(x, w, scale=scale)
    cnnkern.group_pointwise_conv2d(x, w, scale=scale.detach()).sum().backward()
    # Calling the op directly gets as far as the backward, which refuses rather than dropping the gradient.
    y = torch.ops.cnnkern.group_pointwise_conv2d(x, w, None, scale, None, 1, 1, False)
    with pytest.raises(RuntimeError, match=r"scale requires grad.*frozen BatchNorm"):
        y.sum().backward()


# (input, weight, kwargs, regex, pytorch_raises): pytorch_raises says whether F.conv2d + F.channel_shuffle
# with the same arguments raise too (a 3x3 weight is valid for F.conv2d, just not a pointwise conv).
BAD = [
    pytest.param((1, 4, 5, 5), (4, 4, 3, 3), {}, r"expected a 1x1 weight.*\[4, 4, 3, 3\].*\[1, 4, 5, 5\]", False,
                 id="3x3-weight"),
    pytest.param((1, 4, 5, 5), (4, 4), {}, r"expected a 1x1 weight.*\[4, 4\]", True, id="2d-weight"),
    pytest.param((1, 5, 3, 3), (4, 2, 1, 1), {"groups": 2},
                 r"Given groups=2, weight of size \[4, 2, 1, 1\], expected input\[1, 5, 3, 3\] to have 4 channels",
                 True, id="c-in-not-divisible"),
    pytest.param((1, 6, 3, 3), (5, 2, 1, 1), {"groups": 3},
                 r"Given groups=3, expected weight to be divisible by 3 at dimension 0.*\[5, 2, 1, 1\]", True,
                 id="c-out-not-divisible"),
    pytest.param((1, 6, 3, 3), (6, 3, 1, 1), {"groups": 2, "shuffle_groups": 4},
                 r"Number of channels must be divisible by groups. Got 6 channels and 4 groups", True,
                 id="shuffle-not-divisible"),
    pytest.param((1, 6, 3, 3), (6, 3, 1, 1), {"groups": 2, "shuffle_groups": 0},
                 r"groups to divide channels in must be positive. Value of groups:0", True, id="shuffle-zero"),
    pytest.param((1, 6, 3, 3), (6, 6, 1, 1), {"groups": 0}, r"non-positive groups is not supported", True,
                 id="groups-zero"),
    pytest.param((6, 3), (6, 6, 1, 1), {}, r"3D \(unbatched\) or 4D.*group_pointwise_conv2d.*\[6, 3\]", True,
                 id="rank-2-input"),
]


@pytest.mark.parametrize("x_shape,w_shape,kwargs,match,pytorch_raises", BAD)
def test_bad_input_errors(x_shape, w_shape, kwargs, match, pytorch_raises):
    x, w = torch.randn(x_shape), torch.randn(w_shape)
    with pytest.raises(RuntimeError, match=match):
        cnnkern.group_pointwise_conv2d(x, w, **kwargs)
    if pytorch_raises:
        with pytest.raises(RuntimeError):
            y = F.conv2d(x, w, groups=kwargs.get("groups", 1))
            F.channel_shuffle(y, kwargs.get("shuffle_groups", 1))


def test_bad_dtype_and_vector_errors():
    x, w = torch.randn(1, 4, 2, 2), torch.randn(6, 4, 1, 1)
    with pytest.raises(RuntimeError, match=r"input \(torch.float32\) and weight \(torch.float16\)"):
        cnnkern.group_pointwise_conv2d(x, w.half())
    with pytest.raises(RuntimeError, match=r"expected bias to be 1-dimensional with 6 elements.*\[4\]"):
        cnnkern.group_pointwise_conv2d(x, w, torch.randn(4))
    with pytest.raises(RuntimeError, match=r"expected scale to be 1-dimensional with 6 elements.*\[5\]"):
        cnnkern.group_pointwise_conv2d(x, w, scale=torch.randn(5))
    with pytest.raises(RuntimeError, match=r"shift \(torch.float64, cpu\) must be on the input's device.*"
                       r"input's dtype \(torch.float32\), or float32 for float16/bfloat16 input"):
        cnnkern.group_pointwise_conv2d(x, w, shift=torch.randn(6, dtype=torch.float64))
    # fp32 folded-BN vectors go with fp16/bf16 input only; lower precision than the input never does.
    with pytest.raises(RuntimeError, match=r"scale \(torch.float16, cpu\) must be on the input's device"):
        cnnkern.group_pointwise_conv2d(x, w, scale=torch.randn(6, dtype=torch.float16))
    with pytest.raises(RuntimeError, match=r"scale \(torch.float32, cpu\).*input's dtype \(torch.float64\)"):
        cnnkern.group_pointwise_conv2d(x.double(), w.double(), scale=torch.randn(6))
    with pytest.raises(RuntimeError, match=r"shift \(torch.float16, cpu\).*input's dtype \(torch.bfloat16\)"):
        cnnkern.group_pointwise_conv2d(x.bfloat16(), w.bfloat16(), shift=torch.randn(6, dtype=torch.float16))
    with pytest.raises(RuntimeError, match=r"expected floating-point tensors, but input has dtype torch.int64"):
        cnnkern.group_pointwise_conv2d(x.long(), w)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape,c_out,groups,shuffle_groups,epilogue", [
    ((8, 240, 28, 28), 60, 3, 3, "bn-relu"),     # ShuffleNetV1 g=3 stage 2 bottleneck in
    ((8, 60, 28, 28), 240, 3, None, "bias-bn"),  # ... and out (no shuffle after the last 1x1)
    ((8, 384, 14, 14), 96, 8, 8, "bn32-relu"),   # ShuffleNetV1 g=8 stage 3, fp32 folded BN
    ((8, 544, 7, 7), 136, 4, 4, "bn-relu"),      # ShuffleNetV1 g=4 stage 4
    ((16, 116, 28, 28), 116, 1, None, "bn-relu"),  # ShuffleNetV2 1x stage 2 pointwise (not a multiple of 8)
    ((4, 58, 33, 31), 58, 2, 2, "relu"),         # odd spatial size
])
def test_gpu_shufflenet_shapes(poison_outputs, backend, dtype, layout, shape, c_out, groups,  # noqa: F811
                               shuffle_groups, epilogue):
    if backend not in cnnkern.available_backends():
        pytest.skip(f"{backend}: {cnnkern.backend_status()[backend]}")
    _check("cuda", backend, layout, dtype, shape, c_out, groups, shuffle_groups, epilogue)
    assert cnnkern.last_choice().backend == backend


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("shape,groups", [((8, 240, 28, 28), 3), ((4, 116, 14, 14), 2), ((2, 58, 7, 9), 29)])
def test_gpu_channel_shuffle_sizes(poison_outputs, backend, dtype, layout, shape, groups):  # noqa: F811
    """Sizes that take the 16-byte vector paths of the CUDA copy kernel (and ones that cannot), both
    directions (the gradient is the inverse shuffle)."""
    if backend not in cnnkern.available_backends():
        pytest.skip(f"{backend}: {cnnkern.backend_status()[backend]}")
    x = make_input(shape, dtype, "cuda", layout).requires_grad_()
    g = torch.randn(shape, device="cuda", dtype=dtype)
    with cnnkern.use_backend(backend):
        y = cnnkern.channel_shuffle(x, groups)
        (gx,) = torch.autograd.grad(y, x, g)
    assert cnnkern.last_choice().backend == backend
    assert torch.equal(y, F.channel_shuffle(x.detach(), groups))
    assert torch.equal(gx, F.channel_shuffle(g, shape[1] // groups))


def _conv_output_grad(dy, out, c_out, shuffle_groups, offset):
    """The gradient at the conv's own c_out outputs, whose channels sit at [offset, offset + c_out) of a
    ``dy.shape[1]``-channel concatenation that is then channel-shuffled: channel c is read from dy channel dest(c)
    and zeroed where the saved output ``out`` there is not positive (ReLU)."""
    total = dy.shape[1]
    per = total // shuffle_groups
    c = torch.arange(c_out, device=dy.device) + offset
    dest = (c % per) * shuffle_groups + c // per
    g = dy[:, dest]
    return g if out is None else torch.where(out[:, dest] > 0, g, torch.zeros_like(g))


def _input_grad_reference(dy, out, w, scale, groups, shuffle_groups, offset):
    """The input gradient of the fused forward: the conv-output gradient times scale[c], through the transposed
    grouped 1x1 conv. Computed in ``dy``'s dtype; pass fp64 tensors for the baseline."""
    g = _conv_output_grad(dy, out, w.shape[0], shuffle_groups, offset)
    if scale is not None:
        g = g * scale.to(g.dtype).view(1, -1, 1, 1)
    return F.conv_transpose2d(g, w.to(g.dtype), groups=groups)


def _weight_grad_reference(dy, out, x, scale, c_out, groups, shuffle_groups, offset):
    """The weight gradient of the same fused forward: scale[c] * sum over pixels of G[., c] * x[., group(c) * cg_in + i]
    with G the conv-output gradient. Computed in ``dy``'s dtype (fp64 for the baseline)."""
    n, _, h, w = dy.shape
    c_in = x.shape[1]
    g = _conv_output_grad(dy, out, c_out, shuffle_groups, offset)
    gg = g.reshape(n, groups, c_out // groups, h, w)
    xg = x.to(g.dtype).reshape(n, groups, c_in // groups, h, w)
    dw = torch.einsum("ngjhw,ngihw->gji", gg, xg).reshape(c_out, c_in // groups, 1, 1)
    return dw if scale is None else dw * scale.to(dw.dtype).view(-1, 1, 1, 1)


@pytest.mark.parametrize("groups,shuffle_groups,relu,scale", [(3, 3, True, True), (2, None, False, True),
                                                               (1, 2, True, False)])
def test_grad_references_are_autograd(groups, shuffle_groups, relu, scale):
    """The GPU tests' explicit input- and weight-gradient formulas equal fp64 autograd through the unfused forward
    (offset 0: the whole output), so the small-K gradient checks below rest on a checked baseline."""
    torch.manual_seed(0)
    x = torch.randn(2, 6 * groups, 5, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4 * groups, 6, 1, 1, dtype=torch.float64)
    b = torch.randn(4 * groups, dtype=torch.float64)
    sc = torch.rand(4 * groups, dtype=torch.float64) + 0.5 if scale else None
    w.requires_grad_()
    y = unfused(x, w, b, groups, shuffle_groups, scale=sc, relu=relu)
    dy = torch.randn_like(y)
    want_x, want_w = torch.autograd.grad(y, (x, w), dy)
    out = y.detach() if relu else None
    got_x = _input_grad_reference(dy, out, w.detach(), sc, groups, shuffle_groups or 1, 0)
    got_w = _weight_grad_reference(dy, out, x.detach(), sc, w.shape[0], groups, shuffle_groups or 1, 0)
    torch.testing.assert_close(got_x, want_x)
    torch.testing.assert_close(got_w, want_w)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("n,c_in,hw,c_out,groups,shuffle_groups,total,offset,relu,scale", [
    (8, 60, (28, 28), 216, 3, 3, 216, 0, True, True),    # ShuffleNetV1 g3 stage 2 GConv2 (cg_out 72), shuffled
    (8, 384, (28, 28), 96, 8, 8, 96, 0, True, True),     # ShuffleNetV1 g8 stage 2 GConv1 (cg_out 12)
    (4, 96, (28, 28), 360, 8, 1, 360, 0, True, False),   # cg_out 45 (odd), no shuffle
    (8, 58, (28, 28), 58, 1, 2, 116, 58, True, True),    # ShuffleNetV2 tail: second half of the concat
    (4, 24, (33, 31), 58, 1, 2, 116, 0, True, True),     # first half, odd spatial size (ragged last tile)
    (2, 240, (7, 9), 60, 3, 3, 60, 0, False, True),      # no ReLU; 60 raw columns (4-element convert steps)
    (2, 42, (9, 11), 30, 3, 3, 30, 0, True, True),       # 30 raw columns: 2-element convert steps
    (2, 30, (9, 11), 15, 3, 3, 15, 0, True, True),       # 15 raw columns: element convert
])
def test_gpu_small_k_input_grad(dtype, n, c_in, hw, c_out, groups, shuffle_groups, total, offset, relu, scale):
    """cnnkern_cuda.group_pointwise_conv2d_bwd_input on channels_last dy / saved output / grad_in: the small-K
    kernel's turned-around problem (kernels/conv/group_pointwise_conv2d_smallk.cuh, kDgrad) against the fp64
    formula, every element written (NaN-filled grad_in), and, under the profiler, that kernel ran where its plan
    accepts the problem (16-bit: cg_out <= 256; fp32: <= 64)."""
    cl = torch.channels_last
    torch.manual_seed(1)
    dy = torch.randn(n, total, *hw, device="cuda", dtype=dtype).contiguous(memory_format=cl)
    out = torch.randn(n, total, *hw, device="cuda", dtype=dtype).contiguous(memory_format=cl) if relu else None
    w = (torch.randn(c_out, c_in // groups, 1, 1, device="cuda") / (c_out // groups) ** 0.5).to(dtype)
    sc = torch.rand(c_out, device="cuda") + 0.5 if scale else None  # folded BN scale kept in fp32
    grad_in = torch.full((n, c_in, *hw), float("nan"), device="cuda", dtype=dtype).contiguous(memory_format=cl)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        torch.ops.cnnkern_cuda.group_pointwise_conv2d_bwd_input(dy, w, out, sc, grad_in, groups, shuffle_groups,
                                                                offset)
        torch.cuda.synchronize()
    names = [e.key for e in prof.key_averages()]
    small_k = any("gpw_smallk_kernel" in k and ", true>" in k for k in names)
    assert small_k == (dtype != torch.float32 or c_out // groups <= 64), names
    d64 = (None if t is None else t.double() for t in (dy, out, w, sc))
    want = _input_grad_reference(*d64, groups, shuffle_groups, offset)
    theirs = _input_grad_reference(dy, out, w, sc, groups, shuffle_groups, offset)
    assert grad_in.is_contiguous(memory_format=cl)
    assert_matches_reference(grad_in, want, theirs, "grad_in")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("n,c_in,hw,c_out,groups,shuffle_groups,total,offset,relu,scale", [
    (8, 60, (28, 28), 216, 3, 3, 216, 0, False, True),   # ShuffleNetV1 g3 stage 2 GConv2 (72 x 20 per group)
    (8, 384, (28, 28), 96, 8, 8, 96, 0, True, True),     # ShuffleNetV1 g8 stage 2 GConv1 (12 x 48)
    (4, 96, (28, 28), 360, 8, 1, 360, 0, True, False),   # cg_out 45 (odd), no shuffle
    (8, 58, (28, 28), 58, 1, 2, 116, 58, True, True),    # ShuffleNetV2 tail: second half of the concat
    (4, 24, (33, 31), 58, 1, 2, 116, 0, True, True),     # first half, odd spatial size (ragged last tile)
    (2, 42, (9, 11), 30, 3, 3, 30, 0, True, True),       # 30 dy columns, 42 x columns: 2-element steps
    (2, 30, (9, 11), 15, 3, 3, 15, 0, True, True),       # 15 dy columns: element steps
    (4, 480, (14, 14), 120, 3, 3, 120, 0, True, True),   # 45 accumulator items: refused, the GEMM runs
])
def test_gpu_small_k_weight_grad(dtype, n, c_in, hw, c_out, groups, shuffle_groups, total, offset, relu, scale):
    """cnnkern_cuda.group_pointwise_conv2d_bwd_weight on channels_last dy / saved output / x: the small-K weight
    gradient (kernels/conv/group_pointwise_conv2d_smallk_wgrad.cuh) against the fp64 formula, bitwise equal when
    run twice, and, under the profiler, that kernel ran exactly where its plan accepts the problem (16-bit, at most
    32 accumulator items of 16 x 32 in the groups' products)."""
    cl = torch.channels_last
    torch.manual_seed(2)
    dy = torch.randn(n, total, *hw, device="cuda", dtype=dtype).contiguous(memory_format=cl)
    out = torch.randn(n, total, *hw, device="cuda", dtype=dtype).contiguous(memory_format=cl) if relu else None
    x = torch.randn(n, c_in, *hw, device="cuda", dtype=dtype).contiguous(memory_format=cl)
    sc = torch.rand(c_out, device="cuda") + 0.5 if scale else None
    cg_in = c_in // groups

    def run():
        grad_w = torch.full((c_out, cg_in, 1, 1), float("nan"), device="cuda", dtype=dtype)
        torch.ops.cnnkern_cuda.group_pointwise_conv2d_bwd_weight(dy, x, out, sc, grad_w, groups, shuffle_groups,
                                                                 offset)
        return grad_w

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        got = run()
        torch.cuda.synchronize()
    names = [e.key for e in prof.key_averages()]
    # The plan's item count: (group, 16-row m-tile, chunk of up to 4 8-column n-tiles), at most 4 per warp x 8.
    n_tiles = -(-cg_in // 8)
    items = groups * -(-(c_out // groups) // 16) * -(-n_tiles // 4)
    small_k = any("gpw_smallk_wgrad_kernel" in k for k in names)
    assert small_k == (dtype != torch.float32 and items <= 32), names
    assert torch.equal(got, run())
    d64 = (None if t is None else t.double() for t in (dy, out, x, sc))
    want = _weight_grad_reference(*d64, c_out, groups, shuffle_groups, offset)
    theirs = _weight_grad_reference(dy, out, x, sc, c_out, groups, shuffle_groups, offset)
    assert_matches_reference(got, want, theirs, "grad_weight")
