"""MobileNet v1 (Howard et al. 2017): the 28-layer depthwise-separable net of the seed's layer table.

Layers: a full 3x3 conv (stride 2), 13 depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, each with
BN + ReLU), global average pooling and the classifier: 1 + 26 + 1 = 28 layers with weights. The table's
second-to-last depthwise layer reads "s2" on a 7x7 input that stays 7x7, a known typo of the paper: it is
stride 1 here (as in the paper's own output sizes and the reference TensorFlow code).

The width multiplier ``alpha`` scales every layer's channels (``max(8, int(alpha * c))``, the rule of the
reference code); at 224x224 the paper gives 569/325/149/41 M mult-adds and 4.2/2.6/1.3/0.5 M parameters
for alpha = 1, 0.75, 0.5, 0.25.
"""

from __future__ import annotations

from torch import Tensor, nn

from cnnkern.models._layers import global_avg_pool, init_torchvision_style
from cnnkern.models._registry import register_model
from cnnkern.nn import ConvBNReLU

# (output channels, stride) of the 13 depthwise-separable blocks; the stride is the depthwise conv's.
_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
           (512, 1), (1024, 2), (1024, 1)]


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise + BN + ReLU (``dw``) then 1x1 pointwise + BN + ReLU (``pw``), each one fused op."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.dw = ConvBNReLU(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pw = ConvBNReLU(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.0,
                 min_channels: int = 8) -> None:
        super().__init__()
        if not width_mult > 0:
            raise ValueError(f"mobilenet_v1: width_mult must be positive, got {width_mult}")

        def width(c: int) -> int:
            return max(min_channels, int(c * width_mult))

        channels = width(32)
        layers: list[nn.Module] = [ConvBNReLU(3, channels, 3, 2)]
        for out, stride in _BLOCKS:
            layers.append(DepthwiseSeparable(channels, width(out), stride))
            channels = width(out)
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        init_torchvision_style(self, linear_std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(global_avg_pool(self.features(x))))


@register_model
def mobilenet_v1(width_mult: float = 1.0, num_classes: int = 1000, **kwargs) -> MobileNetV1:
    """MobileNet v1 with width multiplier ``width_mult`` (the paper's alpha, 0.25-1.0)."""
    return MobileNetV1(width_mult=width_mult, num_classes=num_classes, **kwargs)
