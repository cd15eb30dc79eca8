"""Grouped 1x1 (pointwise) convolution shape tables for bench_group_pointwise_conv2d.py.

Every 1x1 convolution of three networks at 224x224 input, de-duplicated within each network (same
problem and same shuffle after it), with the number of times each occurs in one forward pass:

  shv1g3   ShuffleNetV1 1.0x, g = 3 (Zhang et al. 2017, Table 1; the seed notes' table): stem conv
           (3x3, s2) and max-pool give 24 channels @56, then stages of 4, 8, 4 units with 240, 480, 960
           output channels. Each unit is GConv1 (1x1, groups g, C_in -> C_out/4), channel shuffle (g groups),
           3x3 depthwise (stride 2 in a stage's first unit), GConv2 (1x1, groups g, -> C_out, or -> C_out -
           C_in in a stride-2 unit, whose result is concatenated with the 3x3 average-pooled input). The
           first GConv1 of stage 2 has groups 1 (its input has only 24 channels); the shuffle after it still
           uses g groups. 32 grouped 1x1 convs (16 followed by a shuffle), as in the reference implementation
           (megvii-model ShuffleNet-Series) except that the shuffle is placed right after GConv1 as in the
           paper's Fig. 2 (the reference code shuffles after the depthwise conv: the same permutation cost).
  shv1g8   the same with g = 8: 384, 768, 1536 channels.
  shv2     ShuffleNetV2 x1.0, as torchvision ``shufflenet_v2_x1_0``: the 1x1 convs of every unit (branch2.0,
           branch2.5, and branch1.2 in the stride-2 units) and conv5 (464 -> 1024 @7); all have groups 1.
           branch2.5 and branch1.2 end a unit: their output is concatenated with the other half and shuffled
           with 2 groups (``shuffle = "cat"``, benchmarked as ``cnnkern.shuffle_cat_pointwise`` with a
           passthrough of C_out channels; for branch1.2 the conv's half is really the first one, which costs
           the same). 36 1x1 convs (16 followed by concat + shuffle).

``shuffle_groups`` says whether and how the real network shuffles right after the conv (None: no shuffle).

Run ``python bench/shapes_group_pointwise.py`` to print the tables and check them against the architecture
walks below; when torchvision can be imported (also from /tmp/tvlib), the ShuffleNetV2 walk is checked
against torchvision's modules (the benchmark itself never needs torchvision).
"""

from __future__ import annotations

from dataclasses import dataclass

from shapes import ConvShape, check_dedup, torchvision_skipped


@dataclass(frozen=True)
class GroupPointwiseShape(ConvShape):
    """A 1x1 conv (stride 1, no padding) with the shuffle that follows it in the network.
    ``group`` is the network (the name's first part)."""

    shuffle_groups: int | None = None  # channel shuffle right after the conv (None: none)
    cat: bool = False  # ShuffleNetV2 unit tail: shuffle(cat([passthrough (cout channels), conv]), 2)

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def shuffle_kind(self) -> str:
        return "cat" if self.cat else "none" if self.shuffle_groups is None else "shuffle"

    def describe(self) -> str:
        s = f"{self.cin}->{self.cout} @{self.hw}"
        if self.groups != 1:
            s += f" g{self.groups}"
        if self.cat:
            s += f" +cat.sh{self.shuffle_groups}"
        elif self.shuffle_groups:
            s += f" +sh{self.shuffle_groups}"
        return s


def _p(name, cin, cout, hw, groups, shuffle, count, aliases=(), cat=False) -> GroupPointwiseShape:
    return GroupPointwiseShape(name, cin, cout, hw, 1, 1, 0, 1, groups, count, tuple(aliases), shuffle, cat)


# name                                  cin  cout  hw  groups shuffle count aliases (same problem)
SHUFFLENET_V1_G3: tuple[GroupPointwiseShape, ...] = (
    _p("shv1g3.stage2.0.gconv1",          24,   60, 56, 1, 3, 1),
    _p("shv1g3.stage2.0.gconv2",          60,  216, 28, 3, None, 1),
    _p("shv1g3.stage2.1.gconv1",         240,   60, 28, 3, 3, 3, ["shv1g3.stage2.{2,3}.gconv1"]),
    _p("shv1g3.stage2.1.gconv2",          60,  240, 28, 3, None, 3, ["shv1g3.stage2.{2,3}.gconv2"]),
    _p("shv1g3.stage3.0.gconv1",         240,  120, 28, 3, 3, 1),
    _p("shv1g3.stage3.0.gconv2",         120,  240, 14, 3, None, 1),
    _p("shv1g3.stage3.1.gconv1",         480,  120, 14, 3, 3, 7, ["shv1g3.stage3.{2..7}.gconv1"]),
    _p("shv1g3.stage3.1.gconv2",         120,  480, 14, 3, None, 7, ["shv1g3.stage3.{2..7}.gconv2"]),
    _p("shv1g3.stage4.0.gconv1",         480,  240, 14, 3, 3, 1),
    _p("shv1g3.stage4.0.gconv2",         240,  480,  7, 3, None, 1),
    _p("shv1g3.stage4.1.gconv1",         960,  240,  7, 3, 3, 3, ["shv1g3.stage4.{2,3}.gconv1"]),
    _p("shv1g3.stage4.1.gconv2",         240,  960,  7, 3, None, 3, ["shv1g3.stage4.{2,3}.gconv2"]),
)  # fmt: skip

