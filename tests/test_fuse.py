"""cnnkern.convert(model, fuse=True) (cnnkern/fuse.py): conv -> BatchNorm2d (-> activation) chains run as one
fused op, found in Sequentials and, through torch.fx, in forwards that call modules by attribute.

For torchvision's ResNet, MobileNetV2 and ShuffleNetV2 (their classes at reduced depth and width, as
tests/test_models.py does to keep CPU time low) and for small models covering each pattern: what is fused
and what is reported as skipped and why; state_dict keys, strict loads both ways, the very same tensors;
outputs, every gradient and the running statistics after training steps against the unfused model (fp32,
and fp64 for the "at most 2x PyTorch's own error" rule), in training and in eval; inverse=True.
The fused op runs on its python route with the reference kernels (its own statistics and backward
plumbing), except where a test says otherwise.
"""

import copy
import io
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from _nn_cases import randomize_bn
from torch import nn

import cnnkern
import cnnkern.nn as cnn
from cnnkern.fuse import FuseSkipReason
from cnnkern.nn import conv_bn as conv_bn_module
from cnnkern.ops import _route

torchvision = pytest.importorskip("torchvision")


@pytest.fixture
def fused_calls(monkeypatch):
    calls = []
    real = conv_bn_module.conv_bn_relu

    def spy(*args, **kwargs):
        calls.append(args[14] if len(args) > 14 else kwargs.get("activation"))
        return real(*args, **kwargs)

    monkeypatch.setattr(conv_bn_module, "conv_bn_relu", spy)
    return calls


def classes(model):
    return {name: type(m) for name, m in model.named_modules()}


def assert_close_to_torch(actual, ref64, theirs, name):
    """At most twice PyTorch's own fp32 error plus the fp32 table's atol at the value scale (training-mode
    BatchNorm over few values amplifies rounding; some gradients are zero by construction). The error of a
    tensor is its L2 norm (atol per element, so sqrt(numel) x atol): after an SGD step each model's
    gradients sit at slightly different parameters, and the largest single element of that difference is
    chaotic -- max-abs ratios of 0.98 (alone) and 2.2 (after the rest of the suite) were seen on ResNet's
    layer3.0.downsample weight grad at step 1, where the L2 ratio is 0.37."""
    atol = 2e-5 * max(1.0, ref64.abs().max().item()) * math.sqrt(ref64.numel())
    ours_err = (actual.double() - ref64).norm().item()
    theirs_err = (theirs.double() - ref64).norm().item()
    assert ours_err <= 2 * theirs_err + atol, f"{name}: error {ours_err:.3e} vs PyTorch's {theirs_err:.3e} (L2)"


def train_and_compare(fused, original, x, steps=2, name=""):
    """``steps`` SGD steps (momentum) on the fused model, the original and an fp64 copy of the original:
    outputs, every parameter's gradient, and at the end every parameter and buffer."""
    ref64 = copy.deepcopy(original).double()
    models = (fused, original, ref64)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in models]
    target = torch.randn(x.shape[0], 10, generator=torch.Generator().manual_seed(5))
    for step in range(steps):
        outs = []
        for m, opt, dtype in zip(models, opts, (torch.float32, torch.float32, torch.float64)):
            m.train()
            for d in m.modules():
                if isinstance(d, nn.Dropout):
                    d.eval()  # its random mask would differ between the three runs
            opt.zero_grad()
            y = m(x.to(dtype))
            F.mse_loss(y, target.to(dtype)).backward()
            outs.append(y.detach())
        assert_close_to_torch(outs[0], outs[2], outs[1], f"{name} step {step} output")
        grads = [{k: p.grad for k, p in m.named_parameters()} for m in models]
        for k in grads[0]:
            assert_close_to_torch(grads[0][k], grads[2][k], grads[1][k], f"{name} step {step} grad {k}")
        for opt in opts:
            opt.step()
    states = [m.state_dict() for m in models]
    for k, v in states[0].items():
        if v.is_floating_point():
            assert_close_to_torch(v, states[2][k], states[1][k], f"{name} {k}")
        else:
            assert torch.equal(v, states[1][k]) and v.item() == steps, k
    with torch.no_grad():
        outs = [m.eval()(x.to(d)) for m, d in zip(models, (torch.float32, torch.float32, torch.float64))]
    assert_close_to_torch(outs[0], outs[2], outs[1], f"{name} eval output")


