"""conv -> BatchNorm (-> activation) shape tables for bench_conv_bn_relu.py.

Every conv of two networks at 224x224 is followed by a BatchNorm, and most by an activation; each
(conv problem, activation) is one fused ``cnnkern.conv_bn_relu`` problem. De-duplicated per network, with
the number of times each occurs in one forward pass:

  r50    ResNet-50 v1.5 as torchvision ``resnet50`` (the conv problems of ``shapes.RESNET50``): the stem and
         each bottleneck's conv1 (1x1) and conv2 (3x3, the stride) are followed by ReLU; conv3 and the
         downsample projection by BatchNorm alone (the ReLU comes after the residual add). 53 chains, 23
         distinct problems.
  mnv2   MobileNetV2 1.0 as torchvision ``mobilenet_v2``: the stem (3x3 s2), each inverted residual's 1x1
         expansion and 3x3 depthwise conv followed by ReLU6, its 1x1 projection by BatchNorm alone, and the
         last 1x1 conv (320 -> 1280) by ReLU6. 52 chains, 30 distinct problems.

Names are torchvision's module names of the first conv with the problem. Run ``python
bench/shapes_conv_bn.py`` to print the tables and check them against the architecture walks below; when
torchvision can be imported, the walks are checked against torchvision's modules (shapes by forward hooks
on the meta device, the activation after each BatchNorm from a ``torch.fx`` trace).
"""

from __future__ import annotations

from dataclasses import dataclass

from shapes import ConvShape, check_dedup, describe_tags, hooked_convs, resnet50_walk, torchvision_skipped


@dataclass(frozen=True)
class ConvBNShape(ConvShape):
    """A conv followed by BatchNorm2d and ``activation`` ("relu", "relu6" or None) in the network.
    ``group`` is the network (the name's first part)."""

    activation: str | None = None

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]

    def describe(self) -> str:
        return (f"{self.cin}->{self.cout} {self.k}x{self.k} @{self.hw}"
                + describe_tags(("/s", self.stride, 1))
                + (" dw" if self.groups == self.cin > 1 else f" g{self.groups}" if self.groups > 1 else "")
                + f" +bn{'+' + self.activation if self.activation else ''}")

    def as_dict(self) -> dict:
        return dict(super().as_dict(), activation=self.activation)


def _c(name, cin, cout, hw, k, stride, padding, groups, activation, count, aliases=()) -> ConvBNShape:
    return ConvBNShape(name, cin, cout, hw, k, stride, padding, 1, groups, count, tuple(aliases), activation)


