"""cnnkern.nn modules against their torch.nn twins: same state_dict, same outputs and gradients, repr family."""

import copy

import pytest
import torch
from _conv_cases import nan_poison
from tolerances import assert_matches_reference

import cnnkern
import cnnkern.nn as cnn


@pytest.fixture
def poison_outputs(monkeypatch):
    """Every output the conv, transposed-conv and shuffle ops allocate starts as NaN."""
    nan_poison(monkeypatch)


def make_input(shape, layout, dtype=torch.float32):
    """(N, C, H, W) random input as 'nchw', 'channels_last', 'strided' (a sliced view) or 'unbatched'."""
    n, c, h, w = shape
    if layout == "unbatched":
        return torch.randn(c, h, w, dtype=dtype)
    if layout == "strided":
        return torch.randn(n, c + 2, h, 2 * w, dtype=dtype)[:, 1:-1, :, ::2]
    x = torch.randn(shape, dtype=dtype)
    return x.to(memory_format=torch.channels_last) if layout == "channels_last" else x


def forward_backward(module, x, **kwargs):
    """Output and gradients (input, weight, bias) for a fixed fp64-drawn output gradient."""
    x = x.detach().requires_grad_()
    y = module(x, **kwargs)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(y)
    params = [p for p in (getattr(module, "weight", None), getattr(module, "bias", None)) if p is not None]
    return y, torch.autograd.grad(y, [x, *params], g)


def twins(torch_cls, cnnkern_cls, kwargs):
    """A torch module and its cnnkern twin loaded from its state_dict (strict), plus an fp64 copy."""
    ref = torch_cls(**kwargs)
    ours = cnnkern_cls(**kwargs)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours, copy.deepcopy(ref).double()


def assert_module_matches(ref, ours, ref64, x, **kwargs):
    y, grads = forward_backward(ours, x, **kwargs)
    y32, grads32 = forward_backward(ref, x, **kwargs)
    y64, grads64 = forward_backward(ref64, x.double(), **kwargs)
    assert_matches_reference(y, y64, y32, "output")
    for name, got, want, theirs in zip(("grad_input", "grad_weight", "grad_bias"), grads, grads64, grads32):
        assert_matches_reference(got, want, theirs, name)
    return y


def assert_state_dict_round_trip(torch_cls, ours, kwargs):
    back = torch_cls(**kwargs)
    back.load_state_dict(ours.state_dict(), strict=True)
    assert list(back.state_dict()) == list(ours.state_dict())
    for key, value in ours.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


# ------------------------------------------------------------------------------------------------ Conv2d
def cfg(**kwargs):
    return kwargs


