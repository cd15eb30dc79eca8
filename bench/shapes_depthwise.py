"""Depthwise convolution shape tables for bench_depthwise_conv2d.py.

Every depthwise layer (``groups == C_in == C_out``, channel multiplier 1) of five networks at 224x224 input,
de-duplicated within each network, with the number of times each problem occurs in one forward pass:

  mnv1      MobileNetV1 1.0-224 (Howard et al. 2017, Table 1): 13 3x3 depthwise convs, 9 distinct. The paper
            table prints ``Conv dw / s1`` once before ``5x`` (the 5x repeats the dw + pw pair) and gives the
            last dw (1024 channels @7) stride 2, a known typo: the feature map stays 7x7 into the 7x7 average
            pool, and the reference implementations use stride 1 there. Padding 1 (PyTorch convention; the
            TF original pads stride-2 layers asymmetrically, which gives the same output size).
  mnv2      MobileNetV2 1.0-224, as torchvision ``mobilenet_v2``: 17 (one per inverted-residual block,
            named after its index in ``features``), 10 distinct.
  shv2      ShuffleNetV2 x1.0, as torchvision ``shufflenet_v2_x1_0``: 19 (both branches of each stride-2
            unit have one), 7 distinct.
  convnext  ConvNeXt-T, as torchvision ``convnext_tiny``: 18 7x7 convs with padding 3, 4 distinct (one per stage).
  replk     RepLKNet-31B (Ding et al. 2022), re-parameterized for inference (the 5x5 branch merged into the
            large kernel): 24 large-kernel convs, kernel sizes 31, 29, 27, 13 for the four stages (channels
            128, 256, 512, 1024 at 56, 28, 14, 7), padding k // 2, 4 distinct. The 3x3 depthwise convs of
            its stem and transitions are not included.

A problem that occurs in two networks (e.g. MobileNetV1 ``dw1`` and MobileNetV2 ``block1``: 32 channels
@112) is listed in both: the summary reports each network separately.

Run ``python bench/shapes_depthwise.py`` to print the tables and check them against the architecture walks
below; when torchvision can be imported, the walks of MobileNetV2, ShuffleNetV2 and ConvNeXt-T are also
checked against torchvision's modules (the benchmark itself never needs torchvision).
"""

from __future__ import annotations

from dataclasses import dataclass

from shapes import ConvShape, check_dedup, describe_tags, torchvision_skipped