# name                              cin   cout   hw  k  s  p  groups  act     count  aliases (same problem)
RESNET50: tuple[ConvBNShape, ...] = (
    _c("r50.conv1",                   3,    64, 224, 7, 2, 3,    1, "relu",  1),
    _c("r50.layer1.0.conv1",         64,    64,  56, 1, 1, 0,    1, "relu",  1),
    _c("r50.layer1.0.conv2",         64,    64,  56, 3, 1, 1,    1, "relu",  3, ["r50.layer1.{1,2}.conv2"]),
    _c("r50.layer1.0.conv3",         64,   256,  56, 1, 1, 0,    1, None,    4,
       ["r50.layer1.0.downsample.0", "r50.layer1.{1,2}.conv3"]),
    _c("r50.layer1.1.conv1",        256,    64,  56, 1, 1, 0,    1, "relu",  2, ["r50.layer1.2.conv1"]),
    _c("r50.layer2.0.conv1",        256,   128,  56, 1, 1, 0,    1, "relu",  1),
    _c("r50.layer2.0.conv2",        128,   128,  56, 3, 2, 1,    1, "relu",  1),
    _c("r50.layer2.0.conv3",        128,   512,  28, 1, 1, 0,    1, None,    4, ["r50.layer2.{1,2,3}.conv3"]),
    _c("r50.layer2.0.downsample.0", 256,   512,  56, 1, 2, 0,    1, None,    1),
    _c("r50.layer2.1.conv1",        512,   128,  28, 1, 1, 0,    1, "relu",  3, ["r50.layer2.{2,3}.conv1"]),
    _c("r50.layer2.1.conv2",        128,   128,  28, 3, 1, 1,    1, "relu",  3, ["r50.layer2.{2,3}.conv2"]),
    _c("r50.layer3.0.conv1",        512,   256,  28, 1, 1, 0,    1, "relu",  1),
    _c("r50.layer3.0.conv2",        256,   256,  28, 3, 2, 1,    1, "relu",  1),
    _c("r50.layer3.0.conv3",        256,  1024,  14, 1, 1, 0,    1, None,    6, ["r50.layer3.{1..5}.conv3"]),
    _c("r50.layer3.0.downsample.0", 512,  1024,  28, 1, 2, 0,    1, None,    1),
    _c("r50.layer3.1.conv1",       1024,   256,  14, 1, 1, 0,    1, "relu",  5, ["r50.layer3.{2..5}.conv1"]),
    _c("r50.layer3.1.conv2",        256,   256,  14, 3, 1, 1,    1, "relu",  5, ["r50.layer3.{2..5}.conv2"]),
    _c("r50.layer4.0.conv1",       1024,   512,  14, 1, 1, 0,    1, "relu",  1),
    _c("r50.layer4.0.conv2",        512,   512,  14, 3, 2, 1,    1, "relu",  1),
    _c("r50.layer4.0.conv3",        512,  2048,   7, 1, 1, 0,    1, None,    3, ["r50.layer4.{1,2}.conv3"]),
    _c("r50.layer4.0.downsample.0",1024,  2048,  14, 1, 2, 0,    1, None,    1),
    _c("r50.layer4.1.conv1",       2048,   512,   7, 1, 1, 0,    1, "relu",  2, ["r50.layer4.2.conv1"]),
    _c("r50.layer4.1.conv2",        512,   512,   7, 3, 1, 1,    1, "relu",  2, ["r50.layer4.2.conv2"]),
)  # fmt: skip