SHUFFLENET_V1_G8: tuple[GroupPointwiseShape, ...] = (
    _p("shv1g8.stage2.0.gconv1",          24,   96, 56, 1, 8, 1),
    _p("shv1g8.stage2.0.gconv2",          96,  360, 28, 8, None, 1),
    _p("shv1g8.stage2.1.gconv1",         384,   96, 28, 8, 8, 3, ["shv1g8.stage2.{2,3}.gconv1"]),
    _p("shv1g8.stage2.1.gconv2",          96,  384, 28, 8, None, 3, ["shv1g8.stage2.{2,3}.gconv2"]),
    _p("shv1g8.stage3.0.gconv1",         384,  192, 28, 8, 8, 1),
    _p("shv1g8.stage3.0.gconv2",         192,  384, 14, 8, None, 1),
    _p("shv1g8.stage3.1.gconv1",         768,  192, 14, 8, 8, 7, ["shv1g8.stage3.{2..7}.gconv1"]),
    _p("shv1g8.stage3.1.gconv2",         192,  768, 14, 8, None, 7, ["shv1g8.stage3.{2..7}.gconv2"]),
    _p("shv1g8.stage4.0.gconv1",         768,  384, 14, 8, 8, 1),
    _p("shv1g8.stage4.0.gconv2",         384,  768,  7, 8, None, 1),
    _p("shv1g8.stage4.1.gconv1",        1536,  384,  7, 8, 8, 3, ["shv1g8.stage4.{2,3}.gconv1"]),
    _p("shv1g8.stage4.1.gconv2",         384, 1536,  7, 8, None, 3, ["shv1g8.stage4.{2,3}.gconv2"]),
)  # fmt: skip

SHUFFLENET_V2: tuple[GroupPointwiseShape, ...] = (
    _p("shv2.stage2.0.branch1.2",         24,   58, 28, 1, 2, 1, cat=True),
    _p("shv2.stage2.0.branch2.0",         24,   58, 56, 1, None, 1),
    _p("shv2.stage2.0.branch2.5",         58,   58, 28, 1, 2, 4, ["shv2.stage2.{1,2,3}.branch2.5"], cat=True),
    _p("shv2.stage2.1.branch2.0",         58,   58, 28, 1, None, 3, ["shv2.stage2.{2,3}.branch2.0"]),
    _p("shv2.stage3.0.branch1.2",        116,  116, 14, 1, 2, 9,
       ["shv2.stage3.{0..7}.branch2.5"], cat=True),
    _p("shv2.stage3.0.branch2.0",        116,  116, 28, 1, None, 1),
    _p("shv2.stage3.1.branch2.0",        116,  116, 14, 1, None, 7, ["shv2.stage3.{2..7}.branch2.0"]),
    _p("shv2.stage4.0.branch1.2",        232,  232,  7, 1, 2, 5, ["shv2.stage4.{0..3}.branch2.5"], cat=True),
    _p("shv2.stage4.0.branch2.0",        232,  232, 14, 1, None, 1),
    _p("shv2.stage4.1.branch2.0",        232,  232,  7, 1, None, 3, ["shv2.stage4.{2,3}.branch2.0"]),
    _p("shv2.conv5.0",                   464, 1024,  7, 1, None, 1),
)  # fmt: skip

GROUP_POINTWISE: tuple[GroupPointwiseShape, ...] = SHUFFLENET_V1_G3 + SHUFFLENET_V1_G8 + SHUFFLENET_V2

# --------------------------------------------------------------------------------------------------
# Architecture walks: every 1x1 conv in forward order, as (name, cin, cout, hw_in, groups, shuffle, cat).


def shufflenet_v1_walk(g: int) -> list[tuple]:
    """ShuffleNetV1 1.0x with g groups: 24 channels @56 after the stem, stages of 4, 8, 4 units."""
    widths = {3: (240, 480, 960), 8: (384, 768, 1536)}[g]
    convs, cin, hw = [], 24, 56
    for stage, (repeats, cout) in enumerate(zip((4, 8, 4), widths, strict=True), start=2):
        mid = cout // 4
        for i in range(repeats):
            p = f"shv1g{g}.stage{stage}.{i}"
            first = stage == 2 and i == 0
            convs.append((f"{p}.gconv1", cin, mid, hw, 1 if first else g, g, False))
            if i == 0:  # stride-2 unit: the depthwise conv halves the map; the branch adds cout - cin channels
                hw //= 2
                convs.append((f"{p}.gconv2", mid, cout - cin, hw, g, None, False))
            else:
                convs.append((f"{p}.gconv2", mid, cout, hw, g, None, False))
            cin = cout
    return convs


