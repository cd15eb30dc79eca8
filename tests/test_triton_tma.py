"""The conv2d forward's TMA path (the weight tile through a tensor descriptor, taken on sm_90) run under the
Triton interpreter, which loads a descriptor's box with the same zero fill past the tensor's edges as TMA:
the (taps, C_out, C_in) view, the tap and channel-block coordinates, the fill of partial channel blocks and
partial output tiles, groups. Which weights get a descriptor is checked on the CPU too; the compiled PTX (a
cp.async.bulk.tensor per weight tile) is checked by scripts/triton_sm90_check.py --hopper."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tolerances import assert_matches_reference

import cnnkern

pytestmark = pytest.mark.skipif(cnnkern.backend_status()["triton"] is not None,
                                reason="needs the Triton backend (the interpreter on the CPU)")

conv2d_mod = pytest.importorskip("cnnkern.triton.conv2d")
from cnnkern.triton import phase_gather as phase_mod
from cnnkern.triton import tiles


@pytest.fixture
def forced_tma(monkeypatch):
    """The forward and the phase gather take the TMA path wherever the weight allows it; yields the
    descriptors they made, by kernel module."""
    made = {"conv2d": [], "phase_gather": []}
    real = tiles.weight_descriptor
    monkeypatch.setattr(tiles, "FORCE_TMA", [True])
    for name, mod in (("conv2d", conv2d_mod), ("phase_gather", phase_mod)):
        def spy(w, force=None, name=name):
            d = real(w, force)
            made[name].append(d)
            return d

        monkeypatch.setattr(mod, "weight_descriptor", spy)
    return made


# (N, C_in, H, W), C_out, (kH, kW), padding, groups: C_in/groups multiples of 8 (16-byte rows of 16-bit
# elements, as TMA needs), none of them a multiple of the interpreter's 16-wide blocks.
CASES = [
    pytest.param((2, 24, 5, 6), 20, (3, 3), 1, 1, id="3x3-k-and-n-tails"),
    pytest.param((1, 48, 4, 5), 40, (3, 3), 1, 2, id="3x3-g2"),
    pytest.param((1, 8, 6, 5), 36, (1, 1), 0, 1, id="1x1"),
    pytest.param((1, 16, 5, 7), 12, (2, 3), (1, 0), 1, id="2x3"),
    pytest.param((1, 8, 7, 4), 8, (3, 1), (1, 0), 1, id="3x1"),
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("shape,c_out,kernel,padding,groups", CASES)
def test_forward_through_the_weight_descriptor(forced_tma, dtype, shape, c_out, kernel, padding, groups):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype).to(memory_format=torch.channels_last)
    w = torch.randn(c_out, shape[1] // groups, *kernel, dtype=dtype)
    if kernel != (1, 1):
        w = w.to(memory_format=torch.channels_last)
    b = torch.randn(c_out, dtype=dtype)
    with torch.no_grad(), cnnkern.use_backend("triton"):
        y = cnnkern.conv2d(x, w, b, 1, padding, groups=groups)
    made = forced_tma["conv2d"]
    assert made and all(d is not None for d in made), "the TMA path was not taken"
    ref = F.conv2d(x.double(), w.double(), b.double(), 1, padding, groups=groups)
    assert_matches_reference(y, ref, F.conv2d(x, w, b, 1, padding, groups=groups) if dtype == torch.float16
                             else None)


def test_fused_epilogues_through_the_weight_descriptor(forced_tma):
    # forward_act and forward_stats launch the same kernel: their epilogues see the accumulator that the
    # TMA path built.
    from cnnkern.problem.conv2d import Conv2dSpec

    torch.manual_seed(1)
    cl = torch.channels_last
    x = torch.randn(2, 16, 5, 5, dtype=torch.float16).to(memory_format=cl)
    w = torch.randn(24, 16, 3, 3, dtype=torch.float16).to(memory_format=cl)
    scale, shift = torch.rand(24) + 0.5, torch.randn(24)
    spec = Conv2dSpec(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1, out_hw=(5, 5))
    conv = F.conv2d(x.double(), w.double(), None, 1, 1)
    out = torch.empty(2, 24, 5, 5, dtype=torch.float16).to(memory_format=cl)
    conv2d_mod.forward_act(x, w, None, scale, shift, out, spec, "relu")
    assert_matches_reference(out, torch.relu(conv * scale.double()[:, None, None] + shift.double()[:, None, None]))
    partials = conv2d_mod.forward_stats(x, w, None, out, spec)
    assert_matches_reference(out, conv)
    # Every pixel tile's (count, mean, M2) rows: the counts add up to the pixels, the means to the channel mean.
    count, mean = partials[..., 0], partials[..., 1]
    assert torch.equal(count.sum(0), torch.full((24,), 50.0))
    torch.testing.assert_close((count * mean).sum(0) / 50, out.double().mean((0, 2, 3)).float(), atol=1e-3,
                               rtol=1e-3)
    assert len(forced_tma["conv2d"]) == 2 and all(d is not None for d in forced_tma["conv2d"])


# (N, C_in, H, W), C_out, (kH, kW), stride, padding: conv2d's input gradient is the phase gather with the
# conv weight (C_out, C_in, kH, kW) read as (input role = C_out, output role = C_in).
GATHER_CASES = [
    pytest.param((2, 24, 6, 5), 40, (3, 3), 1, 1, id="3x3-s1"),
    pytest.param((1, 16, 9, 8), 24, (3, 3), 2, 1, id="3x3-s2"),
    pytest.param((1, 40, 5, 6), 8, (1, 1), 1, 0, id="1x1"),
    pytest.param((1, 8, 8, 7), 16, (2, 3), (2, 1), (0, 1), id="2x3-s2x1"),
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("shape,c_out,kernel,stride,padding", GATHER_CASES)
def test_input_gradient_through_the_weight_descriptor(forced_tma, dtype, shape, c_out, kernel, stride, padding):
    torch.manual_seed(2)
    x = torch.randn(shape, dtype=dtype).to(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(c_out, shape[1], *kernel, dtype=dtype).to(memory_format=torch.channels_last)
    with cnnkern.use_backend("triton"):
        y = cnnkern.conv2d(x, w, None, stride, padding)
        g = torch.randn_like(y)
        (gx,) = torch.autograd.grad(y, [x], g)
    made = forced_tma["phase_gather"]
    assert made and all(d is not None for d in made), "the phase gather's TMA path was not taken"
    x64 = x.detach().double().requires_grad_()
    (ref,) = torch.autograd.grad(F.conv2d(x64, w.double(), None, stride, padding), [x64], g.double())
    assert_matches_reference(gx, ref, name="grad_input")


@pytest.mark.parametrize("groups", [1, 2])
def test_transposed_conv_through_the_weight_descriptor(forced_tma, groups):
    # conv_transpose2d's forward is the same gather; with 2 groups the weight keeps its pointer loads.
    torch.manual_seed(3)
    x = torch.randn(2, 32, 5, 4, dtype=torch.float16).to(memory_format=torch.channels_last)
    w = torch.randn(32, 48 // groups, 4, 4, dtype=torch.float16).to(memory_format=torch.channels_last)
    b = torch.randn(48, dtype=torch.float16)
    with torch.no_grad(), cnnkern.use_backend("triton"):
        y = cnnkern.conv_transpose2d(x, w, b, stride=2, padding=1, groups=groups)
    made = forced_tma["phase_gather"]
    assert (bool(made) and all(d is not None for d in made)) if groups == 1 else not made
    ref = F.conv_transpose2d(x.double(), w.double(), b.double(), stride=2, padding=1, groups=groups)
    assert_matches_reference(y, ref)


def test_which_weights_get_a_descriptor(monkeypatch):
    cl = torch.channels_last
    w3 = torch.randn(32, 16, 3, 3, dtype=torch.float16)
    # Not on CPU tensors unless forced (the interpreter, and every device but sm_90, load through pointers).
    assert tiles.weight_descriptor(w3.to(memory_format=cl)) is None
    d = tiles.weight_descriptor(w3.to(memory_format=cl), force=True)
    assert (list(d.shape), list(d.strides)) == ([9, 32, 16], [16, 144, 1])
    # A contiguous 1x1 weight is K-contiguous too; a contiguous 3x3 one is not (its channels are 9 apart).
    d1 = tiles.weight_descriptor(torch.randn(64, 24, 1, 1, dtype=torch.bfloat16), force=True)
    assert (list(d1.shape), list(d1.strides)) == ([1, 64, 24], [24, 24, 1])
    assert tiles.weight_descriptor(w3, force=True) is None
    # fp32/fp64 keep their FMA path; rows that are not 16-byte multiples cannot be a TMA box.
    assert tiles.weight_descriptor(w3.float().to(memory_format=cl), force=True) is None
    assert tiles.weight_descriptor(torch.randn(8, 12, 3, 3, dtype=torch.float16).to(memory_format=cl),
                                   force=True) is None
    # Taps not one stride apart (a sliced kernel window): pointer loads.
    wide = torch.randn(8, 16, 3, 5, dtype=torch.float16).to(memory_format=cl)[:, :, :, :3]
    assert tiles.weight_descriptor(wide, force=True) is None
    # On an sm_90 device (as the static check and an H100 see it) the descriptor is made without forcing.
    monkeypatch.setattr(tiles, "interpreting", lambda: False)
    monkeypatch.setattr(tiles, "device_capability", lambda t: (9, 0))
    assert tiles.weight_descriptor(w3.to(memory_format=cl)) is not None
    # ... unless CNNKERN_TRITON_TMA=0 keeps sm_90 on pointer loads.
    monkeypatch.setenv("CNNKERN_TRITON_TMA", "0")
    assert tiles.weight_descriptor(w3.to(memory_format=cl)) is None
    monkeypatch.delenv("CNNKERN_TRITON_TMA")
    monkeypatch.setattr(tiles, "device_capability", lambda t: (8, 0))
    assert tiles.weight_descriptor(w3.to(memory_format=cl)) is None


def test_pre_hook_sizes_the_box_to_the_config():
    d = tiles.weight_descriptor(torch.randn(32, 16, 3, 3, dtype=torch.float16).to(memory_format=torch.channels_last),
                                force=True)
    tiles.set_weight_block({"w_desc": d, "BLOCK_N": 128, "BLOCK_K": 64})
    assert d.block_shape == [1, 128, 64]
    tiles.set_weight_block({"w_desc": None, "BLOCK_N": 128, "BLOCK_K": 64})  # the pointer path: nothing to do