_F = "mnv2.features"
MOBILENET_V2: tuple[ConvBNShape, ...] = (
    _c(f"{_F}.0.0",                   3,    32, 224, 3, 2, 1,    1, "relu6", 1),
    _c(f"{_F}.1.conv.0.0",           32,    32, 112, 3, 1, 1,   32, "relu6", 1),
    _c(f"{_F}.1.conv.1",             32,    16, 112, 1, 1, 0,    1, None,    1),
    _c(f"{_F}.2.conv.0.0",           16,    96, 112, 1, 1, 0,    1, "relu6", 1),
    _c(f"{_F}.2.conv.1.0",           96,    96, 112, 3, 2, 1,   96, "relu6", 1),
    _c(f"{_F}.2.conv.2",             96,    24,  56, 1, 1, 0,    1, None,    1),
    _c(f"{_F}.3.conv.0.0",           24,   144,  56, 1, 1, 0,    1, "relu6", 2, [f"{_F}.4.conv.0.0"]),
    _c(f"{_F}.3.conv.1.0",          144,   144,  56, 3, 1, 1,  144, "relu6", 1),
    _c(f"{_F}.3.conv.2",            144,    24,  56, 1, 1, 0,    1, None,    1),
    _c(f"{_F}.4.conv.1.0",          144,   144,  56, 3, 2, 1,  144, "relu6", 1),
    _c(f"{_F}.4.conv.2",            144,    32,  28, 1, 1, 0,    1, None,    1),
    _c(f"{_F}.5.conv.0.0",           32,   192,  28, 1, 1, 0,    1, "relu6", 3, [f"{_F}.{{6,7}}.conv.0.0"]),
    _c(f"{_F}.5.conv.1.0",          192,   192,  28, 3, 1, 1,  192, "relu6", 2, [f"{_F}.6.conv.1.0"]),
    _c(f"{_F}.5.conv.2",            192,    32,  28, 1, 1, 0,    1, None,    2, [f"{_F}.6.conv.2"]),
    _c(f"{_F}.7.conv.1.0",          192,   192,  28, 3, 2, 1,  192, "relu6", 1),
    _c(f"{_F}.7.conv.2",            192,    64,  14, 1, 1, 0,    1, None,    1),
    _c(f"{_F}.8.conv.0.0",           64,   384,  14, 1, 1, 0,    1, "relu6", 4, [f"{_F}.{{9..11}}.conv.0.0"]),
    _c(f"{_F}.8.conv.1.0",          384,   384,  14, 3, 1, 1,  384, "relu6", 4, [f"{_F}.{{9..11}}.conv.1.0"]),
    _c(f"{_F}.8.conv.2",            384,    64,  14, 1, 1, 0,    1, None,    3, [f"{_F}.{{9,10}}.conv.2"]),
    _c(f"{_F}.11.conv.2",           384,    96,  14, 1, 1, 0,    1, None,    1),
    _c(f"{_F}.12.conv.0.0",          96,   576,  14, 1, 1, 0,    1, "relu6", 3, [f"{_F}.{{13,14}}.conv.0.0"]),
    _c(f"{_F}.12.conv.1.0",         576,   576,  14, 3, 1, 1,  576, "relu6", 2, [f"{_F}.13.conv.1.0"]),
    _c(f"{_F}.12.conv.2",           576,    96,  14, 1, 1, 0,    1, None,    2, [f"{_F}.13.conv.2"]),
    _c(f"{_F}.14.conv.1.0",         576,   576,  14, 3, 2, 1,  576, "relu6", 1),
    _c(f"{_F}.14.conv.2",           576,   160,   7, 1, 1, 0,    1, None,    1),
    _c(f"{_F}.15.conv.0.0",         160,   960,   7, 1, 1, 0,    1, "relu6", 3, [f"{_F}.{{16,17}}.conv.0.0"]),
    _c(f"{_F}.15.conv.1.0",         960,   960,   7, 3, 1, 1,  960, "relu6", 3, [f"{_F}.{{16,17}}.conv.1.0"]),
    _c(f"{_F}.15.conv.2",           960,   160,   7, 1, 1, 0,    1, None,    2, [f"{_F}.16.conv.2"]),
    _c(f"{_F}.17.conv.2",           960,   320,   7, 1, 1, 0,    1, None,    1),
    _c(f"{_F}.18.0",                320,  1280,   7, 1, 1, 0,    1, "relu6", 1),
)  # fmt: skip

CONV_BN: tuple[ConvBNShape, ...] = RESNET50 + MOBILENET_V2

# A few problems of each kind (stem, 3x3, strided 3x3, 1x1 with and without activation, depthwise) for
# the CPU smoke run and quick looks.
REPRESENTATIVE = ("r50.conv1", "r50.layer1.0.conv2", "r50.layer3.0.conv2", "r50.layer2.1.conv1",
                  "r50.layer2.0.conv3", "mnv2.features.5.conv.0.0", "mnv2.features.5.conv.1.0",
                  "mnv2.features.5.conv.2")


# --------------------------------------------------------------------------------------------------
# Architecture walks: (name, cin, cout, hw_in, k, stride, padding, groups, activation) in forward order.

def resnet50_chain_walk() -> list[tuple]:
    """Every conv of resnet50 (shapes.resnet50_walk) with the activation after its BatchNorm."""
    def act(name: str) -> str | None:
        return "relu" if name == "r50.conv1" or name.endswith((".conv1", ".conv2")) else None
    return [(name, cin, cout, hw, k, s, p, 1, act(name)) for name, cin, cout, hw, k, s, p in resnet50_walk()]


MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1))  # expansion t, channels c, repeats n, first stride s