# ------------------------------------------------------------------------------ torchvision models
def tv_resnet():
    from torchvision.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10)


def tv_mobilenet_v2():
    setting = [[1, 8, 1, 1], [6, 8, 2, 2], [6, 16, 1, 2]]
    return torchvision.models.MobileNetV2(num_classes=10, width_mult=0.25, inverted_residual_setting=setting)


def tv_shufflenet_v2():
    return torchvision.models.ShuffleNetV2([2, 1, 1], [8, 16, 32, 64, 32], num_classes=10)


# name: (builder, {how: chains}, input size); every conv of these models is in a chain and fused. Input sizes
# keep at least 4 values per channel in the last stage's training BatchNorm (batch 4), 16 for ShuffleNetV2
# (its fp32 BatchNorm error grows fastest there: ATen's CPU statistics accumulate in fp64, the fused op's in
# fp32, as on a GPU).
TORCHVISION = {
    "resnet": (tv_resnet, {"fx": 9, "ConvBN": 3}, 32),  # stem + 2 per block by fx; 3 downsample Sequentials
    "mobilenet_v2": (tv_mobilenet_v2, {"ConvBNReLU6": 9, "FusedSequential": 4}, 32),
    "shufflenet_v2": (tv_shufflenet_v2, {"ConvBNReLU": 2, "FusedSequential": 18}, 64),
}


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_model(name, fused_calls):
    build, via, size = TORCHVISION[name]
    torch.manual_seed(0)
    model = build()
    randomize_bn(model)
    original = copy.deepcopy(model)
    before = classes(model)
    keys = list(model.state_dict())
    tensors = {k: v for k, v in model.state_dict(keep_vars=True).items()}

    report = cnnkern.convert(model, fuse=True)
    fusion = report.fusion
    n_convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert fusion.via_counts() == via and len(fusion.fused) == n_convs
    assert fusion.skipped == []
    assert list(model.state_dict()) == keys
    assert all(v is tensors[k] for k, v in model.state_dict(keep_vars=True).items())
    model.load_state_dict(original.state_dict(), strict=True)
    build().load_state_dict(model.state_dict(), strict=True)
    for mod_name, cls in classes(model).items():  # only containers changed class, and stayed what they were
        assert isinstance(model.get_submodule(mod_name), nn.Sequential) == issubclass(before[mod_name],
                                                                                       nn.Sequential)
        if issubclass(cls, (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6)):
            assert cls is before[mod_name] or cls is cnn.Conv2d
    if name == "resnet":  # fx: subclasses of the original classes, the root included
        assert isinstance(model, torchvision.models.ResNet) and type(model) is not torchvision.models.ResNet
    text = str(report)
    assert f"fused {n_convs} conv-BN chain(s)" in text and "not fused 0" in text

    x = torch.randn(4, 3, size, size)
    with _route.forced_route("python"):
        train_and_compare(model, original, x, name=name)
    assert len(fused_calls) == 3 * n_convs  # two training steps and one eval forward, every chain fused

    back = cnnkern.convert(model, inverse=True)
    assert len(back.fusion.restored) == len({c.container for c in fusion.fused})
    assert classes(model) == before
    assert list(model.state_dict()) == keys


def test_torchvision_full_size_models_report():
    """The full torchvision models: every conv fused, nothing skipped (no forward run)."""
    for name, n in (("resnet50", 53), ("mobilenet_v2", 52), ("shufflenet_v2_x1_0", 56)):
        model = getattr(torchvision.models, name)()
        fusion = cnnkern.convert(model, fuse=True).fusion
        assert len(fusion.fused) == n and fusion.skipped == [], (name, str(fusion))


# ------------------------------------------------------------------------------------ custom models
class DoubledConv(nn.Conv2d):
    def forward(self, x):
        return 2 * super().forward(x)