@dataclass(frozen=True)
class DepthwiseShape(ConvShape):
    """A depthwise problem: cin == cout == groups. ``group`` is the network (the name's first part)."""

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]

    def describe(self) -> str:
        mult = "" if self.cout == self.cin else f"x{self.cout // self.cin}"
        return (f"dw{self.cin}{mult} {self.k}x{self.k} @{self.hw}"
                + describe_tags(("/s", self.stride, 1), (" p", self.padding, self.dilation * (self.k // 2)),
                                (" d", self.dilation, 1)))


def _d(name, channels, hw, k, stride, count, aliases=()) -> DepthwiseShape:
    return DepthwiseShape(name, channels, channels, hw, k, stride, k // 2, 1, channels, count, tuple(aliases))


# name                                   C   hw   k  s  count  aliases (same problem)
MOBILENET_V1: tuple[DepthwiseShape, ...] = (
    _d("mnv1.dw1",                        32, 112,  3, 1, 1),
    _d("mnv1.dw2",                        64, 112,  3, 2, 1),
    _d("mnv1.dw3",                       128,  56,  3, 1, 1),
    _d("mnv1.dw4",                       128,  56,  3, 2, 1),
    _d("mnv1.dw5",                       256,  28,  3, 1, 1),
    _d("mnv1.dw6",                       256,  28,  3, 2, 1),
    _d("mnv1.dw7",                       512,  14,  3, 1, 5, ["mnv1.dw{8..11}"]),
    _d("mnv1.dw12",                      512,  14,  3, 2, 1),
    _d("mnv1.dw13",                     1024,   7,  3, 1, 1),
)  # fmt: skip

MOBILENET_V2: tuple[DepthwiseShape, ...] = (
    _d("mnv2.block1.dw",                  32, 112,  3, 1, 1),
    _d("mnv2.block2.dw",                  96, 112,  3, 2, 1),
    _d("mnv2.block3.dw",                 144,  56,  3, 1, 1),
    _d("mnv2.block4.dw",                 144,  56,  3, 2, 1),
    _d("mnv2.block5.dw",                 192,  28,  3, 1, 2, ["mnv2.block6.dw"]),
    _d("mnv2.block7.dw",                 192,  28,  3, 2, 1),
    _d("mnv2.block8.dw",                 384,  14,  3, 1, 4, ["mnv2.block{9,10,11}.dw"]),
    _d("mnv2.block12.dw",                576,  14,  3, 1, 2, ["mnv2.block13.dw"]),
    _d("mnv2.block14.dw",                576,  14,  3, 2, 1),
    _d("mnv2.block15.dw",                960,   7,  3, 1, 3, ["mnv2.block{16,17}.dw"]),
)  # fmt: skip

SHUFFLENET_V2: tuple[DepthwiseShape, ...] = (
    _d("shv2.stage2.0.branch1.dw",        24,  56,  3, 2, 1),
    _d("shv2.stage2.0.branch2.dw",        58,  56,  3, 2, 1),
    _d("shv2.stage2.1.branch2.dw",        58,  28,  3, 1, 3, ["shv2.stage2.{2,3}.branch2.dw"]),
    _d("shv2.stage3.0.branch1.dw",       116,  28,  3, 2, 2, ["shv2.stage3.0.branch2.dw"]),
    _d("shv2.stage3.1.branch2.dw",       116,  14,  3, 1, 7, ["shv2.stage3.{2..7}.branch2.dw"]),
    _d("shv2.stage4.0.branch1.dw",       232,  14,  3, 2, 2, ["shv2.stage4.0.branch2.dw"]),
    _d("shv2.stage4.1.branch2.dw",       232,   7,  3, 1, 3, ["shv2.stage4.{2,3}.branch2.dw"]),
)  # fmt: skip

CONVNEXT_T: tuple[DepthwiseShape, ...] = (
    _d("convnext.stage1.dw",              96,  56,  7, 1, 3),
    _d("convnext.stage2.dw",             192,  28,  7, 1, 3),
    _d("convnext.stage3.dw",             384,  14,  7, 1, 9),
    _d("convnext.stage4.dw",             768,   7,  7, 1, 3),
)  # fmt: skip

REPLKNET_31B: tuple[DepthwiseShape, ...] = (
    _d("replk.stage1.dw",                128,  56, 31, 1, 2),
    _d("replk.stage2.dw",                256,  28, 29, 1, 2),
    _d("replk.stage3.dw",                512,  14, 27, 1, 18),
    _d("replk.stage4.dw",               1024,   7, 13, 1, 2),
)  # fmt: skip

DEPTHWISE: tuple[DepthwiseShape, ...] = MOBILENET_V1 + MOBILENET_V2 + SHUFFLENET_V2 + CONVNEXT_T + REPLKNET_31B

# --------------------------------------------------------------------------------------------------
# Architecture walks: every depthwise conv in forward order, as (name, channels, hw_in, k, stride, padding).


def mobilenet_v1_walk() -> list[tuple]:
    """MobileNetV1 1.0-224: after the stride-2 stem (224 -> 112), 13 (dw 3x3, pw 1x1) pairs."""
    out_channels = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    strides = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)  # the last is 1 (see the module docstring)
    convs, c, hw = [], 32, 112
    for i, (cout, s) in enumerate(zip(out_channels, strides, strict=True)):
        convs.append((f"mnv1.dw{i + 1}", c, hw, 3, s, 1))
        c, hw = cout, hw // s
    return convs


def mobilenet_v2_walk() -> list[tuple]:
    """torchvision mobilenet_v2: inverted residual settings (t, c, n, s) after the stride-2 stem."""
    settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))
    convs, cin, hw, block = [], 32, 112, 1
    for t, c, n, s in settings:
        for i in range(n):
            stride = s if i == 0 else 1
            convs.append((f"mnv2.block{block}.dw", cin * t, hw, 3, stride, 1))  # on the expanded width
            cin, hw, block = c, hw // stride, block + 1
    return convs


