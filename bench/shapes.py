"""Convolution shape tables for the benchmarks.

ResNet-50 here is torchvision's ``resnet50`` (the "v1.5" variant): in each bottleneck the stride sits on
the 3x3 conv (``conv2``) and on the 1x1 projection shortcut (``downsample.0``), not on ``conv1``.
The network has 53 convolutions; they collapse to 23 distinct (Cin, Cout, H=W, kernel, stride, padding)
problems, listed in ``RESNET50`` below with the number of times each occurs in one forward pass.

Run ``python bench/shapes.py`` to print the table and check it against the architecture walk in
``resnet50_walk()``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field


def describe_tags(*tags: tuple[str, int, int]) -> str:
    """The (prefix, value, default) tags whose value is not the default, run together: "/s2 d2"."""
    return "".join(f"{prefix}{value}" for prefix, value, default in tags if value != default)


def torchvision_skipped(e: Exception) -> str:
    """Why a check against torchvision (optional) did not run."""
    return f"torchvision not importable ({type(e).__name__}: {e}); the torchvision check was skipped"


@dataclass(frozen=True)
class ConvShape:
    """One 2-d convolution problem (batch size excluded). Input is square: H = W = ``hw``."""

    name: str
    cin: int
    cout: int
    hw: int
    k: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    count: int = 1  # occurrences in one forward pass of the network
    aliases: tuple[str, ...] = field(default=())  # other layers with exactly this problem

    @property
    def out_hw(self) -> int:
        return (self.hw + 2 * self.padding - self.dilation * (self.k - 1) - 1) // self.stride + 1

    @property
    def group(self) -> str:
        """Coarse kernel-size class used for filtering and for the geomean summary."""
        return "stem" if self.k == 7 else f"{self.k}x{self.k}"

    def describe(self) -> str:
        return (f"{self.cin}->{self.cout} {self.k}x{self.k} @{self.hw}"
                + describe_tags(("/s", self.stride, 1), (" g", self.groups, 1), (" d", self.dilation, 1)))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["aliases"] = list(self.aliases)
        d["out_hw"] = self.out_hw
        d["group"] = self.group
        return d


def _s(name, cin, cout, hw, k, stride, padding, count, aliases=()):
    return ConvShape(name, cin, cout, hw, k, stride, padding, count=count, aliases=tuple(aliases))


# name                              cin   cout   hw  k  s  p  count  aliases (same problem)
RESNET50: tuple[ConvShape, ...] = (
    _s("r50.conv1",                   3,    64, 224, 7, 2, 3, 1),
    # layer1: 3 blocks, width 64, 56x56
    _s("r50.layer1.0.conv1",         64,    64,  56, 1, 1, 0, 1),
    _s("r50.layer1.0.conv2",         64,    64,  56, 3, 1, 1, 3, ["r50.layer1.{1,2}.conv2"]),
    _s("r50.layer1.0.conv3",         64,   256,  56, 1, 1, 0, 4,
       ["r50.layer1.0.downsample.0", "r50.layer1.{1,2}.conv3"]),
    _s("r50.layer1.1.conv1",        256,    64,  56, 1, 1, 0, 2, ["r50.layer1.2.conv1"]),
    # layer2: 4 blocks, width 128, 56 -> 28
    _s("r50.layer2.0.conv1",        256,   128,  56, 1, 1, 0, 1),
    _s("r50.layer2.0.conv2",        128,   128,  56, 3, 2, 1, 1),
    _s("r50.layer2.0.conv3",        128,   512,  28, 1, 1, 0, 4, ["r50.layer2.{1,2,3}.conv3"]),
    _s("r50.layer2.0.downsample.0", 256,   512,  56, 1, 2, 0, 1),
    _s("r50.layer2.1.conv1",        512,   128,  28, 1, 1, 0, 3, ["r50.layer2.{2,3}.conv1"]),
    _s("r50.layer2.1.conv2",        128,   128,  28, 3, 1, 1, 3, ["r50.layer2.{2,3}.conv2"]),
    # layer3: 6 blocks, width 256, 28 -> 14
    _s("r50.layer3.0.conv1",        512,   256,  28, 1, 1, 0, 1),
    _s("r50.layer3.0.conv2",        256,   256,  28, 3, 2, 1, 1),
    _s("r50.layer3.0.conv3",        256,  1024,  14, 1, 1, 0, 6, ["r50.layer3.{1..5}.conv3"]),
    _s("r50.layer3.0.downsample.0", 512,  1024,  28, 1, 2, 0, 1),
    _s("r50.layer3.1.conv1",       1024,   256,  14, 1, 1, 0, 5, ["r50.layer3.{2..5}.conv1"]),
    _s("r50.layer3.1.conv2",        256,   256,  14, 3, 1, 1, 5, ["r50.layer3.{2..5}.conv2"]),
    # layer4: 3 blocks, width 512, 14 -> 7
    _s("r50.layer4.0.conv1",       1024,   512,  14, 1, 1, 0, 1),
    _s("r50.layer4.0.conv2",        512,   512,  14, 3, 2, 1, 1),
    _s("r50.layer4.0.conv3",        512,  2048,   7, 1, 1, 0, 3, ["r50.layer4.{1,2}.conv3"]),
    _s("r50.layer4.0.downsample.0",1024,  2048,  14, 1, 2, 0, 1),
    _s("r50.layer4.1.conv1",       2048,   512,   7, 1, 1, 0, 2, ["r50.layer4.2.conv1"]),
    _s("r50.layer4.1.conv2",        512,   512,   7, 3, 1, 1, 2, ["r50.layer4.2.conv2"]),
)  # fmt: skip


def resnet50_walk() -> list[tuple[str, int, int, int, int, int, int]]:
    """Every conv of torchvision resnet50 in forward order: (name, cin, cout, hw_in, k, stride, padding)."""
    convs = [("r50.conv1", 3, 64, 224, 7, 2, 3)]
    hw = 56  # after the stride-2 stem conv (224 -> 112) and the stride-2 max-pool (112 -> 56)
    cin = 64
    for li, (blocks, width, first_stride) in enumerate(((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))):
        cout = width * 4  # bottleneck expansion
        for b in range(blocks):
            s = first_stride if b == 0 else 1
            p = f"r50.layer{li + 1}.{b}"
            convs.append((f"{p}.conv1", cin, width, hw, 1, 1, 0))
            convs.append((f"{p}.conv2", width, width, hw, 3, s, 1))  # v1.5: stride on the 3x3
            convs.append((f"{p}.conv3", width, cout, hw // s, 1, 1, 0))
            if b == 0:  # projection shortcut: channel change (and stride, except in layer1)
                convs.append((f"{p}.downsample.0", cin, cout, hw, 1, s, 0))
            cin, hw = cout, hw // s
    return convs


def check_resnet50_table() -> None:
    """Assert that RESNET50 is exactly the de-duplicated architecture walk, with the right counts."""
    walk = resnet50_walk()
    assert len(walk) == 53, len(walk)
    check_dedup(RESNET50, walk, lambda s: (s.cin, s.cout, s.hw, s.k, s.stride, s.padding), "resnet50")


# --------------------------------------------------------------------------------------------------
# Dilated 3x3 convs of DeepLabv3 (Chen et al. 2017) on a ResNet-50 backbone, at the paper's 513x513 crop,
# as torchvision builds it: ``replace_stride_with_dilation`` turns a stage's stride 2 into dilation 2 (and
# doubles the dilation of the stages after it); the first block of a dilated stage keeps the previous
# dilation, the others use the new one. Output stride 8 (torchvision ``deeplabv3_resnet50``: layer3 and
# layer4 dilated, ASPP rates 12/24/36) and 16 (the paper's training setting: layer4 dilated, rates 6/12/18;
# torchvision resnet50(replace_stride_with_dilation=[False, False, True]) + DeepLabHead(2048, ., (6, 12,
# 18))). The undilated convs of the network are the ResNet-50 table's problems at other sizes and are not
# repeated here. ``python bench/shapes.py`` checks these tables against ``deeplabv3_walk`` and, when
# torchvision can be imported, against torchvision's modules (forward hooks on the meta device).

DEEPLAB_HW = 513


@dataclass(frozen=True)
class DilatedShape(ConvShape):
    """A dilated conv of a segmentation network; ``group`` is the network (the name's first part)."""

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]


