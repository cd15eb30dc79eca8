"""conv -> BatchNorm2d (-> ReLU / ReLU6 / SiLU) as one ``cnnkern.conv_bn_relu`` call, with unchanged modules.

``fused_conv_bn(x, conv, bn, activation)`` is the one place that maps the modules onto the functional op:
it equals ``activation(bn(conv(x)))`` with exactly ``nn.BatchNorm2d``'s semantics (batch statistics in
training, running statistics in eval, ``track_running_stats=False``, ``momentum=None`` as the cumulative
average over ``num_batches_tracked``, ``affine=False``), and the conv's ``padding_mode`` (a non-zero mode
pads with ``F.pad`` first, as ``nn.Conv2d`` does, then the fused op runs with padding 0). Everything that
fuses (these modules, ``cnnkern.convert(model, fuse=True)``, the bundled models) calls it.

It runs the modules themselves, unfused, whenever fusing could change what the caller observes: a forward
hook or pre-hook (module or global) on any of them, so hooks keep firing; a conv or BatchNorm of another
class (a subclass's own code would be skipped); an input that is not a 4-D tensor (``torch.fx`` proxies
then record the three module calls, and BatchNorm2d raises its own error for 3-D input); settings the op
rejects and BatchNorm accepts (momentum outside [0, 1], eps <= 0). An activation module of another class is
applied after the fused conv + BatchNorm.

The modules are ``nn.Sequential`` subclasses, so their children and state_dict keys are those of the
unfused layers (``0.weight``, ``1.running_mean``, ...), as in torchvision's ``Conv2dNormActivation``:

- ``ConvBN``, ``ConvBNReLU``, ``ConvBNReLU6``, ``ConvBNSiLU`` (``ConvBNAct`` with the activation chosen):
  children ``0`` = ``cnnkern.nn.Conv2d``, ``1`` = ``nn.BatchNorm2d``, ``2`` = the activation (not for ConvBN).
- ``FusedSequential``: any Sequential whose conv -> BatchNorm2d (-> activation) runs are fused, the other
  children run as usual (MobileNetV2's ``conv`` ending in a 1x1 conv + BN, ShuffleNetV2's branches).

The chains are found from the children at each call, so the module stays correct if children are
replaced; a Sequential is Sequential again with ``module.__class__ = nn.Sequential``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as _module
from torch.nn.utils import parametrize

from cnnkern.nn.conv import Conv2d
from cnnkern.ops.conv_bn_relu import conv_bn_relu

ACTIVATIONS: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.SiLU: "silu"}
ACTIVATION_MODULES = {name: cls for cls, name in ACTIVATIONS.items()}
_FUNCTIONAL = {"relu": F.relu, "relu6": F.relu6, "silu": F.silu}
FUSABLE_CONVS = (nn.Conv2d, Conv2d)


def activation_name(module) -> str | None:
    """The op's name for an activation module of exactly a fused class (no instance forward), else None."""
    name = ACTIVATIONS.get(type(module))
    return None if name is None or "forward" in vars(module) else name


def _split_activation(activation):
    """(name for the op, module to apply after the op or None) for None, a name, or a module."""
    if activation is None or isinstance(activation, str):
        if activation is not None and activation not in _FUNCTIONAL:
            raise ValueError(f"fused_conv_bn: unknown activation {activation!r}; choose one of "
                             f"{sorted(_FUNCTIONAL)}, an nn.Module or None")
        return activation, None
    name = activation_name(activation)
    return (name, None) if name is not None else (None, activation)


def why_not_fusable(conv: nn.Module, bn: nn.Module) -> str | None:
    """Why ``bn(conv(x))`` cannot run as the fused op for any input, or None (it can)."""
    conv_cls = parametrize.type_before_parametrizations(conv)
    if conv_cls not in FUSABLE_CONVS:
        return (f"the conv is a {conv_cls.__module__}.{conv_cls.__qualname__}, not exactly torch.nn.Conv2d "
                "or cnnkern.nn.Conv2d (fusing would skip a subclass's own code)")
    if parametrize.type_before_parametrizations(bn) is not nn.BatchNorm2d:
        cls = type(bn)
        return f"the norm is a {cls.__module__}.{cls.__qualname__}, not exactly torch.nn.BatchNorm2d"
    for name, m in (("conv", conv), ("BatchNorm", bn)):
        if "forward" in vars(m):
            return f"the {name}'s forward is replaced on the instance"
    if bn.num_features != conv.out_channels:
        return f"BatchNorm2d({bn.num_features}) after a conv with {conv.out_channels} output channels"
    if not bn.eps > 0:
        return f"BatchNorm eps={bn.eps} (the fused op needs eps > 0)"
    if bn.momentum is not None and not 0.0 <= bn.momentum <= 1.0:
        return f"BatchNorm momentum={bn.momentum} (the fused op takes [0, 1] or None)"
    return None