def shufflenet_v2_walk() -> list[tuple]:
    """torchvision shufflenet_v2_x1_0: stride-2 stem conv and max-pool (224 -> 56), then stages of
    4, 8, 4 units. A stride-2 unit has a dw in both branches (branch1 on the unit's input width,
    branch2 on half the output width); a stride-1 unit only in branch2."""
    convs, cin, hw = [], 24, 56
    for stage, (repeats, cout) in enumerate(((4, 116), (8, 232), (4, 464)), start=2):
        half = cout // 2
        for i in range(repeats):
            p = f"shv2.stage{stage}.{i}"
            if i == 0:
                convs.append((f"{p}.branch1.dw", cin, hw, 3, 2, 1))
                convs.append((f"{p}.branch2.dw", half, hw, 3, 2, 1))
                hw //= 2
            else:
                convs.append((f"{p}.branch2.dw", half, hw, 3, 1, 1))
        cin = cout
    return convs


def convnext_tiny_walk() -> list[tuple]:
    """ConvNeXt-T: a stride-4 patchify stem (224 -> 56), stages of 3, 3, 9, 3 blocks; each block has one
    7x7 depthwise conv (padding 3); stride-2 downsampling between stages."""
    convs, hw = [], 56
    for stage, (depth, dim) in enumerate(((3, 96), (3, 192), (9, 384), (3, 768)), start=1):
        convs += [(f"convnext.stage{stage}.dw", dim, hw, 7, 1, 3)] * depth
        hw //= 2
    return convs


def replknet31b_walk() -> list[tuple]:
    """RepLKNet-31B: stem down to 56, stages of 2, 2, 18, 2 RepLK blocks with kernel sizes 31, 29, 27, 13
    (padding k // 2) on 128, 256, 512, 1024 channels; stride-2 transitions between stages."""
    convs, hw = [], 56
    for stage, (depth, k, c) in enumerate(((2, 31, 128), (2, 29, 256), (18, 27, 512), (2, 13, 1024)), start=1):
        convs += [(f"replk.stage{stage}.dw", c, hw, k, 1, k // 2)] * depth
        hw //= 2
    return convs


NETWORKS = {  # group -> (table, walk, depthwise convs in the network)
    "mnv1": (MOBILENET_V1, mobilenet_v1_walk, 13),
    "mnv2": (MOBILENET_V2, mobilenet_v2_walk, 17),
    "shv2": (SHUFFLENET_V2, shufflenet_v2_walk, 19),
    "convnext": (CONVNEXT_T, convnext_tiny_walk, 18),
    "replk": (REPLKNET_31B, replknet31b_walk, 24),
}


def check_depthwise_tables() -> None:
    """Assert that each table is exactly its de-duplicated architecture walk, with the right counts."""
    for group, (table, walk_fn, total) in NETWORKS.items():
        walk = walk_fn()
        assert len(walk) == total, (group, len(walk), total)
        check_dedup(table, walk, lambda s: (s.cin, s.hw, s.k, s.stride, s.padding), group)
        for s in table:
            assert s.cout == s.cin == s.groups and s.group == group, s
    names = [s.name for s in DEPTHWISE]
    assert len(set(names)) == len(names), "duplicate layer names"


def torchvision_walk(model, hw: int = 224) -> list[tuple]:
    """(module name, channels, hw_in, k, stride, padding) of every depthwise Conv2d of a torchvision model,
    in execution order (forward hooks on a 1x3xHWxHW input)."""
    import torch

    found: list[tuple] = []
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Conv2d) and mod.groups > 1 and mod.groups == mod.in_channels:
            assert mod.out_channels == mod.in_channels, (name, mod)  # multiplier 1 in these networks
            assert mod.kernel_size[0] == mod.kernel_size[1] and mod.stride[0] == mod.stride[1], (name, mod)

            def hook(m, inputs, _out, name=name):
                found.append((name, m.in_channels, inputs[0].shape[-1], m.kernel_size[0], m.stride[0],
                              m.padding[0]))

            hooks.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, hw, hw))
    for h in hooks:
        h.remove()
    return found


