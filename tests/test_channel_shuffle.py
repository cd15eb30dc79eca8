"""cnnkern.channel_shuffle against F.channel_shuffle: values, gradient, layouts, op checks and errors."""

import pytest
import torch
import torch.nn.functional as F
from _conv_cases import backend_params, make_input
from _group_pointwise_cases import DTYPES, LAYOUTS, dtype_id, poison_outputs  # noqa: F401

import cnnkern

# (N, C, H, W), groups: channels not multiples of 8 wherever groups allow it.
CASES = [((2, 6, 3, 5), 1), ((2, 10, 4, 3), 2), ((1, 9, 5, 4), 3), ((2, 12, 3, 3), 4), ((1, 24, 2, 5), 8),
         ((1, 12, 3, 4), 12)]


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES + [torch.float64], ids=dtype_id)
@pytest.mark.parametrize("shape,groups", CASES, ids=lambda v: str(v).replace(" ", ""))
def test_matches_pytorch_exactly(poison_outputs, device, backend, layout, dtype, shape, groups):  # noqa: F811
    if backend == "cuda" and dtype == torch.float64:
        pytest.skip("the CUDA kernels implement fp16/bf16/fp32 only (a forced backend never falls back); "
                    "fp64 runs on triton/reference")
    x = make_input(shape, dtype, device, layout).requires_grad_()
    g = torch.randn(shape, device=device).to(dtype)
    with cnnkern.use_backend(backend):
        y = cnnkern.channel_shuffle(x, groups)
        (grad,) = torch.autograd.grad(y, x, g)
    assert cnnkern.last_choice().backend == backend
    ref_x = x.detach().requires_grad_()
    ref = F.channel_shuffle(ref_x, groups)
    (ref_grad,) = torch.autograd.grad(ref, ref_x, g)
    # A permutation: bit-exact in every dtype.
    assert torch.equal(y, ref)
    assert torch.equal(grad, ref_grad)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=dtype_id)
@pytest.mark.parametrize("channels,total,shuffle_groups,offset", [
    (5, 10, 2, 0), (5, 10, 2, 5), (3, 12, 3, 9), (136, 272, 2, 136), (272, 272, 4, 0)])
def test_channel_map_scatter_and_gather(device, backend, layout, dtype, channels, total, shuffle_groups, offset):
    """The permutation primitive itself: a scatter writes the op's channels at ChannelMap.dest and leaves the
    destination's other channels as they were (the ShuffleNetV2 passthrough fill, a conv fills the rest);
    a gather reads them back. Rows over 256 channels take two column tiles in the Triton kernel."""
    from cnnkern.ops.channel_shuffle import run_channel_map
    from cnnkern.problem.channel_map import ChannelMap

    cmap = ChannelMap(total, shuffle_groups, offset)
    src = make_input((2, channels, 3, 5), dtype, device, layout)
    dst = make_input((2, total, 3, 5), dtype, device, layout)
    before = dst.clone()
    dest = cmap.dest(torch.arange(channels, device=device))
    with cnnkern.use_backend(backend):
        run_channel_map(src, dst, cmap, scatter=True)
        back = torch.full_like(src, float("nan"))
        run_channel_map(dst, back, cmap, scatter=False)
    want = before.clone()
    want[:, dest] = src
    assert torch.equal(dst, want)
    assert torch.equal(back, src)


@pytest.mark.parametrize("device,backend", backend_params())
def test_channels_last_stays_channels_last(device, backend):
    x = torch.randn(2, 6, 4, 4, device=device).to(memory_format=torch.channels_last)
    with cnnkern.use_backend(backend):
        y = cnnkern.channel_shuffle(x, 3)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_opcheck(device, backend, layout):
    x = make_input((2, 6, 3, 4), torch.float32, device, layout).requires_grad_()
    with cnnkern.use_backend(backend):
        torch.library.opcheck(torch.ops.cnnkern.channel_shuffle.default, (x, 3))


def test_compile_fullgraph():
    x = torch.randn(2, 6, 4, 5, requires_grad=True)
    fn = torch.compile(lambda x: cnnkern.channel_shuffle(x.relu(), 2) * 2, fullgraph=True, backend="aot_eager")
    y = fn(x)
    y.sum().backward()
    ref_x = x.detach().requires_grad_()
    (F.channel_shuffle(ref_x.relu(), 2) * 2).sum().backward()
    torch.testing.assert_close(y, F.channel_shuffle(x.relu(), 2) * 2)
    torch.testing.assert_close(x.grad, ref_x.grad)


def test_fp64_gradcheck():
    x = torch.randn(1, 6, 2, 3, dtype=torch.float64, requires_grad=True)
    with cnnkern.use_backend("triton"):
        assert torch.autograd.gradcheck(lambda x: cnnkern.channel_shuffle(x, 2), (x,), fast_mode=True)


# shape, groups, regex; F.channel_shuffle raises on each of these too.
BAD = [
    pytest.param((1, 6, 2, 2), 4, r"Number of channels must be divisible by groups. Got 6 channels and 4 groups",
                 id="not-divisible"),
    pytest.param((1, 6, 2, 2), 0, r"groups to divide channels in must be positive. Value of groups:0", id="zero"),
    pytest.param((1, 6, 2, 2), -2, r"must be positive. Value of groups:-2", id="negative"),
    pytest.param((6, 2), 2, r"expected a 4-D \(N, C, H, W\) input.*\[6, 2\]", id="rank-2"),
]


@pytest.mark.parametrize("shape,groups,match", BAD)
def test_bad_input_errors(shape, groups, match):
    x = torch.randn(shape)
    with pytest.raises(RuntimeError, match=match):
        cnnkern.channel_shuffle(x, groups)
    with pytest.raises(RuntimeError):
        F.channel_shuffle(x, groups)
