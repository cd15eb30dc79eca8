"""Bundled models: the torchvision-compatible ones against torchvision, the seed ones against the seed tables.

torchvision models are compared with random weights and perturbed BatchNorms (running statistics and affine
away from identity), loaded into ours with ``strict=True``; outputs in eval mode must match an fp64 run of
the torchvision model within the fp32 table and at most twice torchvision's own fp32 error. Full-size models
run on the reference backend; under the Triton interpreter (~seconds per conv here) the same classes run at
reduced depth/width against torchvision's classes built with the same configuration.
"""

import copy
import importlib

import pytest
import torch
from _nn_cases import poison, randomize_bn  # noqa: F401 (poison is a fixture)
from tolerances import assert_matches_reference

import cnnkern
from cnnkern import models
from cnnkern.models.shufflenet_v1 import ShuffleV1Unit
from cnnkern.nn import Conv2d, GroupPointwiseBN, ShuffleV2Unit

torchvision = pytest.importorskip("torchvision")
unit_mod = importlib.import_module("cnnkern.nn.pointwise_shuffle")

# name -> input size: 64x64 where cheap, 32x32 for the deep/wide ones (their last stage is then 1x1)
TORCHVISION_MODELS = {
    "resnet18": 64, "resnet34": 32, "resnet50": 32, "resnet101": 32, "resnet152": 32, "resnext50_32x4d": 32,
    "wide_resnet50_2": 32, "mobilenet_v2": 64, "shufflenet_v2_x0_5": 64, "shufflenet_v2_x1_0": 64,
    "shufflenet_v2_x1_5": 64, "shufflenet_v2_x2_0": 64,
}
SEED_MODELS = ["mobilenet_v1", "shufflenet_v1"]


def _pair(name, **kwargs):
    tv = getattr(torchvision.models, name)(**kwargs)
    randomize_bn(tv)
    ours = models.get_model(name, **kwargs)
    ours.load_state_dict(tv.state_dict(), strict=True)
    return ours, tv


def _assert_same_tree(ours, tv):
    assert list(ours.state_dict()) == list(tv.state_dict())
    ours_mods, tv_mods = dict(ours.named_modules()), dict(tv.named_modules())
    assert list(ours_mods) == list(tv_mods)
    for name, theirs in tv_mods.items():
        mine = ours_mods[name]
        if isinstance(theirs, torch.nn.Conv2d):
            assert isinstance(mine, Conv2d), f"{name}: {type(mine).__name__} is not cnnkern.nn.Conv2d"
        for base in (torch.nn.Sequential, torch.nn.BatchNorm2d, torch.nn.ReLU, torch.nn.ReLU6, torch.nn.Linear,
                     torch.nn.MaxPool2d, torch.nn.Dropout):
            assert isinstance(mine, base) == isinstance(theirs, base), f"{name}: {type(mine)} vs {type(theirs)}"


def _assert_eval_matches(ours, tv, x):
    ours.eval(), tv.eval()
    with torch.no_grad():
        y = ours(x)
        y32 = tv(x)
        y64 = copy.deepcopy(tv).double()(x.double())
    assert_matches_reference(y, y64, y32)