def check_against_torchvision() -> str:
    """Compare the MobileNetV2, ShuffleNetV2 and ConvNeXt-T walks with torchvision's modules (problem by
    problem, in execution order). Returns what was checked, or why nothing was."""
    try:
        from torchvision import models
    except Exception as e:  # noqa: BLE001 - torchvision is optional
        return torchvision_skipped(e)
    import torchvision

    pairs = (("mnv2", models.mobilenet_v2), ("shv2", models.shufflenet_v2_x1_0), ("convnext", models.convnext_tiny))
    for group, ctor in pairs:
        ours = [tuple(p) for _, *p in NETWORKS[group][1]()]
        theirs = [tuple(p) for _, *p in torchvision_walk(ctor(weights=None))]
        assert ours == theirs, f"{group}: walk differs from torchvision {ctor.__name__}:\n{ours}\n{theirs}"
    return f"the mnv2, shv2 and convnext walks match torchvision {torchvision.__version__}"


# --------------------------------------------------------------------------------------------------
# Dilated depthwise convs of DeepLab segmentation networks at the DeepLab crop size 513x513 (bench
# --layers dilated). Padding dilation * (k // 2) keeps the feature map size.
#
#   mnv2dl8, mnv2dl16  DeepLabv3 on MobileNetV2 (Sandler et al. 2018, sec. 6.3), output stride 8 and 16, with
#            the output-stride rule of the TF DeepLab/slim code: once the stride reaches the output stride, a
#            later layer's stride is dropped and the atrous rate multiplied by it; the layer whose stride was
#            dropped still uses the old rate. Channels and strides are mobilenet_v2_walk()'s.
#   mnv3dl   torchvision ``deeplabv3_mobilenet_v3_large`` (MobileNetV3-Large with ``dilated=True``: the last
#            stage's stride dropped, all three of its 5x5 depthwise convs at dilation 2), output stride 16.
#   dl3plus  DeepLabv3+ (Chen et al. 2018) atrous separable ASPP on the Xception-65 features (2048 channels,
#            output stride 16): one 3x3 depthwise conv per rate 6, 12, 18 before its 1x1 projection.
# ``check_dilated_depthwise_tables`` checks them against these walks; mnv3dl also against torchvision.

DILATED_HW = 513


