"""ShuffleNet unit modules: grouped 1x1 conv + BatchNorm (+ ReLU) (+ channel shuffle), and the V2 unit.

Eval mode folds each BatchNorm into the pointwise kernel's per-channel ``scale``/``shift`` epilogue, so
ShuffleNetV1's GConv-BN-ReLU-Shuffle is one kernel and ShuffleNetV2's last conv-BN-ReLU, concat and shuffle
are one (``shuffle_cat_pointwise``/``shuffle_cat_pointwise2``). The epilogue gets no gradient and needs the
running statistics, so the fused path is taken only when BatchNorm uses running statistics (eval mode with
``track_running_stats``) and no gradient is wanted for its affine parameters (``torch.no_grad()``,
``inference_mode`` or frozen ``weight``/``bias``); otherwise the modules run the same math unfused.
A fused conv is run through its parameters, not its ``forward``, so forward hooks on that ``Conv2d`` child
do not fire (hook the unit instead).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnkern.nn.conv import Conv2d
from cnnkern.ops.channel_shuffle import channel_shuffle
from cnnkern.ops.group_pointwise_conv2d import group_pointwise_conv2d
from cnnkern.ops.shuffle_cat_pointwise import shuffle_cat_pointwise, shuffle_cat_pointwise2


def can_fold_batch_norm(bn: nn.BatchNorm2d) -> bool:
    """True when ``bn`` is a fixed per-channel affine map that needs no gradient: it may go in an epilogue."""
    if bn.training or bn.running_mean is None or bn.running_var is None:
        return False
    return not (torch.is_grad_enabled() and any(p is not None and p.requires_grad for p in (bn.weight, bn.bias)))


def fold_batch_norm(bn: nn.BatchNorm2d, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Eval BatchNorm as ``x * scale + shift`` (per channel), computed in the statistics' precision."""
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
    return scale.to(dtype), shift.to(dtype)


