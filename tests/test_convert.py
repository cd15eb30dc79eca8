"""cnnkern.convert: in-place swap of torch convs / channel shuffles for their cnnkern twins, and back."""

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

import cnnkern
import cnnkern.nn as cnn
from cnnkern.convert import ConversionReport, SkipReason

FP32 = {"atol": 2e-5, "rtol": 2e-5}  # tests/tolerances.py's fp32 row; outputs here are O(1)
TWIN_OF = {nn.Conv2d: cnn.Conv2d, nn.ConvTranspose2d: cnn.ConvTranspose2d, nn.ChannelShuffle: cnn.ChannelShuffle}


def perturb_batchnorm(model):
    """Random BN statistics and affine parameters, so eval-mode BN is not the identity."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def module_classes(model):
    return {name: type(m) for name, m in model.named_modules()}


# ----------------------------------------------------------------------------------- torchvision models
TORCHVISION_MODELS = {
    # name: kernel families of its converted convs
    "resnet50": {"direct": 20, "pointwise": 33},
    "mobilenet_v2": {"direct": 1, "depthwise": 17, "pointwise": 34},
    "shufflenet_v2_x1_0": {"direct": 1, "depthwise": 19, "pointwise": 36},
}


@pytest.mark.parametrize("name", list(TORCHVISION_MODELS))
def test_torchvision_model(name):
    tv = pytest.importorskip("torchvision", reason="torchvision (a test extra) is not installed")
    model = perturb_batchnorm(getattr(tv.models, name)(weights=None)).eval()
    original = copy.deepcopy(model)
    classes_before = module_classes(model)
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    keys = list(model.state_dict())
    convs = [n for n, m in model.named_modules() if type(m) is nn.Conv2d]
    fired = []
    model.get_submodule(convs[1]).register_forward_hook(lambda *_: fired.append(1))
    x = torch.randn(1, 3, 48, 48)  # small, yet every stage keeps more than one pixel

    report = cnnkern.convert(model)
    assert isinstance(report, ConversionReport) and not report.inverse
    assert [r.name for r in report.replaced] == convs
    assert report.skipped == []
    assert report.family_counts() == TORCHVISION_MODELS[name]
    for entry in report.replaced:
        module = model.get_submodule(entry.name)
        assert (entry.from_class, entry.to_class) == (nn.Conv2d, cnn.Conv2d)
        assert type(module) is cnn.Conv2d and entry.kernel_family == module.kernel_family
        assert f"kernel={entry.kernel_family}" in repr(module)
    for n, cls in module_classes(model).items():
        assert cls is (cnn.Conv2d if n in convs else classes_before[n]), n
    # The same tensors, not copies; the same keys, flags, device and dtype.
    assert all(p is params[n] for n, p in model.named_parameters())
    assert all(b is buffers[n] for n, b in model.named_buffers())
    assert list(model.state_dict()) == keys
    assert not model.training and all(not m.training for m in model.modules())

    with torch.no_grad(), cnnkern.use_backend("reference"):
        torch.testing.assert_close(model(x), original(x), **FP32)
    assert fired, "a forward hook registered before the conversion must still fire"
    text = str(report)
    assert f"replaced {len(convs)} module(s)" in text and "skipped 0" in text
    assert "functional calls" in text  # ShuffleNetV2's channel_shuffle is a function: said, not hidden

    again = cnnkern.convert(model)
    assert again.replaced == []
    assert [s.name for s in again.skipped_for(SkipReason.ALREADY_CONVERTED)] == convs

    back = cnnkern.convert(model, inverse=True)
    assert back.inverse and [r.name for r in back.replaced] == convs
    assert all((r.from_class, r.to_class) == (cnn.Conv2d, nn.Conv2d) for r in back.replaced)
    assert module_classes(model) == classes_before
    assert all(p is params[n] for n, p in model.named_parameters())


# --------------------------------------------------------------------------- a model with unsupported layers
class DoubledConv(nn.Conv2d):
    """A user's Conv2d subclass with its own forward: converting it would silently drop the doubling."""

    def forward(self, x):
        return 2 * super().forward(x)


class TaggedConv(nn.Conv2d):
    """A subclass that overrides nothing: still the user's class, so it is left alone."""


def mixed_model():
    m = nn.Module()
    m.conv = nn.Conv2d(3, 4, 3, padding=1)
    m.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
    m.up = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
    m.shuffle = nn.ChannelShuffle(2)
    m.c1 = nn.Conv1d(3, 3, 3)
    m.c3 = nn.Conv3d(3, 3, 3)
    m.ct1 = nn.ConvTranspose1d(3, 3, 3)
    m.doubled = DoubledConv(3, 3, 3)
    m.tagged = TaggedConv(3, 3, 3)
    m.lazy = nn.LazyConv2d(5, 3)
    m.complex = nn.Conv2d(2, 2, 3, dtype=torch.complex64)
    m.patched = nn.Conv2d(3, 3, 1)
    m.patched.forward = lambda x: x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated; users still have it
        m.scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 3, 1)))
    m.head = nn.Linear(4, 3)
    return m


