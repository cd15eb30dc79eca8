"""Depthwise conv2d on every backend against the fp64 reference, plus routing, determinism and errors."""

import pytest
import torch
import torch.nn.functional as F
from _conv_cases import (  # noqa: F401
    assert_conv_results,
    backend_params,
    make_input,
    poison_outputs,
    reference_grads,
    run_conv,
)
from tolerances import assert_matches_reference

import cnnkern

# (N, C, H, W), multiplier, (kH, kW), stride, padding, dilation, bias. Odd sizes throughout; the CUDA
# vector paths move 8 halves / 4 floats, so most channel counts are deliberately not multiples of 8.
CASES = [
    pytest.param((2, 5, 6, 7), 1, (1, 1), 1, 0, 1, True, id="k1"),
    pytest.param((1, 6, 7, 8), 1, (2, 2), 1, "same", 1, False, id="k2-same-asymmetric"),
    pytest.param((2, 3, 9, 7), 1, (3, 3), 1, 1, 1, True, id="k3"),
    pytest.param((1, 4, 9, 10), 2, (3, 3), 2, 1, 1, True, id="k3-m2-s2"),
    pytest.param((1, 3, 11, 12), 4, (5, 5), 1, 4, 2, False, id="k5-m4-d2"),
    pytest.param((2, 5, 13, 11), 1, (7, 7), 3, 3, 1, True, id="k7-s3"),
    pytest.param((1, 3, 10, 13), 2, (3, 5), (1, 2), (2, 1), (2, 1), True, id="k3x5-s1x2-d2x1"),
    pytest.param((1, 4, 12, 11), 1, (3, 3), 2, 3, 3, True, id="k3-s2-d3"),
    pytest.param((2, 13, 5, 6), 1, (3, 3), 1, 1, 1, True, id="c13"),
    # Channel counts that give the Triton channels-last kernels' ALIGN hint 8 (16-bit) and 2 (ShuffleNetV2's
    # 58), with a partly filled last channel block.
    pytest.param((2, 24, 6, 5), 1, (3, 3), 1, 1, 1, True, id="c24"),
    pytest.param((1, 58, 5, 4), 1, (3, 3), 2, 1, 1, False, id="c58-s2"),
    # Output 1x1: a kernel as large as the padded input, and a stride larger than the input.
    pytest.param((1, 3, 3, 3), 2, (3, 3), 1, 0, 1, True, id="out1x1"),
    pytest.param((2, 3, 2, 2), 1, (3, 3), 3, 1, 1, False, id="out1x1-s3"),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["nchw", "channels_last", "strided"]
# Large kernels (RepLKNet-style) cost the Triton interpreter ~1 ms per tap and program, so each runs with
# every dtype and every layout once rather than their full cross product.
LARGE = [
    pytest.param((1, 3, 15, 14), 1, (13, 13), 1, 6, 1, True, id="k13"),
    pytest.param((1, 2, 8, 9), 1, (31, 31), 1, 15, 1, False, id="k31"),
    pytest.param((1, 2, 6, 7), 2, (15, 13), 2, (7, 6), 1, True, id="k15x13-m2-s2"),
]
LARGE_COMBOS = [(torch.float32, "nchw"), (torch.bfloat16, "channels_last"), (torch.float16, "strided")]


def _weight(c, mult, kernel, device, dtype):
    # Unit-variance outputs whatever the kernel size, so one tolerance fits 1x1 and 31x31 alike.
    return (torch.randn(c * mult, 1, *kernel, device=device) / (kernel[0] * kernel[1]) ** 0.5).to(dtype)


def _check_depthwise(device, backend, dtype, layout, shape, mult, kernel, stride, padding, dilation, bias):
    c = shape[1]
    x = make_input(shape, dtype, device, layout)
    w = _weight(c, mult, kernel, device, dtype)
    b = torch.randn(c * mult, device=device, dtype=dtype) if bias else None
    y, g, grads = run_conv(backend, x, w, b, stride, padding, dilation, c)
    # The depthwise kernels ran, not the general ones. last_choice() is per thread, and autograd runs the
    # backward of CUDA tensors on its own device thread: here it is the backward's choice on the CPU but the
    # forward's on a GPU. The report names all three ops' choices on any device.
    assert cnnkern.last_choice().op.startswith("depthwise_conv2d_")
    assert cnnkern.last_choice().backend == backend
    with cnnkern.use_backend(backend):
        report = cnnkern.explain_conv2d(x, w, b, stride, padding, dilation, c)
    assert [(op, choice.backend) for op, choice in report.items()] == [
        (f"depthwise_conv2d_{part}", backend) for part in ("fwd", "bwd_input", "bwd_weight")]
    refs = reference_grads(x, w, b, g, stride, padding, dilation, c, dtype)
    assert_conv_results(y, grads, refs, layout, dtype)


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("shape,mult,kernel,stride,padding,dilation,bias", CASES)
def test_depthwise_matches_reference(poison_outputs, device, backend, dtype, layout, shape, mult, kernel,  # noqa: F811
                                     stride, padding, dilation, bias):
    _check_depthwise(device, backend, dtype, layout, shape, mult, kernel, stride, padding, dilation, bias)


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("dtype,layout", LARGE_COMBOS, ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("shape,mult,kernel,stride,padding,dilation,bias", LARGE)
def test_depthwise_large_kernels(poison_outputs, device, backend, dtype, layout, shape, mult, kernel,  # noqa: F811
                                 stride, padding, dilation, bias):
    _check_depthwise(device, backend, dtype, layout, shape, mult, kernel, stride, padding, dilation, bias)


@pytest.mark.parametrize("device,backend", backend_params())
def test_depthwise_function_equals_functional(device, backend):
    x = torch.randn(2, 3, 7, 6, device=device)
    w = torch.randn(6, 1, 3, 2, device=device)
    b = torch.randn(6, device=device)
    with cnnkern.use_backend(backend):
        y = cnnkern.depthwise_conv2d(x, w, b, stride=1, padding="same", dilation=2)
        unbatched = cnnkern.depthwise_conv2d(x[1], w, b, padding=(1, 0))
    torch.testing.assert_close(y, F.conv2d(x, w, b, 1, "same", 2, groups=3), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(unbatched, F.conv2d(x[1], w, b, 1, (1, 0), groups=3), atol=1e-5, rtol=1e-5)
    assert unbatched.shape == (6, 7, 5)


def test_conv2d_routes_depthwise_and_only_depthwise():
    x = torch.randn(1, 4, 5, 5)
    report = cnnkern.explain_conv2d(x, torch.randn(8, 1, 3, 3), groups=4)
    assert list(report) == ["depthwise_conv2d_fwd", "depthwise_conv2d_bwd_input", "depthwise_conv2d_bwd_weight"]
    # groups == C_in with a single input channel is depthwise too (multiplier = C_out).
    assert "depthwise_conv2d_fwd" in cnnkern.explain_conv2d(x[:, :1], torch.randn(3, 1, 3, 3), groups=1)
    # Grouped but not depthwise, and ordinary convolutions, keep the general kernels.
    assert next(iter(cnnkern.explain_conv2d(x, torch.randn(4, 2, 3, 3), groups=2))) == "conv2d_fwd"
    assert next(iter(cnnkern.explain_conv2d(x, torch.randn(4, 4, 3, 3)))) == "conv2d_fwd"


@pytest.mark.parametrize("device,backend", backend_params())
def test_fp64_gradcheck(device, backend):
    if backend == "cuda":
        pytest.skip("the CUDA kernels implement fp16/bf16/fp32 only; fp64 gradcheck runs on triton/reference")
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(6, 1, 3, 2, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, device=device, requires_grad=True)
    with cnnkern.use_backend(backend):
        assert torch.autograd.gradcheck(
            lambda x, w, b: cnnkern.depthwise_conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
            (x, w, b), fast_mode=True,
        )
        xc = x.detach().to(memory_format=torch.channels_last).requires_grad_()
        assert torch.autograd.gradcheck(lambda x, w: cnnkern.depthwise_conv2d(x, w, padding="same"), (xc, w),
                                        fast_mode=True)


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_opcheck_depthwise(device, backend, layout):
    x = make_input((2, 3, 6, 5), torch.float32, device, layout).requires_grad_()
    w = torch.randn(6, 1, 3, 2, device=device, requires_grad=True)
    b = torch.randn(6, device=device, requires_grad=True)
    with cnnkern.use_backend(backend):
        torch.library.opcheck(torch.ops.cnnkern.conv2d.default, (x, w, b, [2, 1], [1, 0, 1, 1], [1, 2], 3))
        y = torch.ops.cnnkern.conv2d(x, w, b, [2, 1], [1, 0, 1, 1], [1, 2], 3)
        # The backward ops are not differentiable themselves (no double backward): plain tensors.
        x, w, g = x.detach(), w.detach(), torch.randn_like(y).detach()
        torch.library.opcheck(torch.ops.cnnkern.conv2d_backward_input.default,
                              (g, w, list(x.shape), [2, 1], [1, 0, 1, 1], [1, 2], 3, layout == "channels_last"))
        torch.library.opcheck(torch.ops.cnnkern.conv2d_backward_weight.default,
                              (g, x, list(w.shape), [2, 1], [1, 0, 1, 1], [1, 2], 3))


def test_compile_fullgraph():
    x = torch.randn(2, 4, 7, 6, requires_grad=True)
    w = torch.randn(8, 1, 3, 3, requires_grad=True)
    fn = torch.compile(lambda x, w: cnnkern.depthwise_conv2d(x, w, padding=1).relu(), fullgraph=True,
                       backend="aot_eager")
    y = fn(x, w)
    y.sum().backward()
    ref_x, ref_w = x.detach().requires_grad_(), w.detach().requires_grad_()
    F.conv2d(ref_x, ref_w, padding=1, groups=4).relu().sum().backward()
    torch.testing.assert_close(y, F.conv2d(x, w, padding=1, groups=4).relu())
    torch.testing.assert_close(x.grad, ref_x.grad)
    torch.testing.assert_close(w.grad, ref_w.grad)


@pytest.mark.parametrize("device,backend", backend_params(device_backends={"triton", "cuda"}))
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_deterministic_weight_grad_is_bitwise_reproducible(device, backend, layout):
    # Enough pixels that the reduction is split over several programs (and so combined across them).
    n, c, hw = (2, 6, 12) if device == "cpu" else (16, 96, 56)
    x = make_input((n, c, hw, hw), torch.float32, device, layout)
    w = torch.randn(c, 1, 3, 3, device=device, requires_grad=True)
    g = torch.randn(n, c, hw, hw, device=device)

    def weight_grad():
        with cnnkern.use_backend(backend):
            y = cnnkern.depthwise_conv2d(x, w, padding=1)
            return torch.autograd.grad(y, w, g)[0]

    fast = weight_grad()
    prior = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first, second = weight_grad(), weight_grad()
    finally:
        torch.use_deterministic_algorithms(prior)
    assert torch.equal(first, second)
    ref = torch.nn.grad.conv2d_weight(x.double(), w.shape, g.double(), padding=1, groups=c)
    torch.testing.assert_close(first.double(), ref, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(fast, first, atol=1e-3, rtol=1e-4)


# (input, weight, kwargs, regex). F.conv2d(groups=C) rejects each of these too.
BAD_WEIGHTS = [
    pytest.param((1, 4, 5, 5), (4, 2, 3, 3), {}, r"\(C\*m, 1, kH, kW\) with C=4.*\[4, 2, 3, 3\]", id="2-in-ch"),
    pytest.param((1, 4, 5, 5), (6, 1, 3, 3), {}, r"C=4.*multiplier.*\[6, 1, 3, 3\].*\[1, 4, 5, 5\]",
                 id="not-a-multiple"),
    pytest.param((1, 4, 5, 5), (4, 3, 3), {}, r"\(C\*m, 1, kH, kW\).*\[4, 3, 3\]", id="rank-3-weight"),
    pytest.param((1, 4, 3, 3), (4, 1, 5, 5), {}, r"padded input size.*\(3 x 3\).*\(5 x 5\)", id="kernel-too-big"),
    pytest.param((1, 4, 5, 5), (4, 1, 3, 3), {"stride": 2, "padding": "same"}, r"'same'.*strided",
                 id="same-strided"),
    pytest.param((4, 5, 5), (8, 2, 3, 3), {}, r"\(C\*m, 1, kH, kW\) with C=4.*\[4, 5, 5\]", id="unbatched"),
]


@pytest.mark.parametrize("x_shape,w_shape,kwargs,match", BAD_WEIGHTS)
def test_bad_input_errors(x_shape, w_shape, kwargs, match):
    x, w = torch.randn(x_shape), torch.randn(w_shape)
    with pytest.raises(RuntimeError, match=match):
        cnnkern.depthwise_conv2d(x, w, **kwargs)
    with pytest.raises(RuntimeError):
        F.conv2d(x, w, groups=x.shape[-3], **kwargs)


def test_bad_dtype_and_rank_errors():
    with pytest.raises(RuntimeError, match=r"input \(torch.float32\) and weight \(torch.float16\)"):
        cnnkern.depthwise_conv2d(torch.randn(1, 2, 4, 4), torch.randn(2, 1, 3, 3, dtype=torch.float16))
    with pytest.raises(RuntimeError, match=r"3D \(unbatched\) or 4D.*depthwise_conv2d.*\[2, 4\]"):
        cnnkern.depthwise_conv2d(torch.randn(2, 4), torch.randn(2, 1, 3, 3))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("c_in,mult,kernel", [(5, 3, (3, 5)), (58, 1, (3, 3)), (128, 1, (7, 7)),
                                              (1, 7, (3, 3)), (130, 2, (1, 1))])
def test_triton_channels_filter_layout(dtype, c_in, mult, kernel):
    """The Triton channels-last kernels load a tap's channels from a (taps, pitch) copy of the filter without a
    mask: the copy must be exact, in the accumulator's dtype, and every channel a launched block can name
    (forward: blocks of C_out; input gradient: blocks of C_in, each reading MULT filters) must lie inside it."""
    pytest.importorskip("triton")
    from cnnkern.triton import depthwise_conv2d as dw

    c_out = c_in * mult
    w = torch.randn(c_out, 1, *kernel, dtype=torch.float64).to(dtype)
    wt = dw._taps_by_channel(w, c_in)
    assert wt.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert wt.shape[0] == kernel[0] * kernel[1] and wt.stride(1) == 1
    assert torch.equal(wt[:, :c_out], w.reshape(c_out, -1).t().to(wt.dtype))
    for kern in (dw._dw_fwd_channels_kernel, dw._dw_dgrad_channels_kernel):
        for config in kern.configs:
            block = config.kwargs["BLOCK_C"]
            fwd_last = -(-c_out // block) * block - 1
            dgrad_last = (-(-c_in // block) * block - 1) * mult + mult - 1
            assert max(fwd_last, dgrad_last) < wt.shape[1], (config, wt.shape)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape,mult,kernel,stride", [
    ((8, 32, 112, 112), 1, (3, 3), 1),   # MobileNetV1 conv2 dw
    ((8, 144, 56, 56), 1, (3, 3), 2),    # MobileNetV2 stride-2 dw
    ((4, 116, 28, 28), 1, (3, 3), 1),    # ShuffleNetV2 (116: not a multiple of 8)
    # The column walk (C % 8 != 0, 3x3, dense channels-last): 4-byte accesses with stride 1 and 2, 8-byte with
    # stride 2, and rows of 37 x 58 elements over three blocks.
    ((4, 58, 28, 28), 1, (3, 3), 1),
    ((4, 58, 56, 56), 1, (3, 3), 2),
    ((4, 116, 28, 28), 1, (3, 3), 2),
    ((3, 58, 21, 37), 1, (3, 3), 1),
    ((4, 96, 56, 56), 1, (7, 7), 1),     # ConvNeXt-T stage 1
    ((2, 128, 28, 28), 1, (31, 31), 1),  # RepLKNet-31B stage 2
    ((4, 24, 33, 31), 2, (5, 5), 1),     # odd spatial size with a multiplier
])
def test_gpu_model_shapes(poison_outputs, backend, dtype, layout, shape, mult, kernel, stride):  # noqa: F811
    if backend not in cnnkern.available_backends():
        pytest.skip(f"{backend}: {cnnkern.backend_status()[backend]}")
    c = shape[1]
    x = make_input(shape, dtype, "cuda", layout)
    w = _weight(c, mult, kernel, "cuda", dtype)
    b = torch.randn(c * mult, device="cuda", dtype=dtype)
    padding = kernel[0] // 2
    y, g, grads = run_conv(backend, x, w, b, stride, padding, 1, c)
    assert cnnkern.last_choice().backend == backend
    assert_conv_results(y, grads, reference_grads(x, w, b, g, stride, padding, 1, c, dtype), layout, dtype)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_gpu_int64_indexing(backend, layout):
    """More than 2^31 elements: the last rows must be right, not wrapped-around garbage."""
    if backend not in cnnkern.available_backends():
        pytest.skip(f"{backend}: {cnnkern.backend_status()[backend]}")
    free, _ = torch.cuda.mem_get_info()
    if free < 20 * 2**30:
        pytest.skip("needs 20 GiB of free GPU memory")
    x = make_input((2, 16, 8192, 8200), torch.float16, "cuda", layout)  # 2.15e9 elements
    w = torch.randn(16, 1, 3, 3, device="cuda", dtype=torch.float16)
    with cnnkern.use_backend(backend):
        y = cnnkern.depthwise_conv2d(x, w, padding=1)
    tail = F.pad(x[1:, :, -5:].float(), (1, 1, 0, 1))
    ref = F.conv2d(tail, w.float(), groups=16)
    torch.testing.assert_close(y[1:, :, -4:].float(), ref, atol=2e-2, rtol=2e-2)


# The Triton weight gradient's row walk (no multiplier, x and gradient channels-last): (N, C, H, W), kernel,
# stride, padding, dilation. The interpreter runs it with 8-pixel column blocks, two bands per image and two
# splits, so widths over 8, bands of unequal height and a split of several strips all occur here.
ROW_WALK_CASES = [
    pytest.param((2, 24, 6, 13), (3, 3), 1, 1, 1, id="c24-w13"),          # ALIGN 8 at 16 bit, 2 column blocks
    pytest.param((2, 58, 7, 9), (3, 3), 1, 1, 1, id="c58-h7"),            # ALIGN 2; bands of 4 and 3 rows
    pytest.param((1, 6, 7, 8), (2, 2), 1, "same", 1, id="k2-same"),       # asymmetric padding
    pytest.param((2, 7, 6, 5), (3, 3), 1, 0, 1, id="k3-valid"),           # output smaller than the input
    pytest.param((1, 4, 9, 7), (5, 3), 1, (2, 1), 1, id="k5x3"),
    pytest.param((1, 5, 8, 9), (7, 7), 1, 3, 1, id="k7"),                 # all seven tap rows per program
    pytest.param((1, 2, 9, 8), (13, 13), 1, 6, 1, id="k13"),              # one tap row per program
    pytest.param((2, 13, 5, 6), (1, 1), 1, 0, 1, id="k1"),
    # Strides and dilations: the walk down gradient rows (no ring); the input gradient's phase walk at equal
    # strides (1x1 / 2: three of the four phases have no tap and store zeros).
    pytest.param((2, 24, 12, 13), (3, 3), 2, 1, 1, id="c24-s2"),
    pytest.param((1, 6, 9, 10), (2, 2), 2, 0, 1, id="k2-s2"),
    pytest.param((2, 5, 7, 6), (1, 1), 2, 0, 1, id="k1-s2"),
    pytest.param((1, 4, 12, 11), (3, 3), 2, 3, 3, id="s2-d3"),
    pytest.param((1, 3, 10, 13), (3, 5), (1, 2), (2, 1), (2, 1), id="k3x5-s1x2-d2x1"),
    pytest.param((2, 5, 13, 11), (7, 7), 3, 3, 1, id="k7-s3"),
]
GPU_ROW_WALK_CASES = [
    pytest.param((8, 32, 112, 112), (3, 3), 1, 1, 1, id="mnv1-dw32", marks=pytest.mark.gpu),
    pytest.param((8, 64, 112, 112), (3, 3), 2, 1, 1, id="mnv1-dw64-s2", marks=pytest.mark.gpu),
    pytest.param((4, 58, 28, 28), (3, 3), 1, 1, 1, id="shv2-dw58", marks=pytest.mark.gpu),
    pytest.param((4, 116, 28, 28), (3, 3), 2, 1, 1, id="shv2-dw116-s2", marks=pytest.mark.gpu),
    pytest.param((4, 96, 56, 56), (7, 7), 1, 3, 1, id="convnext-dw96", marks=pytest.mark.gpu),
    pytest.param((2, 128, 28, 28), (31, 31), 1, 15, 1, id="replk-dw128", marks=pytest.mark.gpu),
    pytest.param((4, 1024, 7, 7), (13, 13), 1, 6, 1, id="replk-dw1024", marks=pytest.mark.gpu),
]


@pytest.mark.parametrize("device,backend", backend_params(device_backends={"triton", "cuda"}))
@pytest.mark.parametrize("dtype,deterministic", [(torch.float32, True), (torch.bfloat16, False),
                                                 (torch.float16, True), (torch.float64, False)],
                         ids=["fp32-det", "bf16-atomic", "fp16-det", "fp64-atomic"])
@pytest.mark.parametrize("shape,kernel,stride,padding,dilation", ROW_WALK_CASES + GPU_ROW_WALK_CASES)
def test_backward_channels_last_gradient(monkeypatch, poison_outputs, device, backend, dtype,  # noqa: F811
                                        deterministic, shape, kernel, stride, padding, dilation):
    """Channels-last input and gradient (as a channels-last network's backward has them): the Triton kernels
    take their row walks there (spied: the weight gradient's; for the input gradient up to 7x7 the forward's
    at stride 1 and the phase walk at equal strides), the weight gradient atomic and deterministic (then
    reproducibly)."""
    if (device == "cpu") != (shape[0] * shape[2] * shape[3] < 1000):
        pytest.skip("the small cases on the CPU, the model shapes on a GPU")
    wgrad_rows, fwd_rows, phases = [], [], []
    if backend == "triton":
        from cnnkern.triton import depthwise_conv2d as dw

        real_wgrad, real_rows, real_phases = dw._backward_weight_rows, dw._rows, dw._backward_input_phases
        monkeypatch.setattr(dw, "_backward_weight_rows", lambda *a: wgrad_rows.append(1) or real_wgrad(*a))
        monkeypatch.setattr(dw, "_rows", lambda *a: fwd_rows.append(1) or real_rows(*a))
        monkeypatch.setattr(dw, "_backward_input_phases", lambda *a: phases.append(1) or real_phases(*a))
    c = shape[1]
    x = make_input(shape, dtype, device, "channels_last")
    w = _weight(c, 1, kernel, device, dtype)
    gen = torch.Generator().manual_seed(3)

    def grads(input_too=True):
        xg, wg = x.detach().requires_grad_(input_too), w.detach().requires_grad_()
        with cnnkern.use_backend(backend):
            y = cnnkern.depthwise_conv2d(xg, wg, None, stride, padding, dilation)
            g = torch.randn(y.shape, generator=gen).to(y).contiguous(memory_format=torch.channels_last)
            return g, torch.autograd.grad(y, (xg, wg) if input_too else (wg,), g)

    prior = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        g, (gx, gw) = grads()
        if deterministic:
            gen.manual_seed(3)
            assert torch.equal(grads(input_too=False)[1][0], gw)
    finally:
        torch.use_deterministic_algorithms(prior)
    if backend == "triton":  # forward and input gradient, and the repeat's forward
        unit = stride == 1 and dilation == 1 and max(kernel) <= 7
        assert wgrad_rows and len(fwd_rows) == (2 + deterministic if unit else 0)
        assert len(phases) == (isinstance(stride, int) and stride > 1 and dilation == 1 and max(kernel) <= 7)
    (_, (gx64, gw64)), (_, (gxdt, gwdt)) = reference_grads(x, w, None, g, stride, padding, dilation, c, dtype)
    assert_matches_reference(gw, gw64, gwdt, "grad_weight")
    assert_matches_reference(gx, gx64, gxdt, "grad_input")
    assert gx.is_contiguous(memory_format=torch.channels_last)