def _count_concat_free(monkeypatch):
    calls = {"shuffle_cat_pointwise": 0, "shuffle_cat_pointwise2": 0}
    for name in calls:
        real = getattr(unit_mod, name)

        def spy(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(unit_mod, name, spy)
    monkeypatch.setattr(unit_mod, "channel_shuffle", None)  # the eval path must never shuffle a tensor
    return calls


def test_registry():
    assert set(models.list_models()) == set(TORCHVISION_MODELS) | set(SEED_MODELS)
    assert models.get_model("mobilenet_v2", num_classes=7)(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(ValueError, match="unknown model 'resnet19'; available: mobilenet_v1, mobilenet_v2"):
        models.get_model("resnet19")


@pytest.mark.usefixtures("poison")
@pytest.mark.parametrize("name", list(TORCHVISION_MODELS))
def test_matches_torchvision(name, monkeypatch):
    ours, tv = _pair(name, num_classes=37)
    _assert_same_tree(ours, tv)
    calls = _count_concat_free(monkeypatch)
    size = TORCHVISION_MODELS[name]
    _assert_eval_matches(ours, tv, torch.randn(1, 3, size, size))
    if name.startswith("shufflenet_v2"):
        units = [m for m in ours.modules() if isinstance(m, ShuffleV2Unit)]
        assert calls["shuffle_cat_pointwise2"] == 3  # every stage starts with a stride-2 unit
        assert calls["shuffle_cat_pointwise"] == len(units) - 3 == 13


def _assert_close_to_torch(actual, ref64, theirs, name):
    """At most twice torchvision's own fp32 error, plus the fp32 table's atol relative to the value scale.

    Used in training mode, where BatchNorm normalises by statistics of few values (batch 2, 2x2 pixels in the
    last stage) and so amplifies fp32 rounding past the table's rtol for torchvision itself, and where some
    gradients are zero by construction (a per-channel shift before a training BatchNorm cancels) and hold
    only rounding noise.
    """
    atol = 2e-5 * max(1.0, ref64.abs().max().item())
    ours_err = (actual.double() - ref64).abs().max().item()
    theirs_err = (theirs.double() - ref64).abs().max().item()
    assert ours_err <= 2 * theirs_err + atol, f"{name}: error {ours_err:.3e} vs torchvision's {theirs_err:.3e}"


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "mobilenet_v2", "resnet18"])
def test_train_step_matches_torchvision(name):
    """Training mode: batch-statistics forward, every parameter's gradient and the running-stat update
    (every conv -> BN (-> act) of ours runs as one fused conv_bn_relu: see test_fused_op_runs_every_chain)."""
    ours, tv = _pair(name, num_classes=11)
    ref = copy.deepcopy(tv).double()
    for model in (ours, tv, ref):
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.eval()  # its random mask would differ between the three runs
    x = torch.randn(2, 3, 64, 64)
    y, y32, y64 = ours(x), tv(x), ref(x.double())
    _assert_close_to_torch(y, y64, y32, "output")
    g = torch.randn_like(y)
    for out, grad in ((y, g), (y32, g), (y64, g.double())):
        out.backward(grad)
    tv_params, ref_params = dict(tv.named_parameters()), dict(ref.named_parameters())
    for k, p in ours.named_parameters():
        _assert_close_to_torch(p.grad, ref_params[k].grad, tv_params[k].grad, f"grad {k}")
    ref_state, tv_state = ref.state_dict(), tv.state_dict()
    for k, v in ours.state_dict().items():
        if "running" in k:
            _assert_close_to_torch(v, ref_state[k], tv_state[k], k)
        elif "num_batches" in k:
            assert v.item() == ref_state[k].item() == 1


# name -> conv-BN chains run by the fused op per forward (training, eval). ShuffleNetV1's grouped 1x1 convs
# are GroupPointwiseBN units (their own fused kernel), its stem and depthwise conv + BN are chains;
# ShuffleNetV2's eval forward runs the units' last 1x1 conv + BN + ReLU inside shuffle_cat_pointwise(2).
FUSED_CHAINS = {"mobilenet_v1": (27, 27), "mobilenet_v2": (52, 52), "shufflenet_v1": (17, 17),
                "shufflenet_v2_x0_5": (56, 37), "resnet18": (20, 20), "resnet50": (53, 53)}


