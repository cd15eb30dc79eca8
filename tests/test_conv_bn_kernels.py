"""The Triton kernels of fused conv + BatchNorm + activation (issue 12) against the reference kernels.

Each kernel is called directly, as the ops layer calls it (``BACKENDS["triton"].kernel(family, name)``), and
compared with ``cnnkern.reference.<family>.KERNELS[name]``: the reference run on the same inputs cast to fp64
is the truth, and the reference in the inputs' own dtype is "PyTorch's own error" of tests/tolerances.py.
(The reference epilogue rounds conv + bias to the input dtype before the scale; the kernels round once, so
an fp16/bf16 reference is not exact, only close.) Every output starts as NaN, so an element a kernel does not
write fails; sliced-view outputs also check that nothing outside the view is written. The statistics
partials are checked the way the ops use them: merged by ``combine_partials``, against the fp64 mean and
variance of the output as stored.

The cases rotate dtype, layout, groups/multiplier, kernel size, stride, activation and which of bias, scale
and shift are given, so every value of each appears (and most pairs) without the full product, which the
interpreter could not run in CI time. Without a GPU they run under the Triton interpreter (conftest.py).
"""

import importlib

import pytest
import torch
from _conv_cases import nan_poison
from tolerances import assert_matches_reference

import cnnkern
from cnnkern.ops.registry import BACKENDS
from cnnkern.problem.conv2d import conv2d_spec
from cnnkern.problem.conv_bn import combine_partials

_WHY = cnnkern.backend_status()["triton"]
pytestmark = pytest.mark.skipif(_WHY is not None, reason=f"triton backend unavailable: {_WHY}")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
LAYOUTS = ("nchw", "channels_last", "strided")
ACTIVATIONS = (None, "relu", "relu6", "silu")


@pytest.fixture(autouse=True)
def _poison_kernel_buffers(monkeypatch):
    # The buffers the kernels allocate themselves (statistics and reduction partials) start as NaN too.
    nan_poison(monkeypatch)


def triton_kernel(family, name):
    return BACKENDS["triton"].kernel(family, name)


def reference_kernel(family, name):
    return importlib.import_module(f"cnnkern.reference.{family}").KERNELS[name]


def acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def make(shape, dtype, layout, fill=None):
    """A tensor in a layout: 'nchw', 'channels_last', 'strided' (a view into a larger NCHW tensor with a
    channel offset and every other column), or 'strided_cl' (the same of a channels_last tensor). With
    ``fill`` the whole allocation holds that value; the larger tensor is returned too (or None)."""
    n, c, h, w = shape
    if layout.startswith("strided"):
        big_shape = (n, c + 1, h, 2 * w)
    else:
        big_shape = shape
    big = torch.full(big_shape, fill, dtype=dtype, device=DEVICE) if fill is not None else \
        torch.randn(big_shape, dtype=dtype, device=DEVICE)
    if layout in ("channels_last", "strided_cl"):
        big = big.to(memory_format=torch.channels_last)
    if layout.startswith("strided"):
        view = big[:, 1:, :, ::2]
        assert not view.is_contiguous() and not view.is_contiguous(memory_format=torch.channels_last)
        return view, big
    return big, None


def nan_output(shape, dtype, layout):
    return make(shape, dtype, layout, fill=float("nan"))


def assert_view_only(big, view):
    """Every element of ``big`` outside ``view`` is still NaN (no write past the view)."""
    if big is None:
        return
    mask = torch.ones_like(big, dtype=torch.bool)
    mask[:, 1:, :, ::2] = False
    assert torch.isnan(big[mask]).all(), "a kernel wrote outside the output view"


def f64(t):
    return None if t is None else t.double()


# ----------------------------------------------------------------------------------- conv epilogues
# (family, groups or multiplier): conv2d with 1 and 2 groups, depthwise with channel multiplier 1 and 2.
CONV_KINDS = (("conv2d", 1), ("conv2d", 2), ("depthwise_conv2d", 1), ("depthwise_conv2d", 2))
# (bias, scale, shift, per-channel vectors in fp32 (else the input's dtype)).
EPILOGUES = ((True, True, True, True), (False, True, False, False), (True, False, True, False),
             (False, False, False, True))