CONV_CASES = [
    pytest.param(cfg(in_channels=5, out_channels=7, kernel_size=3, stride=2, padding=1), "direct", id="direct"),
    pytest.param(cfg(in_channels=4, out_channels=6, kernel_size=(3, 2), padding=(2, 1), dilation=2, bias=False),
                 "direct", id="direct-dilated-rect-nobias"),
    pytest.param(cfg(in_channels=6, out_channels=9, kernel_size=3, padding=1, groups=3), "direct", id="grouped"),
    pytest.param(cfg(in_channels=6, out_channels=6, kernel_size=3, padding=1, groups=6), "depthwise",
                 id="depthwise"),
    pytest.param(cfg(in_channels=4, out_channels=8, kernel_size=5, stride=2, padding=2, groups=4), "depthwise",
                 id="depthwise-mult2-stride2"),
    pytest.param(cfg(in_channels=5, out_channels=7, kernel_size=1, bias=False), "pointwise", id="pointwise"),
    pytest.param(cfg(in_channels=6, out_channels=9, kernel_size=1, groups=3), "pointwise",
                 id="grouped-pointwise"),
    pytest.param(cfg(in_channels=3, out_channels=5, kernel_size=(3, 4), padding="same", dilation=(1, 2)),
                 "direct", id="same-even-kernel"),
    pytest.param(cfg(in_channels=3, out_channels=4, kernel_size=2, padding="valid"), "direct", id="valid"),
    pytest.param(cfg(in_channels=4, out_channels=5, kernel_size=3, padding=1, padding_mode="reflect"), "direct",
                 id="reflect"),
    pytest.param(cfg(in_channels=4, out_channels=4, kernel_size=3, padding=2, dilation=2, groups=4,
                      padding_mode="circular"), "depthwise", id="circular-depthwise"),
    pytest.param(cfg(in_channels=3, out_channels=5, kernel_size=4, padding="same", padding_mode="replicate"),
                 "direct", id="replicate-same"),
    pytest.param(cfg(in_channels=4, out_channels=6, kernel_size=1, padding=1, groups=2, padding_mode="reflect"),
                 "pointwise", id="reflect-pointwise"),
]
LAYOUTS = ["nchw", "channels_last", "strided", "unbatched"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kwargs, family", CONV_CASES)
def test_conv2d_matches_torch(poison_outputs, kwargs, family, layout):
    ref, ours, ref64 = twins(torch.nn.Conv2d, cnn.Conv2d, kwargs)
    assert ours.kernel_family == family
    assert f"kernel={family}" in repr(ours)
    assert repr(ours).replace(f", kernel={family}", "") == repr(ref)
    x = make_input((2, kwargs["in_channels"], 9, 11), layout)
    with cnnkern.use_backend("reference"):
        y = assert_module_matches(ref, ours, ref64, x)
    if layout == "channels_last" and ours.padding_mode == "zeros":
        assert y.is_contiguous(memory_format=torch.channels_last)
    assert_state_dict_round_trip(torch.nn.Conv2d, ours, kwargs)


def test_conv2d_is_a_torch_conv2d_with_the_same_parameters():
    kwargs = cfg(in_channels=3, out_channels=4, kernel_size=3, device="cpu", dtype=torch.float64)
    ours = cnn.Conv2d(**kwargs)
    ref = torch.nn.Conv2d(**kwargs)
    assert isinstance(ours, torch.nn.Conv2d)
    assert [(n, p.shape, p.dtype) for n, p in ours.named_parameters()] == \
           [(n, p.shape, p.dtype) for n, p in ref.named_parameters()]
    assert list(ours.state_dict()) == list(ref.state_dict())


def test_bad_input_names_the_shapes_and_dtypes():
    with pytest.raises(RuntimeError, match=r"weight of size \[6, 4, 3, 3\], expected input\[2, 5, 8, 8\] to have "
                                           r"4 channels, but got 5"):
        cnn.Conv2d(4, 6, 3)(torch.randn(2, 5, 8, 8))
    with pytest.raises(RuntimeError, match=r"input \(torch.float64\) and weight \(torch.float32\)"):
        cnn.Conv2d(4, 6, 3)(torch.randn(2, 4, 8, 8, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"transposed=1, weight of size \[4, 6, 3, 3\], expected "
                                           r"input\[2, 5, 8, 8\] to have 4 channels"):
        cnn.ConvTranspose2d(4, 6, 3)(torch.randn(2, 5, 8, 8))


# --------------------------------------------------------------------------------------- ConvTranspose2d
TRANSPOSE_CASES = [
    pytest.param(cfg(in_channels=4, out_channels=6, kernel_size=3), "transposed", id="basic"),
    pytest.param(cfg(in_channels=4, out_channels=5, kernel_size=3, stride=2, padding=1, output_padding=1),
                 "transposed", id="stride2-outpad1"),
    pytest.param(cfg(in_channels=3, out_channels=4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0),
                      dilation=(1, 2), bias=False), "transposed", id="rect-dilated-nobias"),
    pytest.param(cfg(in_channels=6, out_channels=9, kernel_size=3, stride=2, output_padding=1, groups=3),
                 "transposed", id="grouped"),
    pytest.param(cfg(in_channels=3, out_channels=3, kernel_size=3, dilation=2, output_padding=1),
                 "transposed", id="outpad-below-dilation"),
    pytest.param(cfg(in_channels=4, out_channels=4, kernel_size=3, stride=2, padding=1, groups=4),
                 "depthwise-transposed", id="depthwise"),
    pytest.param(cfg(in_channels=8, out_channels=4, kernel_size=4, stride=2, padding=1, groups=4),
                 "depthwise-transposed", id="depthwise-mult2"),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kwargs, family", TRANSPOSE_CASES)
def test_conv_transpose2d_matches_torch(poison_outputs, kwargs, family, layout):
    ref, ours, ref64 = twins(torch.nn.ConvTranspose2d, cnn.ConvTranspose2d, kwargs)
    assert ours.kernel_family == family
    assert f"kernel={family}" in repr(ours)
    x = make_input((2, kwargs["in_channels"], 5, 7), layout)
    with cnnkern.use_backend("reference"):
        y = assert_module_matches(ref, ours, ref64, x)
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)
    assert_state_dict_round_trip(torch.nn.ConvTranspose2d, ours, kwargs)


@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
def test_conv_transpose2d_output_size(poison_outputs, unbatched):
    kwargs = cfg(in_channels=3, out_channels=4, kernel_size=3, stride=(3, 2), padding=1)
    ref, ours, ref64 = twins(torch.nn.ConvTranspose2d, cnn.ConvTranspose2d, kwargs)
    x = make_input((2, 3, 4, 5), "unbatched" if unbatched else "nchw")
    lead = [4] if unbatched else [2, 4]
    # Valid heights are 10..12 and widths 9..10 (the smallest size up to smallest + stride - 1).
    with cnnkern.use_backend("reference"):
        for hw in ([10, 9], [11, 10], [12, 9]):
            for output_size in (hw, lead + hw):
                y = assert_module_matches(ref, ours, ref64, x, output_size=output_size)
                assert list(y.shape) == lead + hw
        for bad in ([9, 9], [13, 9], [10]):
            with pytest.raises(ValueError) as theirs:
                ref(x, output_size=bad)
            with pytest.raises(ValueError) as mine:
                ours(x, output_size=bad)
            assert str(mine.value) == str(theirs.value)


def test_conv_transpose2d_rejects_non_zero_padding_mode_like_torch():
    for cls in (torch.nn.ConvTranspose2d, cnn.ConvTranspose2d):
        with pytest.raises(ValueError, match="zeros"):
            cls(3, 4, 3, padding_mode="reflect")


# ------------------------------------------------------------------------------------------ ChannelShuffle
@pytest.mark.parametrize("shape, dtype, layout", [
    ((2, 6, 5, 3), torch.float32, "nchw"),
    ((2, 6, 5, 3), torch.float32, "channels_last"),
    ((2, 6, 5, 3), torch.float32, "strided"),
    ((2, 6, 7), torch.float32, "nchw"),          # 3-D is (N, C, L) to torch: dim 1 is shuffled
    ((2, 6, 3, 2, 2), torch.float64, "nchw"),    # 5-D: torch's own shuffle
    ((2, 6, 5, 3), torch.int64, "nchw"),         # integers: torch's own shuffle
], ids=["nchw", "channels_last", "strided", "3d", "5d", "int64"])
def test_channel_shuffle_matches_torch(poison_outputs, shape, dtype, layout):
    ref, ours = torch.nn.ChannelShuffle(3), cnn.ChannelShuffle(3)
    assert "kernel=channel_shuffle" in repr(ours)
    if len(shape) == 4:
        x = make_input(shape, layout, dtype) if dtype.is_floating_point else torch.randint(-9, 9, shape)
    else:
        x = torch.randn(shape, dtype=dtype)
    with cnnkern.use_backend("reference"):
        y = ours(x)
    assert torch.equal(y, ref(x))
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)
    if dtype.is_floating_point:
        xg = x.detach().requires_grad_()
        g = torch.randn(y.shape, dtype=dtype)
        with cnnkern.use_backend("reference"):
            (grad,) = torch.autograd.grad(ours(xg), xg, g)
        (want,) = torch.autograd.grad(ref(xg), xg, g)
        assert torch.equal(grad, want)