def _dd(name, channels, hw, k, dilation, count, aliases=()) -> DepthwiseShape:
    return DepthwiseShape(name, channels, channels, hw, k, 1, dilation * (k // 2), dilation, channels, count,
                          tuple(aliases))


# name                                   C   hw   k  dilation  count  aliases
MNV2_DEEPLAB_OS8: tuple[DepthwiseShape, ...] = (
    _dd("mnv2dl8.block8.dw",             384,  65,  3, 2, 4, ["mnv2dl8.block{9,10,11}.dw"]),
    _dd("mnv2dl8.block12.dw",            576,  65,  3, 2, 3, ["mnv2dl8.block{13,14}.dw"]),
    _dd("mnv2dl8.block15.dw",            960,  65,  3, 4, 3, ["mnv2dl8.block{16,17}.dw"]),
)  # fmt: skip

MNV2_DEEPLAB_OS16: tuple[DepthwiseShape, ...] = (
    _dd("mnv2dl16.block15.dw",           960,  33,  3, 2, 3, ["mnv2dl16.block{16,17}.dw"]),
)  # fmt: skip

MNV3_DEEPLAB: tuple[DepthwiseShape, ...] = (
    _dd("mnv3dl.block13.dw",             672,  33,  5, 2, 1),
    _dd("mnv3dl.block14.dw",             960,  33,  5, 2, 2, ["mnv3dl.block15.dw"]),
)  # fmt: skip

DEEPLABV3PLUS_ASPP: tuple[DepthwiseShape, ...] = (
    _dd("dl3plus.aspp.1",               2048,  33,  3, 6, 1),
    _dd("dl3plus.aspp.2",               2048,  33,  3, 12, 1),
    _dd("dl3plus.aspp.3",               2048,  33,  3, 18, 1),
)  # fmt: skip

DILATED_DEPTHWISE: tuple[DepthwiseShape, ...] = MNV2_DEEPLAB_OS8 + MNV2_DEEPLAB_OS16 + MNV3_DEEPLAB + DEEPLABV3PLUS_ASPP


def _out(hw: int, k: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (hw + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def _dilated_walk(net: str, layers, output_stride: int, hw: int, keep_rate_on_dropped: bool) -> list[tuple]:
    """Apply an output-stride rule to (block, channels, k, stride) layers after a stride-2 stem; return the
    dilated ones as (name, channels, hw_in, k, stride, padding, dilation). keep_rate_on_dropped: the layer
    whose stride is dropped keeps the old rate (TF DeepLab) instead of taking the new one (torchvision)."""
    convs, current, rate, hw = [], 2, 1, _out(hw, 3, 2, 1)
    for block, c, k, stride in layers:
        if current >= output_stride:
            new_rate = rate * stride
            layer_rate = rate if keep_rate_on_dropped else new_rate
            layer_stride, rate = 1, new_rate
        else:
            layer_stride, layer_rate = stride, 1
            current *= stride
        if layer_rate > 1:
            convs.append((f"{net}.block{block}.dw", c, hw, k, layer_stride, layer_rate * (k // 2), layer_rate))
        hw = _out(hw, k, layer_stride, layer_rate * (k // 2), layer_rate)
    return convs


def mobilenet_v2_deeplab_walk(output_stride: int, hw: int = DILATED_HW) -> list[tuple]:
    layers = [(int(name.split("block")[1].split(".")[0]), c, k, s) for name, c, _, k, s, _ in mobilenet_v2_walk()]
    return _dilated_walk(f"mnv2dl{output_stride}", layers, output_stride, hw, keep_rate_on_dropped=True)


# MobileNetV3-Large inverted residual blocks (Howard et al. 2019, Table 1): (expanded channels, kernel, stride).
MNV3_LARGE_BLOCKS = ((16, 3, 1), (64, 3, 2), (72, 3, 1), (72, 5, 2), (120, 5, 1), (120, 5, 1), (240, 3, 2),
                     (200, 3, 1), (184, 3, 1), (184, 3, 1), (480, 3, 1), (672, 3, 1), (672, 5, 2), (960, 5, 1),
                     (960, 5, 1))


def mobilenet_v3_deeplab_walk(hw: int = DILATED_HW) -> list[tuple]:
    layers = [(i, c, k, s) for i, (c, k, s) in enumerate(MNV3_LARGE_BLOCKS, start=1)]
    return _dilated_walk("mnv3dl", layers, 16, hw, keep_rate_on_dropped=False)


def deeplabv3plus_aspp_walk(hw: int = DILATED_HW) -> list[tuple]:
    feat = _out(hw, 3, 2, 1)  # Xception-65: the stride-2 entry conv, then 3 stride-2 entry-flow blocks: OS16
    for _ in range(3):
        feat = _out(feat, 3, 2, 1)
    return [(f"dl3plus.aspp.{i}", 2048, feat, 3, 1, r, r) for i, r in enumerate((6, 12, 18), start=1)]


DILATED_NETWORKS = {  # group -> (table, walk, dilated depthwise convs in the network)
    "mnv2dl8": (MNV2_DEEPLAB_OS8, lambda: mobilenet_v2_deeplab_walk(8), 10),
    "mnv2dl16": (MNV2_DEEPLAB_OS16, lambda: mobilenet_v2_deeplab_walk(16), 3),
    "mnv3dl": (MNV3_DEEPLAB, mobilenet_v3_deeplab_walk, 3),
    "dl3plus": (DEEPLABV3PLUS_ASPP, deeplabv3plus_aspp_walk, 3),
}


def check_dilated_depthwise_tables() -> None:
    """Assert that each dilated table is exactly its de-duplicated walk, with the right counts."""
    for group, (table, walk_fn, total) in DILATED_NETWORKS.items():
        walk = walk_fn()
        assert len(walk) == total, (group, len(walk), total)
        check_dedup(table, walk, lambda s: (s.cin, s.hw, s.k, s.stride, s.padding, s.dilation), group)
        for s in table:
            assert s.cout == s.cin == s.groups and s.group == group and s.out_hw == s.hw, s
    names = [s.name for s in DILATED_DEPTHWISE]
    assert len(set(names)) == len(names), "duplicate layer names"


def check_dilated_against_torchvision() -> str:
    """Compare the mnv3dl walk with torchvision's deeplabv3_mobilenet_v3_large (meta device)."""
    try:
        import torch
        import torchvision
        from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large
    except Exception as e:  # noqa: BLE001 - torchvision is optional
        return torchvision_skipped(e)
    from shapes import hooked_convs

    with torch.device("meta"):
        model = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, aux_loss=False)
    theirs = hooked_convs(model, DILATED_HW, lambda m: m.groups == m.in_channels > 1 and m.dilation[0] > 1)
    ours = mobilenet_v3_deeplab_walk()
    assert [(c, h, k, s, p, d) for _, c, _, h, k, s, p, d, _ in theirs] == [tuple(c[1:]) for c in ours], (theirs, ours)
    assert [f"mnv3dl.block{t[0].split('.')[1]}.dw" for t in theirs] == [c[0] for c in ours], theirs
    return f"the mnv3dl walk matches torchvision {torchvision.__version__} deeplabv3_mobilenet_v3_large"


def print_dilated() -> None:
    check_dilated_depthwise_tables()
    tv = check_dilated_against_torchvision()
    print(f"\n{'name':28} {'C':>5} {'hw':>4} {'k':>2} {'d':>2} {'p':>2} {'out':>4} {'count':>5}  aliases")
    for s in DILATED_DEPTHWISE:
        print(f"{s.name:28} {s.cin:5} {s.hw:4} {s.k:2} {s.dilation:2} {s.padding:2} {s.out_hw:4} {s.count:5}  "
              + ", ".join(s.aliases))
    print(f"{len(DILATED_DEPTHWISE)} dilated problems at {DILATED_HW}x{DILATED_HW} (--layers dilated); the tables "
          f"match the walks; {tv}")


if __name__ == "__main__":
    check_depthwise_tables()
    tv = check_against_torchvision()
    print(f"{'name':28} {'C':>5} {'hw':>4} {'k':>2} {'s':>2} {'p':>2} {'out':>4} {'count':>5}  aliases")
    for s in DEPTHWISE:
        print(f"{s.name:28} {s.cin:5} {s.hw:4} {s.k:2} {s.stride:2} {s.padding:2} {s.out_hw:4} {s.count:5}  "
              + ", ".join(s.aliases))
    for group, (table, _, total) in NETWORKS.items():
        print(f"{group:9} {len(table):2} distinct problems, {total:2} depthwise convs")
    print(f"{len(DEPTHWISE)} problems; the tables match the architecture walks; {tv}")
    print_dilated()
