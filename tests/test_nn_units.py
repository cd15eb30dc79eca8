"""cnnkern.nn's ShuffleNet units against the unfused torch composition they replace.

``GroupPointwiseBN`` = Conv2d(1x1, groups) -> BatchNorm2d -> ReLU -> F.channel_shuffle, and ``ShuffleV2Unit`` =
torchvision's ShuffleNetV2 ``InvertedResidual``: outputs, gradients (input, conv weights, BN affine) and the
BatchNorm running-statistics update in training; the fused one-kernel / concat-free path in eval mode.
"""

import copy
import importlib

import pytest
import torch
import torch.nn.functional as F
from _conv_cases import backend_params, make_input
from _nn_cases import poison, randomize_bn  # noqa: F401 (poison is a fixture)
from tolerances import assert_matches_reference

import cnnkern
from cnnkern.nn import GroupPointwiseBN, ShuffleV2Unit

PARAMS = backend_params({"reference", "triton"})
unit_mod = importlib.import_module("cnnkern.nn.pointwise_shuffle")


class Unfused(torch.nn.Module):
    """The plain-torch composition ``GroupPointwiseBN`` must equal (parameters copied from ``unit``)."""

    def __init__(self, unit: GroupPointwiseBN):
        super().__init__()
        c = unit.conv
        self.conv = torch.nn.Conv2d(c.in_channels, c.out_channels, 1, groups=c.groups, bias=c.bias is not None)
        self.bn = copy.deepcopy(unit.bn)
        self.conv.load_state_dict(c.state_dict())
        self.relu, self.shuffle_groups = unit.relu, unit.shuffle_groups

    def forward(self, x):
        y = self.bn(self.conv(x))
        y = F.relu(y) if self.relu else y
        return y if self.shuffle_groups is None else F.channel_shuffle(y, self.shuffle_groups)


def _grads(module, x, y, grad_out):
    leaves = [x] + [p for p in module.parameters() if p.requires_grad]
    return torch.autograd.grad(y, leaves, grad_out)


