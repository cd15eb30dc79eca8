"""MobileNetV2 (Sandler et al. 2018) on cnnkern convolutions; torchvision's module tree and state_dict keys.

Every conv -> BN (-> ReLU6) is one fused ``cnnkern.conv_bn_relu`` call, in training and in eval: the
``Conv2dNormActivation`` blocks are ``cnnkern.nn.ConvBNReLU6`` (same children ``0``, ``1``, ``2``), and each
inverted residual's ``conv`` is a ``FusedSequential`` (its closing 1x1 conv + BN runs fused).
"""

from __future__ import annotations

from torch import Tensor, nn

from cnnkern.models._layers import global_avg_pool, init_torchvision_style, make_divisible
from cnnkern.models._registry import register_model
from cnnkern.nn import Conv2d, ConvBNReLU6, FusedSequential

# expansion t, output channels c, repeats n, first stride s
_SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
            [6, 320, 1, 1]]


class InvertedResidual(nn.Module):
    """1x1 expand (pointwise kernel) -> 3x3 depthwise (depthwise kernel) -> 1x1 linear projection."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2 instead of {stride}")
        self.stride = stride
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden, 1))
        layers += [ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),
                   Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = FusedSequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0,
                 inverted_residual_setting: list[list[int]] | None = None, round_nearest: int = 8,
                 dropout: float = 0.2) -> None:
        super().__init__()
        setting = _SETTING if inverted_residual_setting is None else inverted_residual_setting
        if len(setting) == 0 or any(len(row) != 4 for row in setting):
            raise ValueError(f"inverted_residual_setting should be non-empty and made of 4-element lists, got "
                             f"{setting}")
        channels = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [ConvBNReLU6(3, channels, 3, 2)]
        for t, c, n, s in setting:
            out = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(channels, out, s if i == 0 else 1, expand_ratio=t))
                channels = out
        features.append(ConvBNReLU6(channels, self.last_channel, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        init_torchvision_style(self, conv_nonlinearity="leaky_relu", linear_std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(global_avg_pool(self.features(x)))


@register_model
def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, **kwargs) -> MobileNetV2:
    """MobileNetV2; torchvision-compatible weights (same constructor keywords)."""
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult, **kwargs)