def _shuffle_source(channels: int, groups: int, device) -> Tensor:
    """``src[d]``: the pre-shuffle channel stored at channel ``d`` by ``channel_shuffle(., groups)``."""
    return torch.arange(channels, device=device).view(groups, channels // groups).t().reshape(-1)


def batch_norm_after_shuffle(x: Tensor, bn: nn.BatchNorm2d, groups: int | None) -> Tensor:
    """``channel_shuffle(bn(z), groups)`` given ``x = channel_shuffle(z, groups)``, updating ``bn`` like ``bn(z)``.

    BatchNorm is per channel and the shuffle only moves channels, so normalising the shuffled tensor with
    the parameters and statistics gathered into shuffled order is the same math; the updated running
    statistics are scattered back to ``bn``'s own (pre-shuffle) channel order.
    """
    if groups is None or groups == 1:
        return bn(x)
    # _BatchNorm.forward's bookkeeping, done here because the statistics passed to F.batch_norm are copies.
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(bn.num_batches_tracked)
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    track = (not bn.training or bn.track_running_stats) and bn.running_mean is not None
    src = _shuffle_source(x.shape[1], groups, x.device)

    def gather(t):
        return None if t is None else t.index_select(0, src)

    mean, var = (gather(bn.running_mean), gather(bn.running_var)) if track else (None, None)
    y = F.batch_norm(x, mean, var, gather(bn.weight), gather(bn.bias), use_batch_stats, momentum, bn.eps)
    if track and use_batch_stats:
        with torch.no_grad():
            bn.running_mean.index_copy_(0, src, mean)
            bn.running_var.index_copy_(0, src, var)
    return y


class GroupPointwiseBN(nn.Module):
    """Grouped 1x1 conv -> BatchNorm2d -> optional ReLU -> optional channel shuffle (ShuffleNetV1's GConv).

    Equals ``ChannelShuffle(shuffle_groups)(ReLU(BatchNorm2d(Conv2d(in, out, 1, groups=groups)(x))))``, with
    the submodules ``conv`` (:class:`cnnkern.nn.Conv2d`) and ``bn`` (``torch.nn.BatchNorm2d``) holding the
    parameters under their usual names. Training: one ``group_pointwise_conv2d`` whose store does the
    shuffle, then BatchNorm with batch statistics on the shuffled channels (see
    ``batch_norm_after_shuffle``), then ReLU. Eval: BatchNorm folded into the kernel's scale/shift epilogue,
    so conv, BN, ReLU and shuffle are one kernel.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int = 1, shuffle_groups: int | None = None,
                 relu: bool = True, bias: bool = False, eps: float = 1e-5, momentum: float | None = 0.1,
                 device=None, dtype=None) -> None:
        super().__init__()
        if shuffle_groups is not None and (shuffle_groups <= 0 or out_channels % shuffle_groups):
            raise ValueError(f"GroupPointwiseBN: out_channels ({out_channels}) must be divisible by "
                             f"shuffle_groups ({shuffle_groups})")
        factory = {"device": device, "dtype": dtype}
        self.conv = Conv2d(in_channels, out_channels, 1, groups=groups, bias=bias, **factory)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum, **factory)
        self.relu = relu
        self.shuffle_groups = None if shuffle_groups == 1 else shuffle_groups

    @property
    def fused(self) -> bool:
        """Whether the next forward runs as one kernel (BN folded into the epilogue)."""
        return can_fold_batch_norm(self.bn)

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv
        if self.fused:
            scale, shift = fold_batch_norm(self.bn, x.dtype)
            return group_pointwise_conv2d(x, conv.weight, conv.bias, conv.groups, self.shuffle_groups,
                                          scale=scale, shift=shift, relu=self.relu)
        y = group_pointwise_conv2d(x, conv.weight, conv.bias, conv.groups, self.shuffle_groups)
        y = batch_norm_after_shuffle(y, self.bn, self.shuffle_groups)
        return F.relu(y) if self.relu else y

    def extra_repr(self) -> str:
        act = " -> relu" if self.relu else ""
        shuffle = "" if self.shuffle_groups is None else f"+shuffle({self.shuffle_groups})"
        fused = "+".join(["bn"] + (["relu"] if self.relu else []))
        return (f"relu={self.relu}, shuffle_groups={self.shuffle_groups}, kernels=train: "
                f"group_pointwise_conv2d{shuffle} -> batch_norm{act}; eval: group_pointwise_conv2d"
                f"{shuffle}+{fused} (one kernel)")


class ShuffleV2Unit(nn.Module):
    """ShuffleNetV2's unit with torchvision's submodules (``branch1``, ``branch2``) and state_dict keys.

    Forward equals ``channel_shuffle(cat([x1, branch2(x2)]), 2)`` (stride 1, ``x1, x2 = x.chunk(2)``) or
    ``channel_shuffle(cat([branch1(x), branch2(x)]), 2)`` (stride > 1). When the branches' last BatchNorms
    can be folded (see the module doc), their last 1x1 conv + BN + ReLU, the concat and the shuffle are one
    ``shuffle_cat_pointwise`` (stride 1) or ``shuffle_cat_pointwise2`` (stride 2) call that writes the
    interleaved output directly. In training BatchNorm needs the batch statistics of the conv output before
    its ReLU, which the fused store never materialises, so training runs the branches, ``torch.cat`` and
    cnnkern's ``channel_shuffle``.
    """

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError("illegal stride value")
        self.stride = stride
        branch = oup // 2
        if stride == 1 and inp != branch << 1:
            raise ValueError(f"Invalid combination of stride {stride}, inp {inp} and oup {oup} values. If stride "
                             "== 1 then inp should be equal to oup // 2 << 1.")
        if stride > 1:
            self.branch1 = nn.Sequential(
                Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                Conv2d(inp, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            Conv2d(inp if stride > 1 else branch, branch, 1, bias=False), nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
            Conv2d(branch, branch, 3, stride, 1, groups=branch, bias=False), nn.BatchNorm2d(branch),
            Conv2d(branch, branch, 1, bias=False), nn.BatchNorm2d(branch), nn.ReLU(inplace=True),
        )

    @property
    def fused(self) -> bool:
        """Whether the next forward takes the concat-free path."""
        bns = [self.branch2[6]] + ([self.branch1[3]] if self.stride > 1 else [])
        return all(can_fold_batch_norm(bn) for bn in bns)

    @staticmethod
    def _head(branch: nn.Sequential, x: Tensor, end: int) -> Tensor:
        for i in range(end):
            x = branch[i](x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        if not self.fused:
            if self.stride == 1:
                x1, x2 = x.chunk(2, dim=1)
                out = torch.cat((x1, self.branch2(x2)), dim=1)
            else:
                out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
            return channel_shuffle(out, 2)
        conv2, (scale2, shift2) = self.branch2[5], fold_batch_norm(self.branch2[6], x.dtype)
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            return shuffle_cat_pointwise(x1, self._head(self.branch2, x2, 5), conv2.weight, conv2.bias,
                                         scale=scale2, shift=shift2, relu=True)
        conv1, (scale1, shift1) = self.branch1[2], fold_batch_norm(self.branch1[3], x.dtype)
        return shuffle_cat_pointwise2(self._head(self.branch1, x, 2), conv1.weight,
                                      self._head(self.branch2, x, 5), conv2.weight, bias1=conv1.bias,
                                      bias2=conv2.bias, scale1=scale1, shift1=shift1, scale2=scale2,
                                      shift2=shift2, relu=True)

    def extra_repr(self) -> str:
        fused = "shuffle_cat_pointwise" if self.stride == 1 else "shuffle_cat_pointwise2"
        return (f"stride={self.stride}, kernels=train: branches -> cat -> channel_shuffle; "
                f"eval: {fused} (last 1x1 conv+bn+relu, concat and shuffle in one)")