EXPECTED_SKIPS = {
    "c1": SkipReason.UNSUPPORTED_TYPE,
    "c3": SkipReason.UNSUPPORTED_TYPE,
    "ct1": SkipReason.UNSUPPORTED_TYPE,
    "doubled": SkipReason.SUBCLASS,
    "tagged": SkipReason.SUBCLASS,
    "lazy": SkipReason.LAZY,
    "complex": SkipReason.UNSUPPORTED_DTYPE,
    "patched": SkipReason.INSTANCE_FORWARD,
    "scripted": SkipReason.TORCHSCRIPT,
}


def test_unsupported_layers_are_skipped_with_reasons():
    model = mixed_model()
    before = module_classes(model)
    report = cnnkern.convert(model)
    assert {r.name: r.to_class for r in report.replaced} == {
        "conv": cnn.Conv2d, "dw": cnn.Conv2d, "up": cnn.ConvTranspose2d, "shuffle": cnn.ChannelShuffle}
    assert {r.name: r.kernel_family for r in report.replaced} == {
        "conv": "direct", "dw": "depthwise", "up": "transposed", "shuffle": "channel_shuffle"}
    assert {s.name: s.reason for s in report.skipped} == EXPECTED_SKIPS
    details = {s.name: s.detail for s in report.skipped}
    assert "overrides forward" in details["doubled"] and "overrides" not in details["tagged"]
    assert "complex64" in details["complex"] and "forward pass" in details["lazy"]
    for name, reason in EXPECTED_SKIPS.items():
        assert type(model.get_submodule(name)) is before[name], name
        assert f"{name} (" in str(report) and reason.value in str(report)
    assert "head" not in str(report)  # a Linear is not a conv: not part of the report
    # The skipped user subclass still runs its own code; the patched forward is still the instance's.
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(model.doubled(x), 2 * nn.functional.conv2d(x, model.doubled.weight,
                                                                           model.doubled.bias))
    assert model.patched(x) is x


def test_lazy_conv_converts_once_materialized():
    model = nn.Sequential(nn.LazyConv2d(5, 3), nn.ReLU())
    assert cnnkern.convert(model).skipped_for(SkipReason.LAZY)
    x = torch.randn(2, 3, 7, 6)
    y = model(x)  # materializes: LazyConv2d becomes a Conv2d
    report = cnnkern.convert(model)
    assert [r.name for r in report.replaced] == ["0"] and type(model[0]) is cnn.Conv2d
    with cnnkern.use_backend("reference"):
        torch.testing.assert_close(model(x), y, **FP32)


def test_parametrized_conv_keeps_its_parametrization():
    model = nn.Sequential(parametrizations.weight_norm(nn.Conv2d(3, 4, 3)))
    original = copy.deepcopy(model)
    keys = list(model.state_dict())
    report = cnnkern.convert(model)
    conv = model[0]
    assert [(r.from_class, r.to_class) for r in report.replaced] == [(nn.Conv2d, cnn.Conv2d)]
    assert isinstance(conv, cnn.Conv2d) and parametrize.is_parametrized(conv, "weight")
    assert list(model.state_dict()) == keys
    x = torch.randn(2, 3, 6, 7)
    with cnnkern.use_backend("reference"):
        torch.testing.assert_close(model(x), original(x), **FP32)
        loss = model(x).square().sum()
    loss.backward()  # gradients reach the parametrization's stored tensors
    assert all(p.grad is not None for p in conv.parametrizations.weight.parameters())
    copy.deepcopy(model)  # the rebuilt parametrized class still deep-copies
    cnnkern.convert(model, inverse=True)
    assert type(conv).__bases__ == (nn.Conv2d,) and parametrize.is_parametrized(conv, "weight")
    cnnkern.convert(model)
    parametrize.remove_parametrizations(conv, "weight")
    assert type(conv) is cnn.Conv2d  # removing the parametrization lands on the twin


def test_root_module_and_shared_modules():
    conv = nn.Conv2d(3, 3, 3)
    report = cnnkern.convert(conv)
    assert type(conv) is cnn.Conv2d and report.replaced[0].name == "" and "(root)" in report.format(True)

    shared = nn.Conv2d(3, 3, 1)
    model = nn.Module()
    model.a, model.b = nn.Sequential(shared), nn.Sequential(shared)
    report = cnnkern.convert(model, exclude="b.*")
    # One object under two names: excluded under either name means left alone under both.
    assert report.replaced == [] and [s.reason for s in report.skipped] == [SkipReason.EXCLUDED]
    report = cnnkern.convert(model)
    assert [r.name for r in report.replaced] == ["a.0"] and type(model.b[0]) is cnn.Conv2d