def mobilenet_v2_chain_walk() -> list[tuple]:
    """Every conv of mobilenet_v2 (width 1.0, 224x224) with the activation after its BatchNorm."""
    convs = [(f"{_F}.0.0", 3, 32, 224, 3, 2, 1, 1, "relu6")]
    hw, cin, block = 112, 32, 1
    for t, c, n, s in MOBILENET_V2_SETTING:
        for i in range(n):
            stride, hidden, prefix = s if i == 0 else 1, cin * t, f"{_F}.{block}.conv"
            if t != 1:  # 1x1 expansion; then the depthwise conv and the projection move one index up
                convs.append((f"{prefix}.0.0", cin, hidden, hw, 1, 1, 0, 1, "relu6"))
            first = 1 if t != 1 else 0
            convs.append((f"{prefix}.{first}.0", hidden, hidden, hw, 3, stride, 1, hidden, "relu6"))
            hw //= stride
            convs.append((f"{prefix}.{first + 1}", hidden, c, hw, 1, 1, 0, 1, None))
            cin, block = c, block + 1
    convs.append((f"{_F}.{block}.0", cin, 1280, hw, 1, 1, 0, 1, "relu6"))
    return convs


def _key(s: ConvBNShape) -> tuple:
    return s.cin, s.cout, s.hw, s.k, s.stride, s.padding, s.groups, s.activation


def check_tables() -> None:
    """Each table is exactly its de-duplicated walk, with the right counts (53 and 52 chains)."""
    for table, walk, n in ((RESNET50, resnet50_chain_walk(), 53),
                           (MOBILENET_V2, mobilenet_v2_chain_walk(), 52)):
        assert len(walk) == n, (table[0].group, len(walk))
        check_dedup(table, walk, _key, table[0].group)
    names = [s.name for s in CONV_BN]
    assert len(set(names)) == len(names), "duplicate layer names"
    assert set(REPRESENTATIVE) <= set(names), set(REPRESENTATIVE) - set(names)


def _activations_after_bn(model) -> dict[str, str | None]:
    """conv module name -> the activation module class applied to its BatchNorm's output (torch.fx trace)."""
    import torch

    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    acts = {torch.nn.ReLU: "relu", torch.nn.ReLU6: "relu6"}
    found = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], torch.nn.Conv2d):
            continue
        (bn,) = node.users
        assert isinstance(modules[bn.target], torch.nn.BatchNorm2d), node.target
        nxt = list(bn.users)
        mod = modules.get(nxt[0].target) if len(nxt) == 1 and nxt[0].op == "call_module" else None
        found[node.target] = acts.get(type(mod))
    return found


def check_against_torchvision() -> str:
    """The walks against torchvision's resnet50 and mobilenet_v2. Returns what was checked, or why not."""
    try:
        import torch
        import torchvision
        from torchvision import models
    except Exception as e:  # noqa: BLE001 - torchvision is optional
        return torchvision_skipped(e)
    for prefix, build, walk in (("r50", models.resnet50, resnet50_chain_walk()),
                                ("mnv2", models.mobilenet_v2, mobilenet_v2_chain_walk())):
        with torch.device("meta"):
            model = build()
        acts = _activations_after_bn(model)
        theirs = [(f"{prefix}.{name}", cin, cout, hw, k, s, p, g, acts[name])
                  for name, cin, cout, hw, k, s, p, d, g in hooked_convs(model, 224, lambda m: True)]
        assert theirs == walk, (prefix, [(a, b) for a, b in zip(theirs, walk) if a != b][:3])
    return f"the r50 and mnv2 walks match torchvision {torchvision.__version__}"


if __name__ == "__main__":
    check_tables()
    tv = check_against_torchvision()
    print(f"{'name':30} {'cin':>5} {'cout':>5} {'hw':>4} {'k':>2} {'s':>2} {'p':>2} {'g':>4} {'act':>6} "
          f"{'out':>4} {'count':>5}")
    for s in CONV_BN:
        print(f"{s.name:30} {s.cin:5} {s.cout:5} {s.hw:4} {s.k:2} {s.stride:2} {s.padding:2} {s.groups:4} "
              f"{s.activation or '-':>6} {s.out_hw:4} {s.count:5}")
    print(f"{len(CONV_BN)} distinct problems ({len(RESNET50)} r50, {len(MOBILENET_V2)} mnv2), "
          f"{sum(s.count for s in CONV_BN)} conv-BN chains; the tables match the walks; {tv}")