def _buffers(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


def _compare(ours, ours_grads, ref64, ref64_grads, theirs, theirs_grads):
    assert_matches_reference(ours, ref64, theirs, "output")
    for i, (a, b, c) in enumerate(zip(ours_grads, ref64_grads, theirs_grads)):
        if b.abs().max() < 1e-9:
            # Training BatchNorm subtracts the batch mean, so a conv bias before it has zero gradient: only
            # rounding noise of a sum over the batch remains, judged against PyTorch's own noise.
            assert a.abs().max() <= max(2 * c.abs().max(), 1e-4), f"grad {i}: {a.abs().max()} not ~0"
            continue
        assert_matches_reference(a, b, c, f"grad {i}")


def _compare_buffers(ours, ref64):
    for k, want in ref64.items():
        got = ours[k]
        if k.endswith("num_batches_tracked"):
            assert torch.equal(got, want), k
        else:
            torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


UNIT_CASES = [  # in, out, groups, shuffle_groups, relu, bias, momentum
    pytest.param(12, 9, 3, 3, True, False, 0.1, id="g3-shuffle3-relu"),
    pytest.param(8, 12, 4, 2, True, True, None, id="g4-shuffle2-bias-cumulative"),
    pytest.param(6, 10, 2, None, False, False, 0.3, id="g2-noshuffle-linear"),
    pytest.param(5, 8, 1, 4, False, True, 0.1, id="dense-shuffle4"),
]


def _combine(cases, layouts, interpreter_keeps):
    """(device, backend) x layout x case, leaving out of the Triton interpreter (CPU, ~1 ms per kernel op)
    the combinations ``interpreter_keeps(layout, case_values)`` rejects; compiled backends run them all."""
    out = []
    for pair in PARAMS:
        device, backend = pair.values
        for layout in layouts:
            for case in cases:
                if device == "cpu" and backend == "triton" and not interpreter_keeps(layout, case.values):
                    continue
                out.append(pytest.param(device, backend, layout, *case.values, marks=pair.marks,
                                        id=f"{pair.id}-{layout}-{case.id}"))
    return out


# Interpreter: two cases x two layouts cover the Triton path of the unit; the reference runs everything.
@pytest.mark.parametrize("device,backend,layout,cin,cout,groups,sg,relu,bias,momentum",
                         _combine(UNIT_CASES, ["nchw", "channels_last", "strided"],
                                  lambda layout, c: layout != "strided" and c[1] != 12 and c[3] is not None))
@pytest.mark.usefixtures("poison")
def test_group_pointwise_bn_train(device, backend, layout, cin, cout, groups, sg, relu, bias, momentum):
    unit = GroupPointwiseBN(cin, cout, groups, sg, relu=relu, bias=bias, momentum=momentum).to(device)
    randomize_bn(unit)
    ref = Unfused(unit).double()
    theirs = Unfused(unit)
    for step in range(2):  # two steps: the cumulative (momentum=None) average uses num_batches_tracked
        x = make_input((3, cin, 5, 7), torch.float32, device, layout).requires_grad_()
        g = torch.randn(3, cout, 5, 7, device=device)
        with cnnkern.use_backend(backend):
            y = unit(x)
            grads = _grads(unit, x, y, g)
        x64 = x.detach().double().requires_grad_()
        y64 = ref(x64)
        x32 = x.detach().requires_grad_()
        y32 = theirs(x32)
        _compare(y, grads, y64, _grads(ref, x64, y64, g.double()), y32, _grads(theirs, x32, y32, g))
        _compare_buffers(_buffers(unit), _buffers(ref))
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("device,backend,layout,cin,cout,groups,sg,relu,bias,momentum",
                         _combine(UNIT_CASES[:2] + UNIT_CASES[3:], ["nchw"], lambda layout, c: c[1] != 12))
@pytest.mark.usefixtures("poison")
def test_group_pointwise_bn_eval_is_one_kernel(device, backend, layout, cin, cout, groups, sg, relu, bias,
                                               momentum, monkeypatch):
    unit = GroupPointwiseBN(cin, cout, groups, sg, relu=relu, bias=bias, momentum=momentum).to(device).eval()
    randomize_bn(unit)
    calls = []
    real = unit_mod.group_pointwise_conv2d
    monkeypatch.setattr(unit_mod, "group_pointwise_conv2d", lambda *a, **k: calls.append(k) or real(*a, **k))
    monkeypatch.setattr(unit_mod, "batch_norm_after_shuffle", None)  # the fused path must not reach it
    x = make_input((2, cin, 7, 5), torch.float32, device, "nchw")
    before = _buffers(unit)
    with torch.no_grad(), cnnkern.use_backend(backend):
        assert unit.fused
        y = unit(x)
    assert len(calls) == 1 and calls[0]["scale"] is not None and calls[0]["relu"] == relu
    with torch.no_grad():
        y64, y32 = Unfused(unit).double().eval()(x.double()), Unfused(unit).eval()(x)
    assert_matches_reference(y, y64, y32)
    _compare_buffers(_buffers(unit), {k: v.double() for k, v in before.items()})  # eval: no update


@pytest.mark.parametrize("frozen", [False, True], ids=["trainable-bn", "frozen-bn"])
def test_group_pointwise_bn_eval_with_grad(frozen):
    """Eval mode under autograd: a trainable BN affine still gets its gradient (unfused); a frozen one fuses."""
    unit = GroupPointwiseBN(12, 9, 3, 3).eval()
    randomize_bn(unit)
    unit.bn.requires_grad_(not frozen)
    assert unit.fused == frozen
    ref, theirs = Unfused(unit).double().eval(), Unfused(unit).eval()
    x = torch.randn(2, 12, 4, 6, requires_grad=True)
    g = torch.randn(2, 9, 4, 6)
    y = unit(x)
    x64, x32 = x.detach().double().requires_grad_(), x.detach().requires_grad_()
    y64, y32 = ref(x64), theirs(x32)
    _compare(y, _grads(unit, x, y, g), y64, _grads(ref, x64, y64, g.double()), y32, _grads(theirs, x32, y32, g))


def test_group_pointwise_bn_state_dict_and_repr():
    unit = GroupPointwiseBN(12, 9, 3, 3)
    assert list(unit.state_dict()) == list(Unfused(unit).state_dict())
    assert set(unit.state_dict()) == {"conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                                      "bn.num_batches_tracked"}
    text = repr(unit)
    assert "group_pointwise_conv2d+shuffle(3)" in text and "one kernel" in text and "kernel=pointwise" in text
    with pytest.raises(ValueError, match=r"out_channels \(9\) must be divisible by shuffle_groups \(2\)"):
        GroupPointwiseBN(12, 9, 3, 2)


# ------------------------------------------------------------------------------------ ShuffleNetV2 unit
def _tv_unit(inp, oup, stride):
    tvm = pytest.importorskip("torchvision.models.shufflenetv2")
    tv = tvm.InvertedResidual(inp, oup, stride)
    randomize_bn(tv, seed=inp + stride)
    ours = ShuffleV2Unit(inp, oup, stride)
    ours.load_state_dict(tv.state_dict(), strict=True)
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in tv.named_modules()]
    return ours, tv


@pytest.mark.parametrize("device,backend", PARAMS)
@pytest.mark.parametrize("inp,oup,stride", [(16, 16, 1), (6, 16, 2)], ids=["stride1", "stride2"])
@pytest.mark.usefixtures("poison")
def test_shuffle_v2_unit_train(device, backend, inp, oup, stride):
    ours, tv = _tv_unit(inp, oup, stride)
    ours, ref = ours.to(device), copy.deepcopy(tv).double().to(device)
    tv = tv.to(device)
    x = make_input((2, inp, 6, 5), torch.float32, device, "channels_last").requires_grad_()
    g = torch.randn(2, oup, (6 - 1) // stride + 1, (5 - 1) // stride + 1, device=device)
    with cnnkern.use_backend(backend):
        y = ours(x)
        grads = _grads(ours, x, y, g)
    x64, x32 = x.detach().double().requires_grad_(), x.detach().requires_grad_()
    y64, y32 = ref(x64), tv(x32)
    _compare(y, grads, y64, _grads(ref, x64, y64, g.double()), y32, _grads(tv, x32, y32, g))
    _compare_buffers(_buffers(ours), _buffers(ref))


@pytest.mark.parametrize("device,backend", PARAMS)
@pytest.mark.parametrize("inp,oup,stride", [(16, 16, 1), (6, 16, 2)], ids=["stride1", "stride2"])
@pytest.mark.usefixtures("poison")
def test_shuffle_v2_unit_eval_concat_free(device, backend, inp, oup, stride, monkeypatch):
    ours, tv = _tv_unit(inp, oup, stride)
    ours, tv = ours.to(device).eval(), tv.to(device).eval()
    fused = "shuffle_cat_pointwise" if stride == 1 else "shuffle_cat_pointwise2"
    calls = []
    real = getattr(unit_mod, fused)
    monkeypatch.setattr(unit_mod, fused, lambda *a, **k: calls.append(k) or real(*a, **k))
    monkeypatch.setattr(unit_mod, "channel_shuffle", None)  # the concat-free path never shuffles a tensor
    x = make_input((2, inp, 7, 6), torch.float32, device, "nchw")
    with torch.no_grad():
        assert ours.fused
        with cnnkern.use_backend(backend):
            y = ours(x)
        y32, y64 = tv(x), copy.deepcopy(tv).double()(x.double())
    assert len(calls) == 1
    assert_matches_reference(y, y64, y32)


def test_shuffle_v2_unit_eval_with_grad_trains_bn():
    """Eval mode with autograd on: trainable BN affines get gradients, so the unit runs unfused."""
    ours, tv = _tv_unit(6, 16, 2)
    ours.eval(), tv.eval()
    assert not ours.fused
    x = torch.randn(2, 6, 5, 5, requires_grad=True)
    g = torch.randn(2, 16, 3, 3)
    y, y_tv = ours(x), tv(x)
    torch.testing.assert_close(y, y_tv)
    for a, b in zip(_grads(ours, x, y, g), _grads(tv, x, y_tv, g)):
        torch.testing.assert_close(a, b)


def test_shuffle_v2_unit_errors_and_repr():
    with pytest.raises(ValueError, match="inp should be equal to oup // 2 << 1"):
        ShuffleV2Unit(10, 16, 1)
    assert "shuffle_cat_pointwise2" in repr(ShuffleV2Unit(8, 16, 2))
    assert "kernel=depthwise" in repr(ShuffleV2Unit(16, 16, 1))
