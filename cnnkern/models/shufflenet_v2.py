"""ShuffleNetV2 (Ma et al. 2018) on cnnkern kernels; torchvision's module tree and state_dict keys.

The units are :class:`cnnkern.nn.ShuffleV2Unit`: in eval mode (BatchNorm folded, no gradient wanted for it)
each unit's last 1x1 conv + BN + ReLU, the concat and the channel shuffle run as one concat-free
``shuffle_cat_pointwise``/``shuffle_cat_pointwise2`` call; in training mode the units run the branches,
``torch.cat`` and cnnkern's ``channel_shuffle`` (BatchNorm needs the batch statistics). Every other
conv -> BN (-> ReLU) is one fused ``cnnkern.conv_bn_relu`` call, in training and in eval: the stem and
``conv5`` are ``cnnkern.nn.ConvBNReLU`` and the units' branches are ``FusedSequential``.
Weights use PyTorch's default init, as torchvision's ShuffleNetV2 does.
"""

from __future__ import annotations

from torch import Tensor, nn

from cnnkern.models._layers import fuse_branches
from cnnkern.models._registry import register_model
from cnnkern.nn import ConvBNReLU, ShuffleV2Unit


class FusedShuffleV2Unit(ShuffleV2Unit):
    """``ShuffleV2Unit`` whose branches run their conv -> BN (-> ReLU) chains fused: the whole branches in
    training, and in eval the part before the concat-free tail (``_head``), which the unit runs child by
    child. Same submodules and state_dict keys."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__(inp, oup, stride)
        fuse_branches(self.branch1, self.branch2)

    @staticmethod
    def _head(branch, x: Tensor, end: int) -> Tensor:
        return branch.forward_until(x, end)


class ShuffleNetV2(nn.Module):
    def __init__(self, stages_repeats: list[int], stages_out_channels: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        if len(stages_repeats) != 3:
            raise ValueError("expected stages_repeats as list of 3 positive ints")
        if len(stages_out_channels) != 5:
            raise ValueError("expected stages_out_channels as list of 5 positive ints")
        self._stage_out_channels = stages_out_channels
        channels = stages_out_channels[0]
        self.conv1 = ConvBNReLU(3, channels, 3, 2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        for name, repeats, out in zip(("stage2", "stage3", "stage4"), stages_repeats, stages_out_channels[1:4]):
            units = [FusedShuffleV2Unit(channels, out, 2)]
            units += [FusedShuffleV2Unit(out, out, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*units))
            channels = out
        self.conv5 = ConvBNReLU(channels, stages_out_channels[-1], 1)
        self.fc = nn.Linear(stages_out_channels[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean([2, 3]))


_REPEATS = [4, 8, 4]


@register_model
def shufflenet_v2_x0_5(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x; torchvision-compatible weights."""
    return ShuffleNetV2(_REPEATS, [24, 48, 96, 192, 1024], num_classes)


@register_model
def shufflenet_v2_x1_0(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x; torchvision-compatible weights."""
    return ShuffleNetV2(_REPEATS, [24, 116, 232, 464, 1024], num_classes)


@register_model
def shufflenet_v2_x1_5(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x; torchvision-compatible weights."""
    return ShuffleNetV2(_REPEATS, [24, 176, 352, 704, 1024], num_classes)


@register_model
def shufflenet_v2_x2_0(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x; torchvision-compatible weights."""
    return ShuffleNetV2(_REPEATS, [24, 244, 488, 976, 2048], num_classes)