class AttrNet(nn.Module):
    """Chains called by attribute: a shared ReLU (also used after an add), a reflect-padded conv, a
    functional activation, a conv whose output is reused, a BatchNorm whose output is reused, and a conv
    subclass."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(8)
        self.conv3, self.bn3 = nn.Conv2d(8, 8, 1, stride=2), nn.BatchNorm2d(8, momentum=None)
        self.conv4, self.bn4 = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)
        self.conv5, self.bn5 = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8)
        self.conv6, self.bn6 = DoubledConv(8, 8, 1), nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)) + out)
        out = F.relu6(self.bn3(self.conv3(out)))
        c4 = self.conv4(out)
        out = self.bn4(c4) + 0.5 * c4
        b5 = self.bn5(self.conv5(out))
        out = self.relu(b5) * torch.sigmoid(b5)
        out = self.relu(self.bn6(self.conv6(out)))
        return self.head(out.mean((2, 3)))


def test_attribute_calls_through_fx(fused_calls):
    model = AttrNet()
    randomize_bn(model)
    original = copy.deepcopy(model)
    fusion = cnnkern.convert(model, fuse=True).fusion
    assert [c.modules for c in fusion.fused] == [
        ("conv1", "bn1", "relu"), ("conv2", "bn2"), ("conv3", "bn3", "relu6()"), ("conv5", "bn5")]
    assert {c.via for c in fusion.fused} == {"fx"} and {c.container for c in fusion.fused} == {""}
    assert [(s.name, s.reason) for s in fusion.skipped] == [("conv4", FuseSkipReason.OUTPUT_REUSED),
                                                            ("conv6", FuseSkipReason.NOT_FUSABLE)]
    assert "DoubledConv" in fusion.skipped[1].detail and "mul" in fusion.skipped[0].detail
    assert isinstance(model, AttrNet) and "fused_conv_bn" in type(model)._cnnkern_fused_code
    x = torch.randn(4, 3, 12, 12)
    with _route.forced_route("python"):
        train_and_compare(model, original, x, steps=2, name="AttrNet")
    assert fused_calls == ["relu", None, "relu6", None] * 3

    # The shared ReLU keeps its hooks: registered on it, the chain runs unfused and the hook fires as often
    # as in the original (once per use).
    fired = {"ours": 0, "original": 0}
    model.relu.register_forward_hook(lambda *a: fired.__setitem__("ours", fired["ours"] + 1))
    original.relu.register_forward_hook(lambda *a: fired.__setitem__("original", fired["original"] + 1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x), rtol=1e-4, atol=1e-5)
    assert fired["ours"] == fired["original"] == 4

    copied = copy.deepcopy(model)  # copies stay fused
    assert type(copied) is type(model) and copied.conv1 is not model.conv1
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(model)  # generated class: pickle the state_dict (or convert back first)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    AttrNet().load_state_dict(torch.load(buf), strict=True)
    back = cnnkern.convert(model, inverse=True)
    assert type(model) is AttrNet and [r.name for r in back.fusion.restored] == [""]
    model.relu._forward_hooks.clear()
    pickle.loads(pickle.dumps(model))


class PlainSeq(nn.Sequential):
    """Only an __init__, like torchvision's Conv2dNormActivation: its class may be swapped."""

    def __init__(self, *layers):
        super().__init__(*layers)


class MethodSeq(nn.Sequential):
    """Has a method of its own: not swapped to a fused Sequential; fused through fx, as its own subclass."""

    def width(self):
        return self[0].out_channels


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return y if y.sum() > 0 else -y  # data-dependent control flow


class TrainingDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return 2 * y if self.training else y


