"""ShuffleNet v1 (Zhang et al. 2017) with the seed's channel table, on cnnkern's fused pointwise kernels.

Unit (the paper's Fig. 2): 1x1 GConv + BN + ReLU + channel shuffle -> 3x3 depthwise (stride) + BN ->
1x1 GConv + BN, then ``relu(x + branch)`` (stride 1) or ``relu(cat([avgpool3x3/2(x), branch]))`` (stride 2).
Both GConvs are :class:`cnnkern.nn.GroupPointwiseBN`: in eval mode the first is one kernel (conv, BN,
ReLU and the shuffle in its store), the second one kernel (conv + BN). The bottleneck has a quarter of the
unit's output channels, and stage 2's first 1x1 conv is not grouped (24 input channels are too few), as in
the paper; without a grouped conv before it, its shuffle would only relabel channels and is left out.
The 3x3 depthwise conv + BN and the stem's conv + BN + ReLU are one fused ``cnnkern.conv_bn_relu`` call each,
in training and in eval.

``width_mult`` (the paper's "ShuffleNet s x") scales every layer: stage widths are rounded to a multiple of
4 * groups (so bottlenecks split into groups; the table's 1x widths already are) and the stem to a multiple
of groups. The paper gives 143/140/137/133/137 M mult-adds at 224x224 for groups 1/2/3/4/8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnkern.models._layers import global_avg_pool, init_torchvision_style
from cnnkern.models._registry import register_model
from cnnkern.nn import Conv2d, ConvBNReLU, GroupPointwiseBN, fused_conv_bn

# groups -> output channels of stages 2, 3, 4 (the seed's table, ShuffleNet 1x)
STAGE_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
                  8: (384, 768, 1536)}
STAGE_REPEATS = (4, 8, 4)  # one stride-2 unit + 3 / 7 / 3 stride-1 units
STEM_CHANNELS = 24


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(value / multiple + 0.5) * multiple)


class ShuffleV1Unit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int,
                 group_first: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleV1Unit: stride must be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"ShuffleV1Unit: a stride-1 unit adds its input, so in_channels ({in_channels}) must "
                             f"equal out_channels ({out_channels})")
        branch_out = out_channels - in_channels if stride == 2 else out_channels
        mid = out_channels // 4
        first_groups = groups if group_first else 1
        self.stride = stride
        self.gconv1 = GroupPointwiseBN(in_channels, mid, first_groups,
                                       shuffle_groups=groups if first_groups > 1 else None, relu=True)
        self.dwconv = Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.dwbn = nn.BatchNorm2d(mid)
        self.gconv2 = GroupPointwiseBN(mid, branch_out, groups, relu=False)
        self.shortcut = nn.AvgPool2d(3, 2, 1) if stride == 2 else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.gconv2(fused_conv_bn(self.gconv1(x), self.dwconv, self.dwbn))
        if self.shortcut is None:
            return F.relu(x + out)
        return F.relu(torch.cat((self.shortcut(x), out), dim=1))


class ShuffleNetV1(nn.Module):
    def __init__(self, groups: int = 3, width_mult: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()
        if groups not in STAGE_CHANNELS:
            raise ValueError(f"shufflenet_v1: groups must be one of {sorted(STAGE_CHANNELS)}, got {groups}")
        if not width_mult > 0:
            raise ValueError(f"shufflenet_v1: width_mult must be positive, got {width_mult}")
        self.groups = groups
        channels = _round_to(STEM_CHANNELS * width_mult, groups)
        self.conv1 = ConvBNReLU(3, channels, 3, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.stage_channels = tuple(_round_to(c * width_mult, 4 * groups) for c in STAGE_CHANNELS[groups])
        for i, (out, repeats) in enumerate(zip(self.stage_channels, STAGE_REPEATS)):
            units = [ShuffleV1Unit(channels, out, groups, 2, group_first=i > 0)]
            units += [ShuffleV1Unit(out, out, groups, 1) for _ in range(repeats - 1)]
            self.add_module(f"stage{i + 2}", nn.Sequential(*units))
            channels = out
        self.fc = nn.Linear(channels, num_classes)
        init_torchvision_style(self, linear_std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(global_avg_pool(x))


@register_model
def shufflenet_v1(groups: int = 3, width_mult: float = 1.0, num_classes: int = 1000) -> ShuffleNetV1:
    """ShuffleNet v1 with ``groups`` in {1, 2, 3, 4, 8} and width multiplier ``width_mult`` (the paper's s)."""
    return ShuffleNetV1(groups=groups, width_mult=width_mult, num_classes=num_classes)