def shufflenet_v2_walk() -> list[tuple]:
    """torchvision shufflenet_v2_x1_0: 24 channels @56, stages of 4, 8, 4 units (116, 232, 464), conv5.
    Order within a stride-2 unit follows torchvision's forward: branch1 (dw, 1x1) before branch2."""
    convs, cin, hw = [], 24, 56
    for stage, (repeats, cout) in enumerate(((4, 116), (8, 232), (4, 464)), start=2):
        half = cout // 2
        for i in range(repeats):
            p = f"shv2.stage{stage}.{i}"
            if i == 0:
                convs.append((f"{p}.branch1.2", cin, half, hw // 2, 1, 2, True))
                convs.append((f"{p}.branch2.0", cin, half, hw, 1, None, False))
                hw //= 2
            else:
                convs.append((f"{p}.branch2.0", half, half, hw, 1, None, False))
            convs.append((f"{p}.branch2.5", half, half, hw, 1, 2, True))
        cin = cout
    convs.append(("shv2.conv5.0", cin, 1024, hw, 1, None, False))
    return convs


NETWORKS = {  # group -> (table, walk, 1x1 convs in the network)
    "shv1g3": (SHUFFLENET_V1_G3, lambda: shufflenet_v1_walk(3), 32),
    "shv1g8": (SHUFFLENET_V1_G8, lambda: shufflenet_v1_walk(8), 32),
    "shv2": (SHUFFLENET_V2, shufflenet_v2_walk, 36),
}


def check_group_pointwise_tables() -> None:
    """Assert that each table is exactly its de-duplicated architecture walk, with the right counts."""
    for group, (table, walk_fn, total) in NETWORKS.items():
        walk = walk_fn()
        assert len(walk) == total, (group, len(walk), total)
        check_dedup(table, walk, lambda s: (s.cin, s.cout, s.hw, s.groups, s.shuffle_groups, s.cat), group)
        for s in table:
            assert s.k == 1 and s.stride == 1 and s.padding == 0 and s.group == group, s
            assert s.cin % s.groups == 0 and s.cout % s.groups == 0, s
            assert s.shuffle_groups is None or s.cout % s.shuffle_groups == 0, s
    names = [s.name for s in GROUP_POINTWISE]
    assert len(set(names)) == len(names), "duplicate layer names"


def check_against_torchvision() -> str:
    """Compare the ShuffleNetV2 walk's problems with torchvision's 1x1 convs (forward hooks, execution
    order). Returns what was checked, or why nothing was."""
    import sys

    try:
        from torchvision import models
    except Exception:  # noqa: BLE001 - torchvision is optional; try the side install
        if "/tmp/tvlib" not in sys.path:
            sys.path.append("/tmp/tvlib")
        try:
            from torchvision import models
        except Exception as e:  # noqa: BLE001
            return torchvision_skipped(e)
    import torch
    import torchvision

    model = models.shufflenet_v2_x1_0(weights=None).eval()
    found, hooks = [], []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (1, 1):
            assert mod.stride == (1, 1) and mod.padding == (0, 0), (name, mod)

            def hook(m, inputs, _out, name=name):
                found.append((name, m.in_channels, m.out_channels, inputs[0].shape[-1], m.groups))

            hooks.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    ours = [(name, cin, cout, hw, g) for name, cin, cout, hw, g, _, _ in shufflenet_v2_walk()]
    theirs = [("shv2." + name, cin, cout, hw, g) for name, cin, cout, hw, g in found]
    assert ours == theirs, f"shv2: walk differs from torchvision shufflenet_v2_x1_0:\n{ours}\n{theirs}"
    return f"the shv2 walk matches torchvision {torchvision.__version__}"


if __name__ == "__main__":
    check_group_pointwise_tables()
    tv = check_against_torchvision()
    print(f"{'name':28} {'cin':>5} {'cout':>5} {'hw':>4} {'g':>2} {'shuffle':>8} {'count':>5}  aliases")
    for s in GROUP_POINTWISE:
        sh = "-" if s.shuffle_groups is None else f"{'cat+' if s.cat else ''}{s.shuffle_groups}"
        print(f"{s.name:28} {s.cin:5} {s.cout:5} {s.hw:4} {s.groups:2} {sh:>8} {s.count:5}  " + ", ".join(s.aliases))
    for group, (table, _, total) in NETWORKS.items():
        print(f"{group:7} {len(table):2} distinct problems, {total:2} 1x1 convs")
    print(f"{len(GROUP_POINTWISE)} problems; the tables match the architecture walks; {tv}")