def _dl(name, cin, cout, hw, dilation, count, aliases=()) -> DilatedShape:
    return DilatedShape(name, cin, cout, hw, 3, 1, dilation, dilation, 1, count, tuple(aliases))


# name                              cin   cout   hw  dilation (= padding)  count  aliases
DEEPLABV3_OS8: tuple[DilatedShape, ...] = (
    _dl("dl3os8.layer3.1.conv2",      256,   256,  65,  2, 5, ["dl3os8.layer3.{2..5}.conv2"]),
    _dl("dl3os8.layer4.0.conv2",      512,   512,  65,  2, 1),
    _dl("dl3os8.layer4.1.conv2",      512,   512,  65,  4, 2, ["dl3os8.layer4.2.conv2"]),
    _dl("dl3os8.aspp.1",             2048,   256,  65, 12, 1),
    _dl("dl3os8.aspp.2",             2048,   256,  65, 24, 1),
    _dl("dl3os8.aspp.3",             2048,   256,  65, 36, 1),
)  # fmt: skip

DEEPLABV3_OS16: tuple[DilatedShape, ...] = (
    _dl("dl3os16.layer4.1.conv2",     512,   512,  33,  2, 2, ["dl3os16.layer4.2.conv2"]),
    _dl("dl3os16.aspp.1",            2048,   256,  33,  6, 1),
    _dl("dl3os16.aspp.2",            2048,   256,  33, 12, 1),
    _dl("dl3os16.aspp.3",            2048,   256,  33, 18, 1),
)  # fmt: skip