@pytest.mark.parametrize("name", list(FUSED_CHAINS))
def test_fused_op_runs_every_chain(name, monkeypatch):
    conv_bn = importlib.import_module("cnnkern.nn.conv_bn")
    calls = []
    real = conv_bn.conv_bn_relu

    def spy(*args, **kwargs):
        calls.append(args[7])  # training (batch statistics)
        return real(*args, **kwargs)

    monkeypatch.setattr(conv_bn, "conv_bn_relu", spy)
    model = models.get_model(name, num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    model.train()(x).sum().backward()
    train, evaluate = FUSED_CHAINS[name]
    assert calls == [True] * train
    calls.clear()
    with torch.no_grad():
        model.eval()(x)
    assert calls == [False] * evaluate
    # nothing is left for the converter to fuse
    assert cnnkern.convert(model, fuse=True).fusion.fused == []


# ------------------------------------------------------------------------------ Triton (interpreter)
def _tiny(kind):
    """The bundled classes at reduced depth/width, and torchvision's classes with the same configuration."""
    from torchvision.models import resnet as tv_resnet

    resnet = importlib.import_module("cnnkern.models.resnet")
    if kind == "shufflenet_v2":
        cfg = ([2, 1, 1], [8, 16, 32, 64, 32], 10)
        return models.ShuffleNetV2(*cfg), torchvision.models.ShuffleNetV2(*cfg), (1, 3, 16, 16)
    if kind == "mobilenet_v2":
        cfg = {"num_classes": 10, "width_mult": 0.25, "inverted_residual_setting": [[1, 8, 1, 1], [6, 8, 2, 2]]}
        return models.MobileNetV2(**cfg), torchvision.models.MobileNetV2(**cfg), (1, 3, 12, 12)
    if kind == "resnet_basic_block":  # stride 2 with a 1x1 stride-2 downsample
        def down(conv):
            return torch.nn.Sequential(conv(8, 8, 1, 2, bias=False), torch.nn.BatchNorm2d(8))
        return (resnet.BasicBlock(8, 8, 2, down(Conv2d)), tv_resnet.BasicBlock(8, 8, 2, down(torch.nn.Conv2d)),
                (1, 8, 7, 6))
    # ResNeXt bottleneck: a grouped 3x3 between two pointwise convs
    return (resnet.Bottleneck(16, 4, 1, None, groups=4, base_width=32),
            tv_resnet.Bottleneck(16, 4, 1, None, groups=4, base_width=32), (1, 16, 5, 6))


@pytest.mark.usefixtures("poison")
@pytest.mark.parametrize("kind", ["shufflenet_v2", "mobilenet_v2", "resnet_basic_block", "resnext_bottleneck"])
def test_triton_matches_torchvision(kind, monkeypatch):
    """The full-size models take minutes per forward under the interpreter here; these cover every unit type."""
    if cnnkern.backend_status()["triton"] is not None:
        pytest.skip(f"triton backend unavailable: {cnnkern.backend_status()['triton']}")
    ours, tv, shape = _tiny(kind)
    randomize_bn(tv)
    ours.load_state_dict(tv.state_dict(), strict=True)
    _assert_same_tree(ours, tv)
    calls = _count_concat_free(monkeypatch)
    x = torch.randn(shape)
    with cnnkern.use_backend("triton"):
        ours.eval()
        with torch.no_grad():
            y = ours(x)
    assert cnnkern.last_choice() is not None and "triton" in str(cnnkern.last_choice())
    with torch.no_grad():
        y32, y64 = tv.eval()(x), copy.deepcopy(tv).double()(x.double())
    assert_matches_reference(y, y64, y32)
    if kind == "shufflenet_v2":
        assert calls == {"shuffle_cat_pointwise": 1, "shuffle_cat_pointwise2": 3}


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(TORCHVISION_MODELS))
def test_cuda_matches_torchvision(name):
    """On a GPU: the automatic choice (CUDA kernels, Triton where an op has none), channels_last input."""
    ours, tv = _pair(name, num_classes=37)
    ours, tv = ours.cuda(), tv.cuda()
    x = torch.randn(2, 3, 64, 64, device="cuda").to(memory_format=torch.channels_last)
    _assert_eval_matches(ours, tv, x)


# ------------------------------------------------------------------------------------- seed models
def _profile(model, size=224):
    """Multiply-adds of every conv / linear layer at ``size``x``size`` (counted from the shapes that ran)."""
    layers, macs = [], 0

    def hook(module, inputs, output):
        nonlocal macs
        conv = module.conv if isinstance(module, GroupPointwiseBN) else module  # fused: conv.forward never runs
        if isinstance(conv, torch.nn.Conv2d):
            kh, kw = conv.kernel_size
            macs += output[0].numel() * conv.in_channels // conv.groups * kh * kw
            kind = "dw" if conv.groups == conv.in_channels > 1 else "conv"
            layers.append((kind, conv.stride[0], conv.in_channels, conv.out_channels, inputs[0].shape[-1]))
        else:
            macs += conv.in_features * conv.out_features
            layers.append(("fc", 1, conv.in_features, conv.out_features, 1))

    in_units = {id(m.conv) for m in model.modules() if isinstance(m, GroupPointwiseBN)}
    targets = [m for m in model.modules() if isinstance(m, (GroupPointwiseBN, torch.nn.Linear))
               or (isinstance(m, torch.nn.Conv2d) and id(m) not in in_units)]
    handles = [m.register_forward_hook(hook) for m in targets]
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, size, size))
    for h in handles:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    return layers, macs / 1e6, params / 1e6


def _mobilenet_v1_table(alpha):
    """The seed's MobileNet table (kind, stride, in, out, input size) with the width multiplier applied."""
    def c(n):
        return int(n * alpha)
    rows = [("conv", 2, 3, c(32), 224)]
    size, ch = 112, c(32)
    for out, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [
            (1024, 2), (1024, 1)]:  # the table's last "dw / s2" on a 7x7 input that stays 7x7 is stride 1
        rows.append(("dw", stride, ch, ch, size))
        size //= stride
        rows.append(("conv", 1, ch, c(out), size))
        ch = c(out)
    return rows + [("fc", 1, ch, 1000, 1)]


