"""conv_transpose2d on every backend against the fp64 reference: forward, input/weight/bias gradients.

The configurations are drawn by a seeded generator over the issue's ranges (stride 1-3 per axis, dilation
1-3, kernels 1-5 and rectangular, padding, output_padding < max(stride, dilation), groups), each with a
dtype and layout so that every dtype x layout pair is covered; a few fixed cases pin the corners.
"""

import random

import pytest
import torch
import torch.nn.functional as F
from _conv_cases import backend_params, make_input, poison_outputs, run_empty_batch  # noqa: F401
from tolerances import assert_matches_reference

import cnnkern

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["nchw", "channels_last", "strided"]


def _out_size(i, s, p, d, k, op):
    return (i - 1) * s - 2 * p + d * (k - 1) + op + 1


def _random_configs(count, seed=5):
    rng = random.Random(seed)
    configs = []
    while len(configs) < count:
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        dilation = (rng.randint(1, 3), rng.randint(1, 3))
        kernel = (rng.randint(1, 5), rng.randint(1, 5))
        padding = tuple(rng.randint(0, d * (k - 1)) for d, k in zip(dilation, kernel))
        output_padding = tuple(rng.randrange(max(s, d)) for s, d in zip(stride, dilation))
        groups = rng.randint(1, 3)
        shape = (rng.randint(1, 2), groups * rng.randint(1, 4), rng.randint(2, 6), rng.randint(2, 6))
        c_out = groups * rng.randint(1, 4)
        sizes = [_out_size(i, *a) for i, a in zip(shape[2:], zip(stride, padding, dilation, kernel, output_padding))]
        if min(sizes) <= 0:
            continue
        i = len(configs)
        configs.append(pytest.param(
            shape, c_out, kernel, stride, padding, output_padding, dilation, groups, rng.random() < 0.7,
            DTYPES[i % 3], LAYOUTS[(i // 3) % 3],
            id=f"rand{i}-s{stride}-p{padding}-op{output_padding}-d{dilation}-k{kernel}-g{groups}",
        ))
    return configs


# shape, C_out, kernel, stride, padding, output_padding, dilation, groups, bias, dtype, layout
FIXED = [
    pytest.param((2, 4, 5, 4), 6, (3, 3), 2, 1, 1, 1, 2, True, torch.float32, "channels_last", id="s2-op1-g2"),
    # output_padding >= stride (allowed by dilation): rows past every input's reach hold only the bias.
    pytest.param((1, 3, 4, 3), 2, (2, 3), 1, 0, (2, 1), 3, 1, True, torch.float32, "nchw", id="op-past-reach"),
    # Depthwise (the equivalent conv2d has groups == its input channels) with a channel multiplier of 2.
    pytest.param((1, 8, 4, 5), 4, (3, 3), 2, 1, 1, 1, 4, True, torch.float16, "channels_last",
                 id="depthwise-m2-s2"),
    pytest.param((2, 5, 3, 4), 5, (3, 2), (2, 3), 0, 0, 1, 5, False, torch.bfloat16, "nchw", id="depthwise-s2x3"),
    # Channels past one 16-wide K block and N tile; stride larger than the kernel (phases without taps).
    pytest.param((1, 36, 3, 3), 34, (1, 2), 3, 0, (2, 1), 1, 2, True, torch.float32, "strided", id="tails-s3-k1x2"),
]

CASES = FIXED + _random_configs(9)


def _reference_grads(x, w, b, g, kwargs, dtype):
    """ATen in fp64 (the truth) and in ``dtype`` (PyTorch's own error; fp16 on CPU computed in fp32)."""
    out = []
    for dt in (torch.float64, dtype):
        compute = torch.float32 if (dt == torch.float16 and x.device.type == "cpu") else dt
        leaves = [t.detach().to(dt).requires_grad_() for t in (x, w) + ((b,) if b is not None else ())]
        args = [t.to(compute) for t in leaves] + ([None] if b is None else [])
        y = F.conv_transpose2d(*args, **kwargs)
        grads = torch.autograd.grad(y, leaves, g.to(compute))
        out.append((y.to(dt), [gr.to(dt) for gr in grads]))
    return out


@pytest.fixture
def poison_transposed(monkeypatch, poison_outputs):  # noqa: F811
    """Kept for the tests' signatures: poison_outputs covers every allocation, the transposed op's included."""


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("shape,c_out,kernel,stride,padding,output_padding,dilation,groups,bias,dtype,layout",
                         CASES)
def test_conv_transpose2d_matches_reference(poison_transposed, device, backend, shape, c_out, kernel, stride,
                                            padding, output_padding, dilation, groups, bias, dtype, layout):
    x = make_input(shape, dtype, device, layout)
    w = (torch.randn(shape[1], c_out // groups, *kernel, device=device) * 0.5).to(dtype)
    b = torch.randn(c_out, device=device, dtype=dtype) if bias else None
    kwargs = {"stride": stride, "padding": padding, "output_padding": output_padding, "groups": groups,
              "dilation": dilation}
    leaves = [t.detach().requires_grad_() for t in (x, w) + ((b,) if bias else ())]
    with cnnkern.use_backend(backend):
        y = cnnkern.conv_transpose2d(*leaves, **kwargs)
        # One weight column per group: the equivalent conv2d is depthwise, and so is the kernel family.
        family = "depthwise_conv_transpose2d_fwd" if c_out == groups else "conv_transpose2d_fwd"
        assert cnnkern.last_choice().op == family and cnnkern.last_choice().backend == backend
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y)
        grads = torch.autograd.grad(y, leaves, g)
    (y64, g64), (ydt, gdt) = _reference_grads(x, w, b, g, kwargs, dtype)
    assert y.dtype == dtype and y.device == x.device
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)
    assert_matches_reference(y, y64, ydt, "output")
    for name, got, want, theirs in zip(("grad_input", "grad_weight", "grad_bias"), grads, g64, gdt):
        assert_matches_reference(got, want, theirs, name)
    assert grads[0].is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("device,backend", backend_params())
def test_fp64_gradcheck(device, backend):
    if backend == "cuda":
        pytest.skip("the CUDA kernels implement fp16/bf16/fp32 only; fp64 gradcheck runs on triton/reference")
    # Stride 2 by dilation 3 with output_padding 2 >= stride along W: the backward crops unreached columns.
    conf = {"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 2), "dilation": (1, 3), "groups": 2}
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(2, 2, 2, 3, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, device=device)  # its gradient (a sum) is checked elsewhere
    with cnnkern.use_backend(backend):
        assert torch.autograd.gradcheck(lambda x, w: cnnkern.conv_transpose2d(x, w, b, **conf), (x, w),
                                        fast_mode=True)


@pytest.mark.parametrize("device,backend", backend_params())
def test_opcheck(device, backend):
    x = torch.randn(1, 4, 3, 4, device=device, requires_grad=True)
    w = torch.randn(4, 3, 2, 3, device=device, requires_grad=True)
    b = torch.randn(6, device=device, requires_grad=True)
    x_cl = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    # Under the Triton interpreter every opcheck call costs seconds: one call there, both on the others.
    calls = [(b, x_cl)] if backend == "triton" and device == "cpu" else [(b, x_cl), (None, x)]
    with cnnkern.use_backend(backend):
        for bias, xx in calls:
            torch.library.opcheck(torch.ops.cnnkern.conv_transpose2d.default,
                                  (xx, w, bias, [2, 1], [1, 0], [1, 0], [1, 2], 2))


@pytest.mark.parametrize("device,backend", backend_params(device_backends=["reference", ("cuda", "cuda"),
                                                                           ("cuda", "triton")]))
def test_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    w = torch.randn(3, 4, 3, 3, device=device, requires_grad=True)
    x = torch.randn(2, 3, 5, 4, device=device)

    def f(x, w):
        return torch.relu(cnnkern.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1))

    with cnnkern.use_backend(backend):
        compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
        out = compiled(x, w)
        (gw,) = torch.autograd.grad(out.sum(), w)
    ref = torch.relu(F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1))
    (ref_gw,) = torch.autograd.grad(ref.sum(), w)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gw, ref_gw, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("device,backend", backend_params())
def test_unbatched_input(device, backend):
    x = torch.randn(3, 4, 5, device=device)
    w = torch.randn(3, 2, 3, 2, device=device)
    with cnnkern.use_backend(backend):
        y = cnnkern.conv_transpose2d(x, w, stride=2, padding=(1, 0))
    ref = F.conv_transpose2d(x, w, stride=2, padding=(1, 0))
    assert y.shape == ref.shape == (2, 7, 10)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device,backend", backend_params())
def test_empty_batch_and_no_input_channels(device, backend):
    b = run_empty_batch(cnnkern.conv_transpose2d, backend, device, (0, 3, 4, 4), (3, 2, 3, 3), (0, 2, 9, 9),
                        stride=2).detach()
    # ATen rejects a transposed weight without input channels; so must we, with its message.
    x, w = torch.randn(2, 0, 4, 4, device=device), torch.randn(0, 2, 3, 3, device=device)
    with pytest.raises(RuntimeError, match=r"expected weight to be at least 1 at dimension 0") as ours, \
            cnnkern.use_backend(backend):
        cnnkern.conv_transpose2d(x, w, b)
    with pytest.raises(RuntimeError) as aten:
        torch.nn.functional.conv_transpose2d(x, w, b)
    assert str(ours.value) == str(aten.value)


def _x(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


# input, weight, bias, kwargs, regex; PyTorch raises for all of these, and where it has a message we use it.
BAD = [
    pytest.param(_x(1, 4, 5, 5), _x(4, 3, 3, 3), None, {"stride": 2, "output_padding": 2},
                 r"output padding must be smaller than either stride or dilation, but got output_padding_height: "
                 r"2 output_padding_width: 2 stride_height: 2 stride_width: 2", id="output-padding-too-large"),
    pytest.param(_x(1, 4, 5, 5), _x(4, 3, 3, 3), None, {"output_padding": (0, 1), "dilation": (2, 1)},
                 r"output padding must be smaller than either stride or dilation", id="output-padding-vs-dilation"),
    pytest.param(_x(1, 4, 5, 5), _x(3, 3, 3, 3), None, {},
                 r"weight of size \[3, 3, 3, 3\], expected input\[1, 4, 5, 5\] to have 3 channels, but got 4",
                 id="channel-mismatch"),
    pytest.param(_x(1, 4, 5, 5), _x(4, 3, 3, 3), None, {"groups": 3},
                 r"groups=3, expected weight to be divisible by 3 at dimension 0.*\[4, 3, 3, 3\]", id="group-mismatch"),
    pytest.param(_x(1, 4, 5, 5), _x(4, 3, 3, 3), _x(4), {"groups": 2},
                 r"bias to be 1-dimensional with 6 elements, but got bias of size \[4\]", id="bias-size"),
    pytest.param(_x(1, 4, 5, 5), _x(4, 3, 3, 3), None, {"padding": 5},
                 r"input size per channel: \(5 x 5\). Calculated output size per channel: \(-3 x -3\)",
                 id="output-too-small"),
    pytest.param(_x(1, 4, 5, 5), _x(4, 3, 3, 3), None, {"padding": -1}, r"negative padding", id="padding-neg"),
    pytest.param(_x(1, 4, 5, 5), _x(4, 3, 3, 3), None, {"output_padding": -1}, r"negative output_padding",
                 id="output-padding-neg"),
    pytest.param(_x(1, 4, 5, 5), _x(4, 3, 3, 3), None, {"stride": 0}, r"non-positive stride", id="stride-0"),
    pytest.param(_x(1, 4, 5, 5), _x(4, 3, 3, 3), None, {"dilation": 0}, r"dilation should be greater than zero",
                 id="dilation-0"),
    pytest.param(_x(1, 4, 5, 5), _x(4, 3, 3, 3), None, {"groups": 0}, r"non-positive groups", id="groups-0"),
    pytest.param(_x(5, 5), _x(4, 3, 3, 3), None, {},
                 r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv_transpose2d.*\[5, 5\]", id="rank-2"),
    pytest.param(_x(1, 4, 5, 5), _x(4, 3, 3, 3, dtype=torch.float16), None, {},
                 r"input \(torch.float32\) and weight \(torch.float16\)", id="mixed-dtype"),
]


@pytest.mark.parametrize("x,w,bias,kwargs,match", BAD)
def test_bad_input_raises_clear_error(x, w, bias, kwargs, match):
    with pytest.raises(RuntimeError, match=match):
        cnnkern.conv_transpose2d(x, w, bias, **kwargs)
    with pytest.raises(RuntimeError):
        F.conv_transpose2d(x, w, bias, **kwargs)


def test_autograd_function_matches_functional():
    x = torch.randn(2, 4, 3, 5, requires_grad=True)
    w = torch.randn(4, 3, 3, 2, requires_grad=True)
    y = cnnkern.ConvTranspose2dFunction.apply(x, w, None, [2, 2], [1, 0], [1, 1], [1, 1], 2)
    ref = F.conv_transpose2d(x, w, None, 2, (1, 0), 1, 2, 1)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    gx, gw = torch.autograd.grad(y.square().sum(), (x, w))
    rx, rw = torch.autograd.grad(ref.square().sum(), (x, w))
    torch.testing.assert_close(gx, rx, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gw, rw, atol=1e-4, rtol=1e-4)


def test_explain_names_forward_and_gradient_ops():
    x, w = torch.randn(1, 4, 3, 3), torch.randn(4, 1, 3, 3)
    report = cnnkern.explain_conv_transpose2d(x, w, stride=2, groups=4)
    assert set(report) == {"depthwise_conv_transpose2d_fwd", "depthwise_conv2d_fwd", "depthwise_conv2d_bwd_weight"}
    assert all(choice.backend == "reference" for choice in report.values())