DILATED: tuple[DilatedShape, ...] = DEEPLABV3_OS8 + DEEPLABV3_OS16
DEEPLAB_ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18)}


def _out(hw: int, k: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (hw + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def deeplabv3_walk(output_stride: int, hw: int = DEEPLAB_HW) -> list[tuple]:
    """Every dilated conv of DeepLabv3-ResNet-50 in forward order: (name, cin, cout, hw_in, k, stride,
    padding, dilation)."""
    dilate = {8: (True, True), 16: (False, True)}[output_stride]  # layer3, layer4
    net = f"dl3os{output_stride}"
    hw = _out(_out(hw, 7, 2, 3), 3, 2, 1)  # stem conv, max-pool
    convs, dilation = [], 1
    for li, (blocks, width, stride) in enumerate(((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))):
        previous = dilation
        if li >= 2 and dilate[li - 2]:
            dilation, stride = dilation * stride, 1
        for b in range(blocks):
            s, d = (stride, previous) if b == 0 else (1, dilation)
            if d > 1:
                convs.append((f"{net}.layer{li + 1}.{b}.conv2", width, width, hw, 3, s, d, d))
            hw = _out(hw, 3, s, d, d)
    for i, rate in enumerate(DEEPLAB_ASPP_RATES[output_stride], start=1):
        convs.append((f"{net}.aspp.{i}", 2048, 256, hw, 3, 1, rate, rate))
    return convs


def check_dedup(table, walk: list[tuple], key, label: str = "") -> None:
    """table == the de-duplicated walk (first name of each problem, occurrence counts). ``walk`` rows are
    (name, *problem); ``key(shape)`` gives a table row's problem in the same order."""
    distinct: OrderedDict[tuple, list[str]] = OrderedDict()
    for name, *prob in walk:
        distinct.setdefault(tuple(prob), []).append(name)
    by_prob = {key(s): s for s in table}
    assert len(by_prob) == len(table) == len(distinct), (label, len(by_prob), len(table), len(distinct))
    for prob, names in distinct.items():
        s = by_prob.get(prob)
        assert s is not None, f"{label}: missing {names[0]} {prob}"
        assert s.name == names[0], (label, s.name, names[0])
        assert s.count == len(names), (label, s.name, s.count, len(names))
    assert sum(s.count for s in table) == len(walk), label


def check_dilated_tables() -> None:
    for os_, table in ((8, DEEPLABV3_OS8), (16, DEEPLABV3_OS16)):
        check_dedup(table, deeplabv3_walk(os_),
                    lambda s: (s.cin, s.cout, s.hw, s.k, s.stride, s.padding, s.dilation), f"deeplabv3 os{os_}")
        assert all(s.out_hw == s.hw for s in table)  # dilation keeps the feature map size
    names = [s.name for s in DILATED]
    assert len(set(names)) == len(names), "duplicate layer names"


def hooked_convs(model, hw: int, keep) -> list[tuple]:
    """(module name, cin, cout, hw_in, k, stride, padding, dilation, groups) of every square Conv2d of
    ``model`` that ``keep(module)`` accepts, in execution order: forward hooks, one 1x3xHWxHW input on the
    meta device (shapes only, no arithmetic)."""
    import torch

    found: list[tuple] = []
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Conv2d) and keep(mod):
            assert mod.kernel_size[0] == mod.kernel_size[1] and mod.dilation[0] == mod.dilation[1], (name, mod)

            def hook(m, inputs, _out, name=name):
                found.append((name, m.in_channels, m.out_channels, inputs[0].shape[-1], m.kernel_size[0],
                              m.stride[0], m.padding[0], m.dilation[0], m.groups))

            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, hw, hw, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return found


def check_dilated_against_torchvision() -> str:
    """Compare the DeepLabv3 walks with torchvision's modules. Returns what was checked, or why not."""
    try:
        import torch
        import torchvision
        from torchvision.models import resnet50
        from torchvision.models._utils import IntermediateLayerGetter
        from torchvision.models.segmentation import deeplabv3_resnet50
        from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
    except Exception as e:  # noqa: BLE001 - torchvision is optional
        return torchvision_skipped(e)
    with torch.device("meta"):
        os8 = deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False)
        backbone = resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
        os16 = DeepLabV3(IntermediateLayerGetter(backbone, {"layer4": "out"}),
                         DeepLabHead(2048, 21, DEEPLAB_ASPP_RATES[16]))
    for os_, model in ((8, os8), (16, os16)):
        theirs = hooked_convs(model, DEEPLAB_HW, lambda m: m.dilation[0] > 1)
        ours = deeplabv3_walk(os_)
        assert all(t[-1] == 1 for t in theirs), theirs
        rename = {"backbone.": "", "classifier.0.convs.": "aspp."}
        names = []
        for t in theirs:
            name = t[0]
            for a, b in rename.items():
                name = name.replace(a, b)
            names.append(f"dl3os{os_}.{name.removesuffix('.0') if name.startswith('aspp') else name}")
        assert [tuple(t[1:-1]) for t in theirs] == [tuple(c[1:]) for c in ours], (os_, theirs, ours)
        assert names == [c[0] for c in ours], (names, [c[0] for c in ours])
    return f"the DeepLabv3 OS8/OS16 walks match torchvision {torchvision.__version__}"


