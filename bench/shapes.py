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
        s = f"{self.cin}->{self.cout} {self.k}x{self.k} @{self.hw}"
        if self.stride != 1:
            s += f"/s{self.stride}"
        if self.groups != 1:
            s += f" g{self.groups}"
        return s

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
    distinct: OrderedDict[tuple, list[str]] = OrderedDict()
    for name, *prob in walk:
        distinct.setdefault(tuple(prob), []).append(name)
    table = {(s.cin, s.cout, s.hw, s.k, s.stride, s.padding): s for s in RESNET50}
    assert len(table) == len(RESNET50) == len(distinct), (len(table), len(RESNET50), len(distinct))
    for prob, names in distinct.items():
        s = table.get(prob)
        assert s is not None, f"missing {names[0]} {prob}"
        assert s.name == names[0], (s.name, names[0])
        assert s.count == len(names), (s.name, s.count, len(names))
    assert sum(s.count for s in RESNET50) == 53


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


if __name__ == "__main__":
    check_resnet50_table()
    print(f"{'name':28} {'cin':>5} {'cout':>5} {'hw':>4} {'k':>2} {'s':>2} {'p':>2} {'out':>4} {'count':>5}")
    for s in RESNET50:
        print(f"{s.name:28} {s.cin:5} {s.cout:5} {s.hw:4} {s.k:2} {s.stride:2} {s.padding:2} "
              f"{s.out_hw:4} {s.count:5}")
    n_convs = sum(s.count for s in RESNET50)
    print(f"{len(RESNET50)} distinct problems, {n_convs} convs; the table matches the architecture walk")