# ------------------------------------------------------------------------------- Triton (interpreter) path
TRITON_CASES = [
    pytest.param(torch.nn.Conv2d, cnn.Conv2d, cfg(in_channels=2, out_channels=3, kernel_size=3, padding=1),
                 (1, 2, 4, 5), id="conv2d-direct"),
    pytest.param(torch.nn.Conv2d, cnn.Conv2d, cfg(in_channels=3, out_channels=6, kernel_size=3, stride=2,
                                                   groups=3, padding_mode="reflect", padding=1),
                 (2, 3, 5, 6), id="conv2d-depthwise-reflect"),
    pytest.param(torch.nn.Conv2d, cnn.Conv2d, cfg(in_channels=4, out_channels=6, kernel_size=1, groups=2),
                 (2, 4, 3, 5), id="conv2d-grouped-pointwise"),
    pytest.param(torch.nn.ConvTranspose2d, cnn.ConvTranspose2d,
                 cfg(in_channels=4, out_channels=3, kernel_size=3, stride=2, padding=1, output_padding=1),
                 (2, 4, 3, 4), id="conv-transpose2d"),
]


@pytest.mark.parametrize("torch_cls, cnnkern_cls, kwargs, shape", TRITON_CASES)
def test_modules_on_triton(poison_outputs, backend_status, torch_cls, cnnkern_cls, kwargs, shape):
    if backend_status["triton"] is not None:
        pytest.skip(f"triton backend unavailable: {backend_status['triton']}")
    ref, ours, ref64 = twins(torch_cls, cnnkern_cls, kwargs)
    x = make_input(shape, "channels_last")
    with cnnkern.use_backend("triton"):
        assert_module_matches(ref, ours, ref64, x)
        assert "'triton'" in str(cnnkern.last_choice())


def test_channel_shuffle_on_triton(poison_outputs, backend_status):
    if backend_status["triton"] is not None:
        pytest.skip(f"triton backend unavailable: {backend_status['triton']}")
    x = make_input((2, 6, 3, 4), "channels_last")
    with cnnkern.use_backend("triton"):
        y = cnn.ChannelShuffle(2)(x)
    assert torch.equal(y, torch.nn.ChannelShuffle(2)(x))