def select(shapes, patterns: list[str] | None) -> list[ConvShape]:
    """Filter by kernel class ("3x3", "1x1", "7x7"/"stem"), substring of the name, or regex on the name."""
    import re

    if not patterns:
        return list(shapes)
    out = []
    for s in shapes:
        for pat in patterns:
            if pat in (s.group, f"{s.k}x{s.k}") or pat in s.name:
                out.append(s)
                break
            try:
                if re.search(pat, s.name):
                    out.append(s)
                    break
            except re.error:
                pass
    return out


def print_dilated() -> None:
    check_dilated_tables()
    tv = check_dilated_against_torchvision()
    print(f"\n{'name':28} {'cin':>5} {'cout':>5} {'hw':>4} {'k':>2} {'d':>2} {'p':>2} {'out':>4} {'count':>5}")
    for s in DILATED:
        print(f"{s.name:28} {s.cin:5} {s.cout:5} {s.hw:4} {s.k:2} {s.dilation:2} {s.padding:2} {s.out_hw:4} "
              f"{s.count:5}")
    print(f"{len(DILATED)} distinct dilated problems, {sum(s.count for s in DILATED)} convs (DeepLabv3-ResNet-50 "
          f"OS8 + OS16 at {DEEPLAB_HW}x{DEEPLAB_HW}); the tables match the walks; {tv}")


if __name__ == "__main__":
    check_resnet50_table()
    print(f"{'name':28} {'cin':>5} {'cout':>5} {'hw':>4} {'k':>2} {'s':>2} {'p':>2} {'out':>4} {'count':>5}")
    for s in RESNET50:
        print(f"{s.name:28} {s.cin:5} {s.cout:5} {s.hw:4} {s.k:2} {s.stride:2} {s.padding:2} "
              f"{s.out_hw:4} {s.count:5}")
    n_convs = sum(s.count for s in RESNET50)
    print(f"{len(RESNET50)} distinct problems, {n_convs} convs; the table matches the architecture walk")
    print_dilated()
