"""conv2d on every backend against the fp64 reference: forward, input grad, weight grad, bias grad."""

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
    run_empty_batch,
)

import cnnkern

# (N, C_in, H, W), C_out, (kH, kW), stride, padding, dilation, groups, bias  -- odd sizes throughout.
CASES = [
    pytest.param((2, 3, 7, 9), 5, (3, 3), 1, 1, 1, 1, True, id="3x3-p1"),
    pytest.param((1, 4, 8, 6), 6, (2, 3), 2, (1, 0), 1, 2, False, id="2x3-s2-g2"),
    # 5x7 under a dilated 3x3 ("same": padding 2) still has output rows and columns that read padding and
    # ones that do not; 9x9 took twice as long under the Triton interpreter (~5 s per dtype x layout).
    pytest.param((2, 6, 5, 7), 9, (3, 3), 1, "same", 2, 3, True, id="same-d2-g3"),
    pytest.param((1, 5, 6, 7), 3, (4, 2), 1, "same", 1, 1, True, id="same-even-kernel"),
    pytest.param((2, 3, 11, 10), 4, (3, 3), (2, 3), "valid", (1, 2), 1, True, id="s2x3-d1x2-valid"),
    pytest.param((1, 8, 5, 5), 7, (1, 1), 1, 0, 1, 1, False, id="1x1"),
    # Channels past one 16-wide K block and one 16-wide N tile: exercises every tail mask.
    pytest.param((1, 40, 5, 4), 36, (3, 3), 1, 1, 1, 2, True, id="k-tails-g2"),
    pytest.param((1, 4, 6, 6), 8, (3, 3), 2, 1, 1, 4, True, id="depthwise-m2-s2"),
    # Output 1x1 from a kernel as large as the padded input; stride larger than the kernel.
    pytest.param((3, 2, 3, 4), 2, (5, 4), 1, (1, 0), 1, 1, True, id="kernel-fills-input"),
    pytest.param((1, 3, 9, 8), 2, (2, 2), 3, 0, 1, 1, False, id="stride-gt-kernel"),
]

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["nchw", "channels_last", "strided"]


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("shape,c_out,kernel,stride,padding,dilation,groups,bias", CASES)
def test_conv2d_matches_reference(poison_outputs, device, backend, dtype, layout, shape, c_out, kernel,  # noqa: F811
                                  stride, padding, dilation, groups, bias):
    x = make_input(shape, dtype, device, layout)
    w = (torch.randn(c_out, shape[1] // groups, *kernel, device=device) * 0.5).to(dtype)
    b = torch.randn(c_out, device=device, dtype=dtype) if bias else None
    y, g, grads = run_conv(backend, x, w, b, stride, padding, dilation, groups)
    assert y.device == x.device
    refs = reference_grads(x, w, b, g, stride, padding, dilation, groups, dtype)
    assert_conv_results(y, grads, refs, layout, dtype)


@pytest.mark.parametrize("device,backend", backend_params())
def test_fp64_gradcheck(device, backend):
    if backend == "cuda":
        pytest.skip("the CUDA kernels implement fp16/bf16/fp32 only; fp64 gradcheck runs on triton/reference")
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(4, 2, 3, 2, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, device=device, requires_grad=True)
    with cnnkern.use_backend(backend):
        assert torch.autograd.gradcheck(
            lambda x, w, b: cnnkern.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
            (x, w, b), fast_mode=True,
        )


@pytest.mark.parametrize("device,backend", backend_params())
def test_unbatched_input(device, backend):
    x = torch.randn(3, 6, 5, device=device)
    w = torch.randn(4, 3, 3, 3, device=device)
    with cnnkern.use_backend(backend):
        y = cnnkern.conv2d(x, w, padding=1)
    assert y.shape == (4, 6, 5)
    torch.testing.assert_close(y, F.conv2d(x, w, padding=1), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("device,backend", backend_params())
def test_empty_batch(device, backend):
    run_empty_batch(cnnkern.conv2d, backend, device, (0, 3, 6, 5), (4, 3, 3, 3), (0, 4, 6, 5), padding=1)


@pytest.mark.parametrize("device,backend", backend_params())
def test_nan_propagates_like_aten(device, backend):
    x = torch.randn(1, 2, 7, 6, device=device)
    x[0, 1, 3, 2] = float("nan")
    w = torch.randn(3, 2, 3, 3, device=device)
    with cnnkern.use_backend(backend):
        y = cnnkern.conv2d(x, w, padding=1, stride=2)
    ref = F.conv2d(x, w, padding=1, stride=2)
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    assert torch.isnan(ref).any() and not torch.isnan(ref).all()
    torch.testing.assert_close(y, ref, atol=1e-4, rtol=1e-4, equal_nan=True)


@pytest.mark.parametrize("device,backend", backend_params())
def test_zero_input_channels_match_aten(device, backend):
    """ATen's answer to a weight with no input channels: an (N, 0, H', W') output, a zero bias gradient."""
    x = torch.randn(2, 0, 4, 4, device=device, requires_grad=True)
    w = torch.randn(3, 0, 3, 3, device=device, requires_grad=True)
    b = torch.randn(3, device=device, requires_grad=True)
    with cnnkern.use_backend(backend):
        y = cnnkern.conv2d(x, w, b)
        y.sum().backward()
    ref = F.conv2d(x.detach(), w.detach(), b.detach())
    assert y.shape == ref.shape == (2, 0, 2, 2)
    assert x.grad.shape == x.shape and w.grad.shape == w.shape
    assert torch.equal(b.grad, torch.zeros_like(b))


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape,c_out,kernel,stride", [
    ((4, 64, 56, 56), 64, (3, 3), 1),    # ResNet-50 layer1 3x3
    ((4, 256, 28, 28), 128, (1, 1), 1),  # a 1x1 reduction
    ((2, 128, 29, 27), 96, (3, 3), 2),   # odd spatial size, stride 2
])
def test_gpu_resnet_like_shapes(poison_outputs, backend, dtype, layout, shape, c_out, kernel, stride):  # noqa: F811
    if backend not in cnnkern.available_backends():
        pytest.skip(f"{backend}: {cnnkern.backend_status()[backend]}")
    x = make_input(shape, dtype, "cuda", layout)
    w = (torch.randn(c_out, shape[1], *kernel, device="cuda") / (shape[1] * kernel[0] * kernel[1]) ** 0.5)
    w = w.to(dtype)
    b = torch.randn(c_out, device="cuda", dtype=dtype)
    padding = kernel[0] // 2
    y, g, grads = run_conv(backend, x, w, b, stride, padding, 1, 1)
    assert_conv_results(y, grads, reference_grads(x, w, b, g, stride, padding, 1, 1, dtype), layout, dtype)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_int64_indexing(backend):
    """An input past 2^31 elements: the tail rows must be right, not wrapped-around garbage."""
    if backend not in cnnkern.available_backends():
        pytest.skip(f"{backend}: {cnnkern.backend_status()[backend]}")
    free, _ = torch.cuda.mem_get_info()
    if free < 16 * 2**30:
        pytest.skip("needs 16 GiB of free GPU memory")
    x = torch.randn(1, 2, 32768, 32800, device="cuda", dtype=torch.float16)  # 2.15e9 elements
    w = torch.randn(1, 2, 3, 3, device="cuda", dtype=torch.float16)
    with cnnkern.use_backend(backend):
        y = cnnkern.conv2d(x, w, padding=1)
    # The last 4 output rows read input rows 32763..32767 plus one zero row of padding below.
    tail = F.pad(x[:, :, -5:].float(), (1, 1, 0, 1))
    torch.testing.assert_close(y[:, :, -4:].float(), F.conv2d(tail, w.float()), atol=2e-2, rtol=2e-2)
