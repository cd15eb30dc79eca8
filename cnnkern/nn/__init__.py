"""Drop-in ``torch.nn`` modules on cnnkern kernels: same constructor arguments, parameter and buffer names."""

from cnnkern.nn.conv import Conv2d
from cnnkern.nn.conv_bn import (
    ConvBN,
    ConvBNAct,
    ConvBNReLU,
    ConvBNReLU6,
    ConvBNSiLU,
    FusedSequential,
    fused_conv_bn,
)
from cnnkern.nn.conv_transpose import ConvTranspose2d
from cnnkern.nn.pointwise_shuffle import GroupPointwiseBN, ShuffleV2Unit
from cnnkern.nn.shuffle import ChannelShuffle

__all__ = [
    "ChannelShuffle",
    "Conv2d",
    "ConvBN",
    "ConvBNAct",
    "ConvBNReLU",
    "ConvBNReLU6",
    "ConvBNSiLU",
    "ConvTranspose2d",
    "FusedSequential",
    "GroupPointwiseBN",
    "ShuffleV2Unit",
    "fused_conv_bn",
]
