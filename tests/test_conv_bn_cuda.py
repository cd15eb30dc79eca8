"""The CUDA kernels of fused conv + BatchNorm + activation (issue 12) against the reference kernels, on a GPU.

Each kernel is called as the ops layer calls it (``BACKENDS["cuda"].kernel(family, name)``) and compared with
the reference kernel of the same name (``BACKENDS["reference"]``): run on the inputs cast to fp64 it is the
truth; run in the inputs' own dtype it is "PyTorch's own error" of tests/tolerances.py (the reference epilogue
rounds conv + bias to the input dtype before the scale; the CUDA kernels round once). Every output and every
buffer a kernel allocates starts as NaN, so an unwritten element fails; strided-view outputs also check that
nothing outside the view is written. Statistics partials are checked as the ops use them: merged by
``combine_partials``, against the fp64 mean and variance of the output as stored.

Covered: conv2d (groups 1 and 2) and depthwise (multiplier 1 and 2) forward epilogues, fp32/fp16/bf16, NCHW,
channels_last and strided views (the depthwise tiled NCHW kernel, its direct channels_last kernel with 16-byte
vectors and its scalar path for channels that are not a multiple of 8), odd sizes, every activation, each of
bias / scale / shift present or not (fp32 or input-dtype vectors); the normalize / backward kernels in every
layout (also mixed across grad, y and out), both iterations, 16-byte and scalar access, 64-bit offsets,
determinism of the backward reduction. The device code of all of it is also replayed on the CPU by the
emulators (ctest: cnnkern_emulate, cnnkern_emulate_depthwise, cnnkern_emulate_conv_bn_relu).
"""

import pytest
import torch
from _conv_cases import nan_poison
from tolerances import assert_matches_reference

import cnnkern
from cnnkern.ops.registry import BACKENDS
from cnnkern.problem.conv2d import conv2d_spec
from cnnkern.problem.conv_bn import combine_partials

DEVICE = "cuda"
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
LAYOUTS = ("nchw", "channels_last", "strided")
ACTIVATIONS = (None, "relu", "relu6", "silu")


def _why_cuda():
    return cnnkern.backend_status()["cuda"] if torch.cuda.is_available() else "no GPU"


def gpu_case(fn):
    """A GPU test that also skips (with the reason) where the cuda backend is unavailable on a GPU machine."""
    fn = pytest.mark.gpu(fn)
    return pytest.mark.skipif(torch.cuda.is_available() and _why_cuda() is not None,
                              reason=f"cuda backend unavailable: {_why_cuda()}")(fn)


@pytest.fixture(autouse=True)
def _poison_kernel_buffers(monkeypatch):
    nan_poison(monkeypatch)


def cuda_kernel(family, name):
    return BACKENDS["cuda"].kernel(family, name)


def reference_kernel(family, name):
    return BACKENDS["reference"].kernel(family, name)


def make(shape, dtype, layout, fill=None, channels=None):
    """A tensor in a layout: 'nchw', 'channels_last', 'strided' (a view into a larger NCHW tensor with a
    channel offset and every other column), or 'strided_cl' (the same of a channels_last tensor). With
    ``fill`` the whole allocation holds that value; the larger tensor is returned too (or None)."""
    n, c, h, w = shape
    big_shape = (n, c + 1, h, 2 * w) if layout.startswith("strided") else shape
    big = (torch.full(big_shape, fill, dtype=dtype, device=DEVICE) if fill is not None
           else torch.randn(big_shape, dtype=dtype, device=DEVICE))
    if layout in ("channels_last", "strided_cl"):
        big = big.to(memory_format=torch.channels_last)
    if layout.startswith("strided"):
        return big[:, 1:, :, ::2], big
    return big, None


def assert_view_only(big, view):
    if big is None:
        return
    mask = torch.ones_like(big, dtype=torch.bool)
    mask[:, 1:, :, ::2] = False
    assert torch.isnan(big[mask]).all(), "a kernel wrote outside the output view"