def _conv_cases():
    cases = []
    for i, (family, g) in enumerate(CONV_KINDS):
        for j, dtype in enumerate(DTYPES):
            layout = LAYOUTS[(i + j) % 3]
            kernel = (1, 3)[(j + i // 2) % 2]
            stride = (1, 2)[(i + j // 2) % 2]
            act = ACTIVATIONS[(i + j) % 4]
            epilogue = EPILOGUES[(j + 2 * i + i // 2) % 4]
            flags = "+".join(f for f, on in zip(("bias", "scale", "shift", "fp32vec"), epilogue) if on)
            ident = f"{family}-{g}-{str(dtype)[6:]}-{layout}-k{kernel}s{stride}-{act}-{flags or 'plain'}"
            cases.append(pytest.param(family, g, dtype, layout, kernel, stride, act, epilogue, id=ident))
    return cases


CONV_CASES = _conv_cases()


def conv_problem(family, g, dtype, layout, kernel, stride, with_bias):
    """Input, weight, bias and spec of a small problem with odd sizes (several pixel tiles, and for the
    depthwise NCHW kernel several spatial tiles of a plane)."""
    if family == "conv2d":
        c_in, c_out, groups, hw = (5, 20, 1, (9, 7)) if g == 1 else (6, 10, 2, (9, 7))
        w_shape = (c_out, c_in // groups, kernel, kernel)
    else:
        c_in, groups, hw = 5, 5, (18, 7)
        c_out = c_in * g
        w_shape = (c_out, 1, kernel, kernel)
    x, _ = make((2, c_in, *hw), dtype, layout)
    w = torch.randn(w_shape, dtype=dtype, device=DEVICE)
    b = torch.randn(c_out, dtype=dtype, device=DEVICE) if with_bias else None
    spec = conv2d_spec(x.shape, w.shape, None if b is None else b.shape, stride, kernel // 2, 1, groups)
    return x, w, b, spec, (x.shape[0], c_out, *spec.out_hw)


@pytest.mark.parametrize("family,g,dtype,layout,kernel,stride,activation,epilogue", CONV_CASES)
def test_fwd_act_matches_reference(family, g, dtype, layout, kernel, stride, activation, epilogue):
    has_bias, has_scale, has_shift, vec32 = epilogue
    x, w, b, spec, out_shape = conv_problem(family, g, dtype, layout, kernel, stride, has_bias)
    vdt = torch.float32 if vec32 and dtype != torch.float64 else dtype
    c_out = out_shape[1]
    # A strided view: per-channel vectors need not be contiguous.
    scale = (torch.rand(2 * c_out, device=DEVICE) + 0.5).to(vdt)[::2] if has_scale else None
    shift = torch.randn(c_out, device=DEVICE).to(vdt) if has_shift else None
    name = f"{family}_fwd_act"
    out, big = nan_output(out_shape, dtype, layout)
    triton_kernel(family, name)(x, w, b, scale, shift, out, spec, activation)
    assert_view_only(big, out)
    truth = torch.empty(out_shape, dtype=torch.float64, device=DEVICE)
    reference_kernel(family, name)(f64(x), f64(w), f64(b), f64(scale), f64(shift), truth, spec, activation)
    same = torch.empty(out_shape, dtype=dtype, device=DEVICE)
    reference_kernel(family, name)(x, w, b, scale, shift, same, spec, activation)
    assert_matches_reference(out, truth, same, name)


def assert_partials_match(partials, out, dtype):
    """combine_partials(partials) == the fp64 count, mean and biased variance of ``out`` as stored."""
    n, c, oh, ow = out.shape
    assert partials.dim() == 3 and partials.shape[1:] == (c, 3), tuple(partials.shape)
    assert partials.dtype == acc_dtype(dtype)
    assert torch.isfinite(partials).all(), "unwritten (NaN) or non-finite statistics partials"
    assert torch.equal(partials[..., 0], partials[..., 0].round()), "non-integer partial counts"
    count, mean, var = combine_partials(partials)
    pixels = n * oh * ow
    assert torch.equal(count, torch.full_like(count, pixels)), f"counts {count.tolist()}, not {pixels}"
    y = out.double()
    mean64, var64 = y.mean((0, 2, 3)), y.var((0, 2, 3), unbiased=False)
    # The stored values are exact in the statistics' dtype; what is left is its rounding in the sums: a few
    # units of the values' magnitude for the mean, of the variance itself for the variance.
    eps = 1e-13 if dtype == torch.float64 else 1e-6
    mag = y.abs().max().item()
    torch.testing.assert_close(mean.double(), mean64, rtol=0, atol=eps * mag)
    torch.testing.assert_close(var.double(), var64, rtol=10 * eps, atol=eps * 1e-2 * mag ** 2)


@pytest.mark.parametrize("family,g,dtype,layout,kernel,stride,activation,epilogue", CONV_CASES)
def test_fwd_stats_matches_reference(family, g, dtype, layout, kernel, stride, activation, epilogue):
    has_bias = epilogue[0]
    x, w, b, spec, out_shape = conv_problem(family, g, dtype, layout, kernel, stride, has_bias)
    name = f"{family}_fwd_stats"
    out, big = nan_output(out_shape, dtype, layout)
    partials = triton_kernel(family, name)(x, w, b, out, spec)
    assert_view_only(big, out)
    truth = torch.empty(out_shape, dtype=torch.float64, device=DEVICE)
    reference_kernel(family, name)(f64(x), f64(w), f64(b), truth, spec)
    same = torch.empty(out_shape, dtype=dtype, device=DEVICE)
    ref_partials = reference_kernel(family, name)(x, w, b, same, spec)
    assert_matches_reference(out, truth, same, name)
    assert_partials_match(partials, out, dtype)
    assert ref_partials.shape[1:] == partials.shape[1:]


@pytest.mark.parametrize("family", ["conv2d", "depthwise_conv2d"])
def test_fwd_stats_mean_far_above_spread(family):
    """Values 1e4 + N(0, 1) in fp32 over many pixel tiles (256 of the interpreter's): the two-pass tile
    statistics and Chan's merge keep the variance, where fp32 sum / sum-of-squares would lose it entirely
    (checked, so the test has teeth)."""
    # The implicit GEMM's interpreter tiles are 16 pixels, the depthwise pixel tiles 64.
    n, h, w = (4, 32, 32) if family == "conv2d" else (4, 64, 64)
    # Per channel 1e4 * k + N(0, k^2) with power-of-two k: every stored value is exact.
    wt = torch.tensor([1.0, 0.5, -2.0], device=DEVICE).view(3, 1, 1, 1)
    if family == "conv2d":  # 1 -> 3 channels (1x1 implicit GEMM)
        x, groups = 1e4 + torch.randn(n, 1, h, w, device=DEVICE), 1
    else:  # channels_last: the pixel-tile kernel
        x, groups = (1e4 + torch.randn(n, 3, h, w, device=DEVICE)).to(memory_format=torch.channels_last), 3
    spec = conv2d_spec(x.shape, wt.shape, None, 1, 0, 1, groups)
    out = torch.full((n, 3, h, w), float("nan"), device=DEVICE).to(memory_format=torch.channels_last)
    partials = triton_kernel(family, f"{family}_fwd_stats")(x, wt, None, out, spec)
    count, mean, var = combine_partials(partials)
    y = out.double()
    mean64, var64 = y.mean((0, 2, 3)), y.var((0, 2, 3), unbiased=False)
    assert torch.equal(count, torch.full_like(count, n * h * w))
    torch.testing.assert_close(mean.double(), mean64, rtol=1e-6, atol=0)
    torch.testing.assert_close(var.double(), var64, rtol=1e-4, atol=0)
    yf = out.float()
    naive = (yf * yf).mean((0, 2, 3)) - yf.mean((0, 2, 3)) ** 2
    assert ((naive.double() - var64).abs() / var64).max() > 1e-2, "the naive formula would pass: no test"


# ---------------------------------------------------------------------- normalize and the backward
def _bn_cases():
    cases = []
    for j, dtype in enumerate(DTYPES):
        for i, layout in enumerate(LAYOUTS):
            act = ACTIVATIONS[(i + j) % 4]
            ident = f"{str(dtype)[6:]}-{layout}-{act}"
            cases.append(pytest.param((3, 10, 7, 9), dtype, (layout,) * 3, act, id=ident))
    extra = (
        # 16-byte aligned channels_last (C a multiple of 8) and flat NCHW planes (H*W a multiple of 8).
        ((2, 16, 5, 3), torch.float16, ("channels_last",) * 3, "relu6", "aligned-cl"),
        ((2, 3, 8, 8), torch.bfloat16, ("nchw",) * 3, "silu", "aligned-nchw"),
        # Several tiles per reduction program and several splits (interpreter: > 512 pixels).
        ((4, 6, 16, 16), torch.float32, ("channels_last",) * 3, "relu", "splits-cl"),
        ((2, 3, 40, 30), torch.float32, ("nchw",) * 3, "silu", "splits-nchw"),
        # grad, y and out each in its own layout (y decides the tiling).
        ((2, 6, 5, 7), torch.float16, ("strided", "channels_last", "nchw"), None, "mixed-cl"),
        ((2, 6, 5, 7), torch.float32, ("channels_last", "strided_cl", "strided"), "silu", "mixed-strided"),
        ((1, 1, 1, 1), torch.float32, ("nchw",) * 3, "relu", "single"),
    )
    cases += [pytest.param(shape, dtype, lays, act, id=ident) for shape, dtype, lays, act, ident in extra]
    return cases


BN_CASES = _bn_cases()


def bn_inputs(shape, dtype, layouts):
    """grad, y (in their layouts) and the per-channel vectors a, b, mean, invstd, k_dz, k_one, k_xhat."""
    grad, _ = make(shape, dtype, layouts[0])
    y, _ = make(shape, dtype, layouts[1])
    c = shape[1]
    vec = [torch.randn(c, device=DEVICE, dtype=acc_dtype(dtype)) for _ in range(7)]
    vec[3] = vec[3].abs() + 0.5  # invstd > 0
    vec[0] = torch.randn(2 * c, device=DEVICE, dtype=acc_dtype(dtype))[1::2]  # vectors need not be contiguous
    return grad, y, vec


@pytest.mark.parametrize("shape,dtype,layouts,activation", BN_CASES)
def test_normalize_matches_reference(shape, dtype, layouts, activation):
    _grad, y, (a, b, *_rest) = bn_inputs(shape, dtype, layouts)
    name = "conv_bn_relu_normalize"
    out, big = nan_output(shape, dtype, layouts[2])
    triton_kernel("conv_bn_relu", name)(y, a, b, out, activation)
    assert_view_only(big, out)
    truth = torch.empty(shape, dtype=torch.float64, device=DEVICE)
    reference_kernel("conv_bn_relu", name)(f64(y), f64(a), f64(b), truth, activation)
    same = torch.empty(shape, dtype=dtype, device=DEVICE)
    reference_kernel("conv_bn_relu", name)(y, a, b, same, activation)
    assert_matches_reference(out, truth, same, name)


@pytest.mark.parametrize("shape,dtype,layouts,activation", BN_CASES)
def test_backward_reduce_matches_reference(shape, dtype, layouts, activation):
    grad, y, (a, b, mean, invstd, *_ks) = bn_inputs(shape, dtype, layouts)
    name = "conv_bn_relu_bwd_reduce"
    sums = triton_kernel("conv_bn_relu", name)(grad, y, a, b, mean, invstd, activation)
    truth = reference_kernel("conv_bn_relu", name)(f64(grad), f64(y), f64(a), f64(b), f64(mean), f64(invstd),
                                                  activation)
    same = reference_kernel("conv_bn_relu", name)(grad, y, a, b, mean, invstd, activation)
    for got, t, s, what in zip(sums, truth, same, ("sum_dz", "sum_dz_xhat")):
        assert got.shape == (shape[1],) and got.dtype == acc_dtype(dtype), (what, got.shape, got.dtype)
        assert_matches_reference(got, t, s, f"{name} {what}")
    # Deterministic: fixed tiles, per-program partials summed in a fixed order, no atomics.
    again = triton_kernel("conv_bn_relu", name)(grad, y, a, b, mean, invstd, activation)
    assert all(torch.equal(x, z) for x, z in zip(sums, again)), "bwd_reduce is not bitwise reproducible"


@pytest.mark.parametrize("shape,dtype,layouts,activation", BN_CASES)
def test_backward_apply_matches_reference(shape, dtype, layouts, activation):
    grad, y, (a, b, mean, invstd, k_dz, k_one, k_xhat) = bn_inputs(shape, dtype, layouts)
    name = "conv_bn_relu_bwd_apply"
    out, big = nan_output(shape, dtype, layouts[2])
    triton_kernel("conv_bn_relu", name)(grad, y, a, b, mean, invstd, k_dz, k_one, k_xhat, out, activation)
    assert_view_only(big, out)
    truth = torch.empty(shape, dtype=torch.float64, device=DEVICE)
    vecs = (a, b, mean, invstd, k_dz, k_one, k_xhat)
    reference_kernel("conv_bn_relu", name)(f64(grad), f64(y), *map(f64, vecs), truth, activation)
    same = torch.empty(shape, dtype=dtype, device=DEVICE)
    reference_kernel("conv_bn_relu", name)(grad, y, *vecs, same, activation)
    assert_matches_reference(out, truth, same, name)


def test_unknown_activation_is_refused():
    y = torch.randn(1, 2, 3, 3, device=DEVICE)
    a = torch.ones(2, device=DEVICE)
    with pytest.raises(ValueError, match="unknown activation"):
        triton_kernel("conv_bn_relu", "conv_bn_relu_normalize")(y, a, a, torch.empty_like(y), "gelu")


def test_kernels_are_registered():
    for family, names in (("conv2d", ("conv2d_fwd_act", "conv2d_fwd_stats")),
                          ("depthwise_conv2d", ("depthwise_conv2d_fwd_act", "depthwise_conv2d_fwd_stats")),
                          ("conv_bn_relu", ("conv_bn_relu_normalize", "conv_bn_relu_bwd_reduce",
                                            "conv_bn_relu_bwd_apply"))):
        for name in names:
            assert name in BACKENDS["triton"].module(family).KERNELS, name
            reference_kernel(family, name)