def _hooked(*modules) -> bool:
    """True when calling the modules would run a hook (``nn.Module.__call__``'s fast-path condition)."""
    if (_module._global_forward_hooks or _module._global_forward_pre_hooks or _module._global_backward_hooks
            or _module._global_backward_pre_hooks):
        return True
    return any(isinstance(m, nn.Module) and (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                                             or m._backward_pre_hooks) for m in modules)


def _unfused(input, conv, bn, activation):
    out = bn(conv(input))
    if activation is None:
        return out
    return _FUNCTIONAL[activation](out) if isinstance(activation, str) else activation(out)


def fused_conv_bn(input: Tensor, conv: nn.Module, bn: nn.Module, activation=None) -> Tensor:
    """``activation(bn(conv(input)))`` as one ``cnnkern.conv_bn_relu`` call (see the module docstring).

    ``activation``: None, "relu" / "relu6" / "silu", or a module (``nn.ReLU``/``ReLU6``/``SiLU`` are fused;
    another module is called on the fused conv + BatchNorm output). The running statistics and
    ``num_batches_tracked`` of ``bn`` are updated in place exactly as ``bn`` itself would update them.
    """
    name, after = _split_activation(activation)
    if (not isinstance(input, Tensor) or input.dim() != 4 or _hooked(conv, bn, activation)
            or why_not_fusable(conv, bn) is not None):
        return _unfused(input, conv, bn, activation)
    if conv.padding_mode != "zeros":
        input = F.pad(input, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        padding = 0
    else:
        padding = conv.padding
    # nn.BatchNorm2d.forward's choices, spelled out: which statistics normalise, which are updated, and how.
    batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    keep_running = not bn.training or bn.track_running_stats
    tracked = bn.num_batches_tracked if bn.training and bn.track_running_stats else None
    momentum = bn.momentum
    if momentum is None and tracked is None:
        momentum = 0.0  # BatchNorm's factor when it has no batch count: nothing is updated with it
    out = conv_bn_relu(input, conv.weight, conv.bias, bn.weight, bn.bias,
                       bn.running_mean if keep_running else None, bn.running_var if keep_running else None,
                       batch_stats, momentum, bn.eps, conv.stride, padding, conv.dilation, conv.groups, name,
                       num_batches_tracked=tracked)
    return out if after is None else after(out)


# --------------------------------------------------------------------------------------- chains
@dataclass(frozen=True)
class Chain:
    """Children ``start:stop`` of a Sequential: conv, BatchNorm2d and optionally a fused activation."""

    start: int
    stop: int
    activation: str | None
    why_not: str | None  # why it runs unfused whatever the input (see why_not_fusable), or None


def find_chains(modules: list[nn.Module]) -> list[Chain]:
    """The conv -> BatchNorm2d (-> ReLU/ReLU6/SiLU) runs in a list of consecutive children."""
    chains, i, n = [], 0, len(modules)
    while i + 1 < n:
        if isinstance(modules[i], nn.Conv2d) and isinstance(modules[i + 1], nn.BatchNorm2d):
            act = activation_name(modules[i + 2]) if i + 2 < n else None
            stop = i + 2 + (act is not None)
            chains.append(Chain(i, stop, act, why_not_fusable(modules[i], modules[i + 1])))
            i = stop
        else:
            i += 1
    return chains


class FusedSequential(nn.Sequential):
    """``nn.Sequential`` whose conv -> BatchNorm2d (-> ReLU/ReLU6/SiLU) runs go through ``fused_conv_bn``."""

    def forward(self, input):
        return self.forward_until(input, len(self._modules))

    def forward_until(self, input, stop: int):
        """The children ``0:stop`` applied in order (the fused runs that end by ``stop`` as one call each)."""
        modules = list(self._modules.values())[:stop]
        i, n = 0, len(modules)
        while i < n:
            m = modules[i]
            if i + 1 < n and isinstance(m, nn.Conv2d) and isinstance(modules[i + 1], nn.BatchNorm2d):
                act = modules[i + 2] if i + 2 < n and activation_name(modules[i + 2]) else None
                input = fused_conv_bn(input, m, modules[i + 1], act)
                i += 2 if act is None else 3
            else:
                input = m(input)
                i += 1
        return input

    def extra_repr(self) -> str:
        parts = [f"{c.start}:{c.stop}" + (f" {c.activation}" if c.activation else "")
                 + (f" (unfused: {c.why_not})" if c.why_not else "")
                 for c in find_chains(list(self._modules.values()))]
        return f"fused=[{', '.join(parts)}]"


class ConvBNAct(FusedSequential):
    """``Conv2d`` -> ``BatchNorm2d`` -> activation (``"relu"``, ``"relu6"``, ``"silu"`` or None) fused.

    Arguments as torchvision's ``Conv2dNormActivation`` (``padding=None``: ``(kernel_size - 1) // 2 *
    dilation``; no conv bias by default) plus BatchNorm's ``eps``, ``momentum``, ``affine`` and
    ``track_running_stats``; the children ``0``, ``1``, ``2`` hold the usual parameters and buffers.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=None,
                 groups: int = 1, *, activation: str | None = "relu", dilation=1, bias: bool = False,
                 padding_mode: str = "zeros", eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, inplace: bool = True, device=None,
                 dtype=None) -> None:
        if activation is not None and activation not in ACTIVATION_MODULES:
            raise ValueError(f"{type(self).__name__}: unknown activation {activation!r}; choose one of "
                             f"{sorted(ACTIVATION_MODULES)} or None")
        if padding is None:
            ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
            dl = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
            padding = tuple((k - 1) // 2 * d for k, d in zip(ks, dl))
        factory = {"device": device, "dtype": dtype}
        layers: list[nn.Module] = [
            Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                   padding_mode, **factory),
            nn.BatchNorm2d(out_channels, eps, momentum, affine, track_running_stats, **factory),
        ]
        if activation is not None:
            layers.append(ACTIVATION_MODULES[activation](inplace=inplace))
        super().__init__(*layers)
        self.out_channels = out_channels

    def forward(self, input):
        modules = self._modules
        if len(modules) == 3:
            conv, bn, act = modules.values()
            return fused_conv_bn(input, conv, bn, act)
        if len(modules) == 2:
            conv, bn = modules.values()
            return fused_conv_bn(input, conv, bn)
        return super().forward(input)  # children added or removed: the general walk


def _fixed(activation: str | None):
    """The constructor of a ConvBNAct variant: ConvBNAct's arguments, the activation fixed."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=None,
                 groups: int = 1, **kwargs) -> None:
        ConvBNAct.__init__(self, in_channels, out_channels, kernel_size, stride, padding, groups,
                           activation=activation, **kwargs)

    return __init__


class ConvBN(ConvBNAct):
    """``Conv2d`` -> ``BatchNorm2d`` (children ``0``, ``1``) fused; ``ConvBNAct`` without activation."""

    __init__ = _fixed(None)


class ConvBNReLU(ConvBNAct):
    """``Conv2d`` -> ``BatchNorm2d`` -> ``ReLU`` (children ``0``, ``1``, ``2``) fused."""

    __init__ = _fixed("relu")


class ConvBNReLU6(ConvBNAct):
    """``Conv2d`` -> ``BatchNorm2d`` -> ``ReLU6`` (children ``0``, ``1``, ``2``) fused (MobileNetV2)."""

    __init__ = _fixed("relu6")


class ConvBNSiLU(ConvBNAct):
    """``Conv2d`` -> ``BatchNorm2d`` -> ``SiLU`` (children ``0``, ``1``, ``2``) fused (EfficientNet)."""

    __init__ = _fixed("silu")


CONV_BN_CLASSES: dict[str | None, type[ConvBNAct]] = {
    None: ConvBN, "relu": ConvBNReLU, "relu6": ConvBNReLU6, "silu": ConvBNSiLU}