# width multiplier -> (million mult-adds, million parameters) at 224x224, the seed's table
MOBILENET_V1_PAPER = {1.0: (569, 4.2), 0.75: (325, 2.6), 0.5: (149, 1.3), 0.25: (41, 0.5)}


@pytest.mark.parametrize("alpha", list(MOBILENET_V1_PAPER))
def test_mobilenet_v1_matches_seed_table(alpha):
    layers, macs, params = _profile(models.mobilenet_v1(alpha))
    assert layers == _mobilenet_v1_table(alpha)
    assert len(layers) == 28
    paper_macs, paper_params = MOBILENET_V1_PAPER[alpha]
    assert macs == pytest.approx(paper_macs, rel=0.01)
    assert params == pytest.approx(paper_params, abs=0.05)  # the paper rounds to 0.1 M


@pytest.mark.parametrize("size,paper_macs", [(192, 418), (160, 290), (128, 186)])
def test_mobilenet_v1_resolution_multiplier(size, paper_macs):
    _, macs, params = _profile(models.mobilenet_v1(), size)
    assert macs == pytest.approx(paper_macs, rel=0.01)
    assert params == pytest.approx(4.2, abs=0.05)


# groups -> stage 2/3/4 output channels and complexity (million mult-adds at 224x224), the seed's table
SHUFFLENET_V1_PAPER = {1: ((144, 288, 576), 143), 2: ((200, 400, 800), 140), 3: ((240, 480, 960), 137),
                       4: ((272, 544, 1088), 133), 8: ((384, 768, 1536), 137)}


@pytest.mark.parametrize("groups", list(SHUFFLENET_V1_PAPER))
def test_shufflenet_v1_matches_seed_table(groups):
    model = models.shufflenet_v1(groups)
    channels, paper_macs = SHUFFLENET_V1_PAPER[groups]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        x = model.eval().conv1(x)
        assert x.shape[1:] == (24, 112, 112)
        x = model.maxpool(x)
        assert x.shape[2:] == (56, 56)
        for stage, units, c, size in zip((model.stage2, model.stage3, model.stage4), (4, 8, 4), channels,
                                         (28, 14, 7)):
            assert len(stage) == units and [u.stride for u in stage] == [2] + [1] * (units - 1)
            x = stage(x)
            assert x.shape[1:] == (c, size, size)
    for unit in model.modules():
        if isinstance(unit, ShuffleV1Unit):
            assert unit.gconv2.conv.groups == groups
            grouped = unit.gconv1.conv.groups == groups
            assert grouped or unit is model.stage2[0]  # the paper leaves stage 2's first 1x1 dense
            assert unit.gconv1.shuffle_groups == (groups if grouped and groups > 1 else None)
    _, macs, _ = _profile(model)
    assert macs == pytest.approx(paper_macs, rel=0.02)


@pytest.mark.parametrize("width,paper_macs,rel", [(0.5, 38, 0.1), (0.25, 13, 0.2)])
def test_shufflenet_v1_width_multiplier(width, paper_macs, rel):
    """The paper's Table 2 complexities for ShuffleNet 0.5x / 0.25x (our channel rounding differs slightly)."""
    for groups in SHUFFLENET_V1_PAPER:
        _, macs, _ = _profile(models.shufflenet_v1(groups, width))
        assert macs == pytest.approx(paper_macs, rel=rel), groups


@pytest.mark.parametrize("groups", list(SHUFFLENET_V1_PAPER))
def test_shufflenet_v1_trains_and_fuses(groups):
    """Every group count builds, trains (gradients reach every parameter) and its fused eval path equals the
    unfused one (the same model with BN affine trainable under autograd runs unfused)."""
    model = models.shufflenet_v1(groups, width_mult=0.5, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    model.train()(x).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        # (a BN bias right before conv + training BN, like dwbn's, has zero gradient by construction)
        assert p.grad.abs().sum() > 0 or name.endswith("bn.bias"), name
    model.eval()
    units = [m for m in model.modules() if isinstance(m, GroupPointwiseBN)]
    with torch.no_grad():
        assert all(u.fused for u in units)
        fused = model(x)
    assert not any(u.fused for u in units)
    unfused = model(x)
    torch.testing.assert_close(fused, unfused.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75, 1.0])
def test_mobilenet_v1_runs_every_width(alpha):
    model = models.mobilenet_v1(alpha, num_classes=5)
    y = model.train()(torch.randn(2, 3, 32, 32))
    y.sum().backward()
    assert y.shape == (2, 5) and all(p.grad is not None for p in model.parameters())
    assert all(type(m) is not torch.nn.Conv2d for m in model.modules())
