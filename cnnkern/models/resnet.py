"""ResNet, ResNeXt and Wide ResNet on cnnkern convolutions.

Module tree and state_dict keys are torchvision's (``conv1``/``bn1``/``layer1..4``/``fc``, blocks with
``conv1..3``/``bn1..3``/``downsample``), so ``load_state_dict(torchvision_model.state_dict())`` works. The
1x1 convs of the bottleneck run on the pointwise kernel, the 3x3 (grouped for ResNeXt) on the direct one.
Each conv -> BN (-> ReLU) is one ``fused_conv_bn`` call (``cnnkern.conv_bn_relu``), in training and in eval;
the downsample is a ``FusedSequential`` (conv + BN). The blocks' shared ``relu`` module is passed to the
fused calls, and still applied as a module after the residual add. With another ``norm_layer`` than
BatchNorm2d the same calls run the modules unfused.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from cnnkern.models._layers import init_torchvision_style
from cnnkern.models._registry import register_model
from cnnkern.nn import Conv2d, FusedSequential, fused_conv_bn

NormLayer = Callable[[int], nn.Module]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> Conv2d:
    return Conv2d(in_planes, out_planes, 3, stride, padding=dilation, groups=groups, bias=False,
                  dilation=dilation)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> Conv2d:
    return Conv2d(in_planes, out_planes, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1, norm_layer: NormLayer | None = None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = fused_conv_bn(x, self.conv1, self.bn1, self.relu)
        out = fused_conv_bn(out, self.conv2, self.bn2)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride, groups) -> 1x1 expand; the stride sits on the 3x3 (ResNet v1.5)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1, norm_layer: NormLayer | None = None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = _conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = fused_conv_bn(x, self.conv1, self.bn1, self.relu)
        out = fused_conv_bn(out, self.conv2, self.bn2, self.relu)
        out = fused_conv_bn(out, self.conv3, self.bn3)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ``ResNet`` constructor arguments and module names."""

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], num_classes: int = 1000,
                 zero_init_residual: bool = False, groups: int = 1, width_per_group: int = 64,
                 replace_stride_with_dilation: list[bool] | None = None,
                 norm_layer: NormLayer | None = None) -> None:
        super().__init__()
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes = 64
        self.dilation = 1
        replace_stride_with_dilation = replace_stride_with_dilation or [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation should be None or a 3-element tuple, got "
                             f"{replace_stride_with_dilation}")
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        init_torchvision_style(self)
        if zero_init_residual:  # each residual branch starts as identity
            for m in self.modules():
                last_bn = m.bn3 if isinstance(m, Bottleneck) else m.bn2 if isinstance(m, BasicBlock) else None
                if last_bn is not None and last_bn.weight is not None:
                    nn.init.zeros_(last_bn.weight)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        norm_layer = self._norm_layer
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = FusedSequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                         norm_layer(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width,
                        previous_dilation, norm_layer)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                         dilation=self.dilation, norm_layer=norm_layer) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(fused_conv_bn(x, self.conv1, self.bn1, self.relu))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model
def resnet18(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-18 (He et al. 2015); torchvision-compatible weights."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, **kwargs)


@register_model
def resnet34(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-34; torchvision-compatible weights."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, **kwargs)


@register_model
def resnet50(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50 (v1.5: stride on the 3x3); torchvision-compatible weights."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, **kwargs)


@register_model
def resnet101(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-101; torchvision-compatible weights."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, **kwargs)


@register_model
def resnet152(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-152; torchvision-compatible weights."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, **kwargs)


@register_model
def resnext50_32x4d(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al. 2017): cardinality 32, 4 channels per group; torchvision-compatible."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, groups=32, width_per_group=4, **kwargs)


@register_model
def wide_resnet50_2(num_classes: int = 1000, **kwargs) -> ResNet:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis 2016): bottleneck twice as wide; torchvision-compatible."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, width_per_group=128, **kwargs)