def f64(t):
    return None if t is None else t.double()


# ----------------------------------------------------------------------------------- conv epilogues
# (family, groups or multiplier, input channels): conv2d with 1 and 2 groups; depthwise with multiplier 1
# and 2, with 16 channels (channels_last: 16-byte channel vectors) and 5 (channels_last: scalar path).
CONV_KINDS = (("conv2d", 1, 5), ("conv2d", 2, 6), ("depthwise_conv2d", 1, 16), ("depthwise_conv2d", 2, 8),
              ("depthwise_conv2d", 1, 5))
# (bias, scale, shift, per-channel vectors in fp32 (else the input's dtype)).
EPILOGUES = ((True, True, True, True), (False, True, False, False), (True, False, True, False),
             (False, False, False, True), (True, True, True, False))


def _conv_cases():
    cases = []
    for i, (family, g, c_in) in enumerate(CONV_KINDS):
        for j, dtype in enumerate(DTYPES):
            for k, layout in enumerate(LAYOUTS):
                for a, act in enumerate(ACTIVATIONS):
                    r = i + j + k + a
                    kernel, stride = (1, 3, 3, 5)[r % 4], (1, 2)[(r // 2) % 2]
                    epilogue = EPILOGUES[r % len(EPILOGUES)]
                    flags = "+".join(f for f, on in zip(("bias", "scale", "shift", "fp32vec"), epilogue) if on)
                    ident = (f"{family}-g{g}-c{c_in}-{str(dtype)[6:]}-{layout}-k{kernel}s{stride}-{act}-"
                             f"{flags or 'plain'}")
                    cases.append(pytest.param(family, g, c_in, dtype, layout, kernel, stride, act, epilogue,
                                              id=ident))
    return cases


CONV_CASES = _conv_cases()


def conv_problem(family, g, c_in, dtype, layout, kernel, stride, with_bias):
    """Odd sizes: several pixel tiles of the implicit GEMM (128 pixels) and of the depthwise kernels."""
    if family == "conv2d":
        c_out, groups, hw = (20, 1, (19, 13)) if g == 1 else (10, 2, (19, 13))
        w_shape = (c_out, c_in // groups, kernel, kernel)
    else:
        groups, hw = c_in, (37, 23)
        c_out = c_in * g
        w_shape = (c_out, 1, kernel, kernel)
    x, _ = make((3, c_in, *hw), dtype, layout)
    w = torch.randn(w_shape, dtype=dtype, device=DEVICE)
    b = torch.randn(c_out, dtype=dtype, device=DEVICE) if with_bias else None
    spec = conv2d_spec(x.shape, w.shape, None if b is None else b.shape, stride, kernel // 2, 1, groups)
    return x, w, b, spec, (x.shape[0], c_out, *spec.out_hw)


@gpu_case
@pytest.mark.parametrize("family,g,c_in,dtype,layout,kernel,stride,activation,epilogue", CONV_CASES)
def test_fwd_act_matches_reference(family, g, c_in, dtype, layout, kernel, stride, activation, epilogue):
    has_bias, has_scale, has_shift, vec32 = epilogue
    x, w, b, spec, out_shape = conv_problem(family, g, c_in, dtype, layout, kernel, stride, has_bias)
    vdt = torch.float32 if vec32 else dtype
    c_out = out_shape[1]
    scale = (torch.rand(c_out, device=DEVICE) + 0.5).to(vdt) if has_scale else None
    shift = torch.randn(c_out, device=DEVICE).to(vdt) if has_shift else None
    name = f"{family}_fwd_act"
    out, big = make(out_shape, dtype, layout, fill=float("nan"))
    cuda_kernel(family, name)(x, w, b, scale, shift, out, spec, activation)
    assert_view_only(big, out)
    truth = torch.empty(out_shape, dtype=torch.float64, device=DEVICE)
    reference_kernel(family, name)(f64(x), f64(w), f64(b), f64(scale), f64(shift), truth, spec, activation)
    same = torch.empty(out_shape, dtype=dtype, device=DEVICE)
    reference_kernel(family, name)(x, w, b, scale, shift, same, spec, activation)
    assert_matches_reference(out, truth, same, name)


def assert_partials_match(partials, out):
    """combine_partials(partials) == the fp64 count, mean and biased variance of ``out`` as stored."""
    n, c, oh, ow = out.shape
    assert partials.dim() == 3 and partials.shape[1:] == (c, 3), tuple(partials.shape)
    assert partials.dtype == torch.float32
    assert torch.isfinite(partials).all(), "unwritten (NaN) or non-finite statistics partials"
    assert torch.equal(partials[..., 0], partials[..., 0].round()), "non-integer partial counts"
    assert (partials[..., 2] >= 0).all(), "negative M2"
    count, mean, var = combine_partials(partials)
    assert torch.equal(count, torch.full_like(count, n * oh * ow)), f"counts {count.tolist()}, not {n * oh * ow}"
    y = out.double()
    mean64, var64 = y.mean((0, 2, 3)), y.var((0, 2, 3), unbiased=False)
    mag = y.abs().max().item()
    torch.testing.assert_close(mean.double(), mean64, rtol=0, atol=1e-6 * mag)
    torch.testing.assert_close(var.double(), var64, rtol=1e-4, atol=1e-8 * mag ** 2)


@gpu_case
@pytest.mark.parametrize("family,g,c_in,dtype,layout,kernel,stride,activation,epilogue", CONV_CASES[::4])
def test_fwd_stats_matches_reference(family, g, c_in, dtype, layout, kernel, stride, activation, epilogue):
    has_bias = epilogue[0]
    x, w, b, spec, out_shape = conv_problem(family, g, c_in, dtype, layout, kernel, stride, has_bias)
    name = f"{family}_fwd_stats"
    out, big = make(out_shape, dtype, layout, fill=float("nan"))
    partials = cuda_kernel(family, name)(x, w, b, out, spec)
    assert_view_only(big, out)
    truth = torch.empty(out_shape, dtype=torch.float64, device=DEVICE)
    reference_kernel(family, name)(f64(x), f64(w), f64(b), truth, spec)
    same = torch.empty(out_shape, dtype=dtype, device=DEVICE)
    reference_kernel(family, name)(x, w, b, same, spec)
    assert_matches_reference(out, truth, same, name)
    assert_partials_match(partials, out)


@gpu_case
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("family", ["conv2d", "depthwise_conv2d"])
def test_fwd_stats_mean_far_above_spread(family, layout):
    """Outputs 1e4 * k + N(0, k^2) in fp32 over many pixel tiles: the two-pass tile statistics and Chan's merge
    keep the variance, where an fp32 sum / sum of squares would lose it (checked, so the test has teeth)."""
    n, h, w = 8, 64, 64
    # Per channel 1e4 * k + N(0, k^2) with power-of-two k: every stored value is exact.
    wt = torch.tensor([1.0, 0.5, -2.0], device=DEVICE).view(3, 1, 1, 1)
    x, groups = make((n, 1 if family == "conv2d" else 3, h, w), torch.float32, layout)[0], 1 if family == "conv2d" else 3
    x.add_(1e4)
    spec = conv2d_spec(x.shape, wt.shape, None, 1, 0, 1, groups)
    out = make((n, 3, h, w), torch.float32, layout, fill=float("nan"))[0]
    partials = cuda_kernel(family, f"{family}_fwd_stats")(x, wt, None, out, spec)
    count, mean, var = combine_partials(partials)
    y = out.double()
    mean64, var64 = y.mean((0, 2, 3)), y.var((0, 2, 3), unbiased=False)
    assert torch.equal(count, torch.full_like(count, n * h * w))
    torch.testing.assert_close(mean.double(), mean64, rtol=1e-6, atol=0)
    torch.testing.assert_close(var.double(), var64, rtol=1e-4, atol=0)
    yf = out.float()
    naive = (yf * yf).mean((0, 2, 3)) - yf.mean((0, 2, 3)) ** 2
    assert ((naive.double() - var64).abs() / var64).max() > 1e-2, "the naive formula would pass: no test"


@gpu_case
def test_fwd_stats_tiles_query_and_checks():
    """The partials' first extent comes from the extension's query; a wrong shape is refused."""
    x = torch.randn(2, 8, 9, 9, device=DEVICE)
    w = torch.randn(8, 1, 3, 3, device=DEVICE)
    out = torch.empty(2, 8, 9, 9, device=DEVICE)
    ops = torch.ops.cnnkern_cuda
    tiles = ops.depthwise_conv2d_fwd_stats_tiles(x, w, out, [1, 1], [1, 1], [1, 1])
    assert tiles >= 1
    bad = torch.empty(tiles + 1, 8, 3, device=DEVICE)
    with pytest.raises(RuntimeError, match="partials must have shape"):
        ops.depthwise_conv2d_fwd_stats(x, w, None, out, bad, [1, 1], [1, 1], [1, 1])
    assert ops.conv2d_fwd_stats_tiles(x, torch.randn(4, 8, 3, 3, device=DEVICE), out[:, :4]) == 2  # 162 px


@gpu_case
def test_fwd_act_unknown_activation_is_refused():
    x = torch.randn(1, 2, 5, 5, device=DEVICE)
    w = torch.randn(2, 2, 3, 3, device=DEVICE)
    spec = conv2d_spec(x.shape, w.shape, None, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="unknown activation"):
        cuda_kernel("conv2d", "conv2d_fwd_act")(x, w, None, None, None, torch.empty_like(x), spec, "gelu")
    with pytest.raises(RuntimeError, match="activation must be"):
        torch.ops.cnnkern_cuda.conv2d_fwd_act(x, w, None, None, None, torch.empty_like(x), [1, 1], [1, 1], [1, 1],
                                              1, 7)


# ---------------------------------------------------------------------- normalize and the backward
def _bn_cases():
    cases = []
    for j, dtype in enumerate(DTYPES):
        for i, layout in enumerate(LAYOUTS):
            for act in ACTIVATIONS:
                ident = f"{str(dtype)[6:]}-{layout}-{act}"
                cases.append(pytest.param((3, 10, 7, 9), dtype, (layout,) * 3, act, id=ident))
    extra = (
        # 16-byte access: channels_last with C a multiple of 8 (and several channel blocks), NCHW planes with
        # H*W a multiple of 8.
        ((2, 16, 5, 3), torch.float16, ("channels_last",) * 3, "relu6", "aligned-cl"),
        ((4, 264, 3, 5), torch.bfloat16, ("channels_last",) * 3, "silu", "aligned-cl-blocks"),
        ((2, 3, 8, 8), torch.bfloat16, ("nchw",) * 3, "silu", "aligned-nchw"),
        ((3, 12, 7, 7), torch.float32, ("channels_last",) * 3, "relu", "aligned-cl-fp32"),
        # Many splits and several items per thread.
        ((16, 24, 28, 28), torch.float16, ("channels_last",) * 3, "relu", "splits-cl"),
        ((16, 6, 40, 30), torch.float32, ("nchw",) * 3, "silu", "splits-nchw"),
        # grad, y and out each in its own layout (y decides the iteration).
        ((2, 6, 5, 7), torch.float16, ("strided", "channels_last", "nchw"), None, "mixed-cl"),
        ((2, 6, 5, 7), torch.float32, ("channels_last", "strided_cl", "strided"), "silu", "mixed-strided"),
        ((2, 16, 4, 4), torch.bfloat16, ("nchw", "channels_last", "channels_last"), "relu6", "mixed-vec-y"),
        ((1, 1, 1, 1), torch.float32, ("nchw",) * 3, "relu", "single"),
        ((5, 1, 3, 7), torch.float16, ("channels_last",) * 3, "relu", "one-channel"),
    )
    cases += [pytest.param(shape, dtype, lays, act, id=ident) for shape, dtype, lays, act, ident in extra]
    return cases


BN_CASES = _bn_cases()


def bn_inputs(shape, dtype, layouts, strided_vectors=False):
    """grad, y (in their layouts) and the per-channel fp32 vectors a, b, mean, invstd, k_dz, k_one, k_xhat
    (b spread around 0 so that every branch of each activation is taken)."""
    grad, _ = make(shape, dtype, layouts[0])
    y, _ = make(shape, dtype, layouts[1])
    c = shape[1]
    step = 2 if strided_vectors else 1
    vec = [torch.randn(c * step, device=DEVICE)[::step] for _ in range(7)]
    vec[1] = vec[1] * 3
    vec[3] = vec[3].abs() + 0.5  # invstd > 0
    return grad, y, vec


@gpu_case
@pytest.mark.parametrize("shape,dtype,layouts,activation", BN_CASES)
def test_normalize_matches_reference(shape, dtype, layouts, activation):
    _grad, y, (a, b, *_rest) = bn_inputs(shape, dtype, layouts, strided_vectors=layouts[0] == "strided")
    name = "conv_bn_relu_normalize"
    out, big = make(shape, dtype, layouts[2], fill=float("nan"))
    cuda_kernel("conv_bn_relu", name)(y, a, b, out, activation)
    assert_view_only(big, out)
    truth = torch.empty(shape, dtype=torch.float64, device=DEVICE)
    reference_kernel("conv_bn_relu", name)(f64(y), f64(a), f64(b), truth, activation)
    same = torch.empty(shape, dtype=dtype, device=DEVICE)
    reference_kernel("conv_bn_relu", name)(y, a, b, same, activation)
    assert_matches_reference(out, truth, same, name)


@gpu_case
@pytest.mark.parametrize("shape,dtype,layouts,activation", BN_CASES)
def test_backward_reduce_matches_reference(shape, dtype, layouts, activation):
    grad, y, (a, b, mean, invstd, *_ks) = bn_inputs(shape, dtype, layouts)
    name = "conv_bn_relu_bwd_reduce"
    sums = cuda_kernel("conv_bn_relu", name)(grad, y, a, b, mean, invstd, activation)
    truth = reference_kernel("conv_bn_relu", name)(f64(grad), f64(y), f64(a), f64(b), f64(mean), f64(invstd),
                                                  activation)
    same = reference_kernel("conv_bn_relu", name)(grad, y, a, b, mean, invstd, activation)
    for got, t, s, what in zip(sums, truth, same, ("sum_dz", "sum_dz_xhat")):
        assert got.shape == (shape[1],) and got.dtype == torch.float32, (what, got.shape, got.dtype)
        assert_matches_reference(got, t, s, f"{name} {what}")
    # Deterministic: fixed splits per shape, per-block partials added in a fixed order, no atomics.
    again = cuda_kernel("conv_bn_relu", name)(grad, y, a, b, mean, invstd, activation)
    assert all(torch.equal(x, z) for x, z in zip(sums, again)), "bwd_reduce is not bitwise reproducible"


@gpu_case
@pytest.mark.parametrize("shape,dtype,layouts,activation", BN_CASES)
def test_backward_apply_matches_reference(shape, dtype, layouts, activation):
    grad, y, (a, b, mean, invstd, k_dz, k_one, k_xhat) = bn_inputs(shape, dtype, layouts,
                                                                   strided_vectors=layouts[2] == "strided")
    name = "conv_bn_relu_bwd_apply"
    out, big = make(shape, dtype, layouts[2], fill=float("nan"))
    vecs = (a, b, mean, invstd, k_dz, k_one, k_xhat)
    cuda_kernel("conv_bn_relu", name)(grad, y, *vecs, out, activation)
    assert_view_only(big, out)
    truth = torch.empty(shape, dtype=torch.float64, device=DEVICE)
    reference_kernel("conv_bn_relu", name)(f64(grad), f64(y), *map(f64, vecs), truth, activation)
    same = torch.empty(shape, dtype=dtype, device=DEVICE)
    reference_kernel("conv_bn_relu", name)(grad, y, *vecs, same, activation)
    assert_matches_reference(out, truth, same, name)


@gpu_case
def test_elementwise_64bit_offsets():
    """y spanning more than 2^31 elements (a view with a huge batch stride): the int64 instantiations."""
    free, _total = torch.cuda.mem_get_info()
    c, h, w = 16, 4, 4
    span = 2 ** 31 + c * h * w
    if free < 3 * span:  # fp16: 2 bytes each, plus headroom
        pytest.skip("not enough free GPU memory for a > 2^31-element view")
    buf = torch.randn(span, dtype=torch.float16, device=DEVICE)
    y = buf.as_strided((2, c, h, w), (2 ** 31, 1, w * c, c))  # channels_last planes, images 2^31 apart
    a, b = torch.randn(c, device=DEVICE), torch.randn(c, device=DEVICE)
    out = torch.full((2, c, h, w), float("nan"), dtype=torch.float16, device=DEVICE)
    cuda_kernel("conv_bn_relu", "conv_bn_relu_normalize")(y, a, b, out, "relu")
    ref = torch.relu(y.double() * a.double().view(1, -1, 1, 1) + b.double().view(1, -1, 1, 1))
    torch.testing.assert_close(out.double(), ref, atol=2e-3 * max(1.0, ref.abs().max().item()), rtol=2e-3)
    sums = cuda_kernel("conv_bn_relu", "conv_bn_relu_bwd_reduce")(y, y, a, b, a, b.abs() + 1, "silu")
    ref_sums = reference_kernel("conv_bn_relu", "conv_bn_relu_bwd_reduce")(y.double(), y.double(), a.double(),
                                                                          b.double(), a.double(),
                                                                          b.double().abs() + 1, "silu")
    for got, want in zip(sums, ref_sums):
        torch.testing.assert_close(got.double(), want, atol=1e-3 * max(1.0, want.abs().max().item()), rtol=1e-3)
    del buf


@gpu_case
def test_elementwise_argument_checks():
    y = torch.randn(2, 4, 3, 3, device=DEVICE)
    a = torch.ones(4, device=DEVICE)
    normalize = cuda_kernel("conv_bn_relu", "conv_bn_relu_normalize")
    with pytest.raises(ValueError, match="unknown activation"):
        normalize(y, a, a, torch.empty_like(y), "gelu")
    with pytest.raises(RuntimeError, match="must be float32"):
        normalize(y, a.double(), a, torch.empty_like(y), "relu")
    with pytest.raises(RuntimeError, match="must have shape"):
        normalize(y, torch.ones(3, device=DEVICE), a, torch.empty_like(y), "relu")
    with pytest.raises(RuntimeError, match="overlap"):
        normalize(y, a, a, torch.empty(36, device=DEVICE).as_strided((2, 4, 3, 3), (0, 9, 3, 1)), "relu")


def test_kernels_are_registered():
    """The cuda backend's family modules list every kernel of the contract (no GPU needed)."""
    for family, names in (("conv2d", ("conv2d_fwd_act", "conv2d_fwd_stats")),
                          ("depthwise_conv2d", ("depthwise_conv2d_fwd_act", "depthwise_conv2d_fwd_stats")),
                          ("conv_bn_relu", ("conv_bn_relu_normalize", "conv_bn_relu_bwd_reduce",
                                            "conv_bn_relu_bwd_apply"))):
        module = BACKENDS["cuda"].module(family)
        for name in names:
            assert name in module.KERNELS, name
            assert name in BACKENDS["reference"].module(family).KERNELS, name