# --------------------------------------------------------------------------------------------- filters
def staged_model():
    def stage(c):
        return nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.Conv2d(c, c, 1))

    m = nn.Sequential()
    m.add_module("stem", nn.Conv2d(3, 4, 3))
    m.add_module("layer1", stage(4))
    m.add_module("layer2", stage(4))
    m.add_module("layer10", stage(4))
    m.add_module("up", nn.ConvTranspose2d(4, 4, 2, stride=2))
    return m


@pytest.mark.parametrize("include, exclude, expected", [
    (None, None, {"stem", "layer1.0", "layer1.2", "layer2.0", "layer2.2", "layer10.0", "layer10.2", "up"}),
    ("layer1", None, {"layer1.0", "layer1.2"}),           # a name selects its whole subtree...
    ("layer1.*", None, {"layer1.0", "layer1.2"}),         # ...as does name.*; "layer10" is another name
    (["stem", "layer2.0"], None, {"stem", "layer2.0"}),
    ("*.2", None, {"layer1.2", "layer2.2", "layer10.2"}),
    (None, ["layer1*", "up"], {"stem", "layer2.0", "layer2.2"}),
    (nn.ConvTranspose2d, None, {"up"}),                    # a class selects its instances
    ("layer*", "*.0", {"layer1.2", "layer2.2", "layer10.2"}),  # exclude wins over include
    (None, nn.Conv2d, {"up"}),
])
def test_include_exclude(include, exclude, expected):
    model = staged_model()
    report = cnnkern.convert(model, include=include, exclude=exclude)
    assert {r.name for r in report.replaced} == expected
    excluded = {s.name for s in report.skipped_for(SkipReason.EXCLUDED)}
    assert excluded == {r.name for r in cnnkern.convert(staged_model()).replaced} - expected
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            assert isinstance(m, (cnn.Conv2d, cnn.ConvTranspose2d)) == (name in expected), name
    # The inverse obeys the same filters.
    back = cnnkern.convert(model, inverse=True, include=include, exclude=exclude)
    assert {r.name for r in back.replaced} == expected


@pytest.mark.parametrize("bad", [3, [nn.Conv2d, 1.5], {"a": 1}.values()])
def test_bad_arguments(bad):
    model = staged_model()
    with pytest.raises(TypeError, match="include"):
        cnnkern.convert(model, include=bad)
    with pytest.raises(TypeError, match="nn.Module"):
        cnnkern.convert(torch.randn(3))


# ---------------------------------------------------------------------------------------------- training
class SmallNet(nn.Module):
    """Every converted family (direct, depthwise, pointwise, transposed, shuffle) in one trainable net."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.pw = nn.Conv2d(8, 12, 1, groups=2)
        self.shuffle = nn.ChannelShuffle(2)
        self.up = nn.ConvTranspose2d(12, 6, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        x = self.shuffle(self.pw(self.dw(self.stem(x))))
        return self.head(self.up(x).mean((2, 3)))


def test_training_step_matches_the_original():
    model = SmallNet()
    original = copy.deepcopy(model)
    report = cnnkern.convert(model)
    assert report.family_counts() == {"direct": 1, "depthwise": 1, "pointwise": 1, "transposed": 1,
                                      "channel_shuffle": 1}
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (model, original)]
    x = torch.randn(4, 3, 11, 9).to(memory_format=torch.channels_last)
    target = torch.randint(0, 5, (4,))
    for _ in range(2):
        losses = []
        for m, opt in zip((model, original), opts):
            opt.zero_grad()
            with cnnkern.use_backend("reference"):
                loss = nn.functional.cross_entropy(m(x), target)
            loss.backward()
            losses.append(loss)
        torch.testing.assert_close(losses[0], losses[1], **FP32)
        for (name, p), q in zip(model.named_parameters(), original.parameters()):
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            torch.testing.assert_close(p.grad, q.grad, **FP32, msg=lambda m, n=name: f"{n}: {m}")
        for opt in opts:
            opt.step()
    for p, q in zip(model.parameters(), original.parameters()):
        torch.testing.assert_close(p, q, **FP32)
    # BN running statistics were updated in the converted model's very own buffers.
    assert not torch.equal(model.stem[1].running_mean, torch.zeros(8))


def test_report_api():
    model = mixed_model()
    report = cnnkern.convert(model)
    text = report.format(verbose=True)
    assert "replaced conv: torch.nn.Conv2d -> cnnkern.nn.Conv2d [direct]" in text
    assert "skipped 9" in str(report) and "lazy 1" in str(report)
    assert all(s.reason in SkipReason for s in report.skipped)
    again = cnnkern.convert(model)
    # Already-converted modules are counted in the summary, listed only when verbose.
    assert "already converted 4" in str(again) and "conv (cnnkern.nn.Conv2d)" not in str(again)
    assert "conv (cnnkern.nn.Conv2d)" in again.format(verbose=True)
    back = cnnkern.convert(model, inverse=True)
    assert {r.name for r in back.replaced} == {"conv", "dw", "up", "shuffle"}
    assert {type(model.get_submodule(n)) for n in ("conv", "dw", "up", "shuffle")} == set(TWIN_OF)