def seq_net():
    m = nn.Sequential()
    m.add_module("stem", nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()))
    m.add_module("plain", PlainSeq(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6()))
    circular = nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular")
    m.add_module("vgg", nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.SiLU(), nn.MaxPool2d(2),
                                      circular, nn.BatchNorm2d(8)))
    m.add_module("method", MethodSeq(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU()))
    m.add_module("proj", nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)))
    m.add_module("subclass", nn.Sequential(DoubledConv(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU()))
    m.add_module("untraceable", Untraceable())
    m.add_module("trainflag", TrainingDependent())
    m.add_module("pool", nn.AdaptiveAvgPool2d(1))
    m.add_module("flat", nn.Flatten())
    m.add_module("head", nn.Linear(8, 10))
    return m


def test_sequentials_and_reasons(fused_calls):
    model = seq_net()
    randomize_bn(model)
    original = copy.deepcopy(model)
    before = classes(model)
    fusion = cnnkern.convert(model, fuse=True).fusion
    assert [(c.container, c.via, c.activation) for c in fusion.fused] == [
        ("stem", "ConvBNReLU", "relu"), ("plain", "ConvBNReLU6", "relu6"), ("vgg", "FusedSequential", "silu"),
        ("vgg", "FusedSequential", None), ("method", "fx", "relu"), ("proj", "ConvBN", None)]
    assert {s.name: s.reason for s in fusion.skipped} == {
        "subclass.0": FuseSkipReason.NOT_FUSABLE, "untraceable": FuseSkipReason.UNTRACEABLE,
        "trainflag": FuseSkipReason.TRAINING_DEPENDENT}
    detail = {s.name: s.detail for s in fusion.skipped}
    assert "TraceError" in detail["untraceable"] and "control flow" in detail["untraceable"]
    assert type(model.stem) is cnn.ConvBNReLU and type(model.plain) is cnn.ConvBNReLU6
    assert type(model.subclass) is nn.Sequential and type(model) is nn.Sequential
    assert isinstance(model.method, MethodSeq) and model.method.width() == 8
    x = torch.randn(4, 3, 8, 8)
    with _route.forced_route("python"):
        train_and_compare(model, original, x, steps=2, name="seq_net")
    assert len(fused_calls) == 6 * 3
    text = str(cnnkern.convert(model, fuse=True))
    assert "fused 0 conv-BN chain(s)" in text and "already fused" in text
    back = cnnkern.convert(model, inverse=True).fusion
    assert len(back.restored) == 5 and classes(model) == before


@pytest.mark.parametrize("include,exclude,fused", [
    (None, "vgg.4", {"stem", "plain", "method", "proj"}),  # a Sequential fuses all its chains or none
    ("method", None, {"method"}),
    (["stem", "p*"], None, {"stem", "plain", "proj"}),
    (None, nn.Conv2d, set()),  # patterns are matched on the chain's conv
])
def test_include_exclude(include, exclude, fused):
    model = seq_net()
    fusion = cnnkern.convert(model, include=include, exclude=exclude, fuse=True).fusion
    assert {c.container for c in fusion.fused} == fused
    excluded = {s.name for s in fusion.skipped_for(FuseSkipReason.EXCLUDED)}
    assert (excluded == {"vgg.0", "vgg.4"}) == (exclude == "vgg.4")


def test_attribute_chain_excluded_alone():
    model = AttrNet()
    fusion = cnnkern.convert(model, exclude="conv2", fuse=True).fusion
    assert [c.modules[0] for c in fusion.fused] == ["conv1", "conv3", "conv5"]
    assert [s.name for s in fusion.skipped_for(FuseSkipReason.EXCLUDED)] == ["conv2"]


def test_bundled_models_are_already_fused(fused_calls):
    """cnnkern.models build their chains fused: convert(fuse=True) finds nothing left to do."""
    from cnnkern.models.resnet import BasicBlock

    model = cnnkern.models.ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10)
    before = classes(model)
    fusion = cnnkern.convert(model, fuse=True).fusion
    assert fusion.fused == [] and classes(model) == before
    assert {s.reason for s in fusion.skipped} == {FuseSkipReason.ALREADY_FUSED}
    assert len(fusion.skipped) == 1 + 4 + 3  # the root, the blocks (fused_conv_bn calls), the downsamples
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 32, 32))
    assert len(fused_calls) == 12


def test_compile_fused_attribute_module():
    """The generated forward of an fx-fused module compiles (dynamo reads its generated source)."""
    model = AttrNet()
    cnnkern.convert(model, fuse=True)
    original = copy.deepcopy(model)
    cnnkern.convert(original, inverse=True)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        y = torch.compile(model.eval(), backend="aot_eager")(x)
        torch.testing.assert_close(y, original.eval()(x), rtol=1e-4, atol=1e-5)
