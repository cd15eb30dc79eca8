"""``cnnkern.convert``: swap a model's torch convs and channel shuffles for their cnnkern twins, in place.

    report = cnnkern.convert(model)                        # every supported module
    report = cnnkern.convert(model, exclude="layer4.*")    # all but layer4's
    print(report)                                          # what was replaced, what was skipped and why
    cnnkern.convert(model, inverse=True)                   # back to torch.nn

How: the twins (``cnnkern.nn.Conv2d``, ``ConvTranspose2d``, ``ChannelShuffle``) subclass their torch class
and add no state, so a module is converted by assigning its ``__class__``. The module object stays the same
object, and with it its parameters and buffers (the very tensors), hooks, training flag, device, dtype and
state_dict keys; parents need no change and shared modules are converted once.

Which modules are converted: exactly ``torch.nn.Conv2d``, ``torch.nn.ConvTranspose2d`` and
``torch.nn.ChannelShuffle`` (also when parametrized with ``torch.nn.utils.parametrize``, e.g. the new
``weight_norm``/``spectral_norm``: the parametrization is kept on top of the twin). Every other conv
(``torch.nn.modules.conv._ConvNd``) or ``ChannelShuffle`` instance is left alone and reported as skipped:

- ``already converted``: a cnnkern module (the converter is idempotent); with ``inverse=True``, a torch one;
- ``excluded``: filtered out by ``include`` / ``exclude``;
- ``unsupported type``: Conv1d, Conv3d, ConvTranspose1d/3d (cnnkern has 2-D kernels only);
- ``subclass``: a subclass of a supported class (a user's, timm's ``Conv2dSame``, QAT modules): its class is
  its owner's code; swapping it would drop overridden methods such as ``forward`` and ``isinstance`` with it;
- ``lazy``: a ``LazyConv2d`` not yet materialized (run one forward first; it then becomes a ``Conv2d``);
- ``instance forward``: ``forward`` replaced on the instance, which would keep running instead of the twin's;
- ``unsupported dtype``: parameters or buffers not fp16/bf16/fp32/fp64 (complex, integer);
- ``TorchScript``: a ``torch.jit`` module holding one of the three runs its compiled code, whatever its
  submodules' classes are: convert before scripting. (``torch.compile`` is different: its guards see the
  class change and a model compiled before the conversion recompiles at its next call; torch 2.14.)

Only modules are converted. Functional calls inside a ``forward`` (``F.conv2d``, ``F.conv_transpose2d``,
torchvision ShuffleNetV2's ``channel_shuffle`` function) are not modules, cannot be seen here, and keep
running on PyTorch's kernels; the report lists modules only and says so.

Fusion: ``fuse=True`` also runs every conv -> BatchNorm2d (-> ReLU/ReLU6/SiLU) chain as one fused op
(``cnnkern.fuse``: Sequential children by a class swap of the Sequential, calls by attribute in a forward
through ``torch.fx``), with every state_dict key unchanged; ``report.fusion`` says what was fused and what
was not and why. ``inverse=True`` always undoes that fusion as well.

Filters: ``include`` and ``exclude`` each take a pattern or a list of patterns. A string is an ``fnmatch``
pattern (case-sensitive, ``*`` also crosses dots) matched against a module's qualified name as
``named_modules`` gives it (``""`` is the root) and the names of its ancestors, so ``"layer4"`` and
``"layer4.*"`` both select everything inside layer4. A class matches its instances (subclasses included).
A module is a candidate when ``include`` is None or matches it, and ``exclude`` does not; a module
reachable under several names is a candidate only if every name is (it is one object: converting it
converts it under every name). ``inverse=True`` applies the same rules to the cnnkern twins.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.utils import parametrize

import cnnkern.nn as cnn
from cnnkern import fuse as fusion_pass
from cnnkern.module_walk import is_candidate, patterns, qualname, walk

TWINS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: cnn.Conv2d,
    nn.ConvTranspose2d: cnn.ConvTranspose2d,
    nn.ChannelShuffle: cnn.ChannelShuffle,
}
INVERSE_TWINS = {twin: torch_cls for torch_cls, twin in TWINS.items()}
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
FUNCTIONAL_NOTE = ("only modules are converted: functional calls inside forward() (F.conv2d, "
                   "F.conv_transpose2d, F.channel_shuffle, ...) keep running on PyTorch's kernels")


class SkipReason(enum.Enum):
    ALREADY_CONVERTED = "already converted"
    EXCLUDED = "excluded"
    UNSUPPORTED_TYPE = "unsupported type"
    SUBCLASS = "subclass"
    LAZY = "lazy"
    INSTANCE_FORWARD = "instance forward"
    UNSUPPORTED_DTYPE = "unsupported dtype"
    TORCHSCRIPT = "TorchScript"


@dataclass(frozen=True)
class Replaced:
    """One module whose class was swapped. ``kernel_family`` is that of the cnnkern side (new or old)."""

    name: str
    from_class: type
    to_class: type
    kernel_family: str

    def __str__(self) -> str:
        return f"{self.name or '(root)'}: {qualname(self.from_class)} -> {qualname(self.to_class)} " \
               f"[{self.kernel_family}]"


@dataclass(frozen=True)
class Skipped:
    name: str
    module_class: type
    reason: SkipReason
    detail: str

    def __str__(self) -> str:
        return f"{self.name or '(root)'} ({qualname(self.module_class)}): {self.reason.value}: {self.detail}"


@dataclass
class ConversionReport:
    """What ``convert`` did: ``replaced`` and ``skipped`` entries, in module order."""

    inverse: bool = False
    replaced: list[Replaced] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    fusion: fusion_pass.FusionReport | None = None  # with fuse=True or inverse=True

    def skipped_for(self, reason: SkipReason) -> list[Skipped]:
        return [s for s in self.skipped if s.reason is reason]

    def family_counts(self) -> dict[str, int]:
        return dict(Counter(r.kernel_family for r in self.replaced))

    def format(self, verbose: bool = False) -> str:
        """The summary; one line per skipped module (``verbose``: also per replaced or already-done one)."""
        direction = "cnnkern -> torch.nn" if self.inverse else "torch.nn -> cnnkern"
        families = ", ".join(f"{family} {n}" for family, n in sorted(self.family_counts().items()))
        reasons = Counter(s.reason.value for s in self.skipped)
        lines = [f"cnnkern.convert ({direction}): replaced {len(self.replaced)} module(s)"
                 + (f" ({families})" if families else "") + f"; skipped {len(self.skipped)}"
                 + (f" ({', '.join(f'{r} {n}' for r, n in reasons.items())})" if reasons else "")]
        if verbose:
            lines += [f"  replaced {r}" for r in self.replaced]
        lines += [f"  skipped  {s}" for s in self.skipped
                  if verbose or s.reason is not SkipReason.ALREADY_CONVERTED]
        if self.fusion is not None:
            lines += self.fusion.format(verbose)
        lines.append(f"  note: {FUNCTIONAL_NOTE}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _base_class(module: nn.Module) -> type:
    return parametrize.type_before_parametrizations(module)


def _overridden(cls: type, base: type) -> list[str]:
    hooks = ("forward", "_conv_forward", "_output_padding")
    return [h for h in hooks if getattr(cls, h, None) is not getattr(base, h, None)]


def _skip_reason(module: nn.Module, table: dict[type, type]) -> tuple[SkipReason, str] | None:
    """Why ``module`` (a conv or shuffle not yet on the target side) cannot be swapped, or None."""
    cls = _base_class(module)
    if isinstance(module, LazyModuleMixin):
        return SkipReason.LAZY, "not materialized yet: run one forward pass first, then convert"
    if cls not in table:
        parents = [base for base in table if issubclass(cls, base)]
        if not parents:
            return SkipReason.UNSUPPORTED_TYPE, "cnnkern has 2-D conv kernels only (Conv2d, ConvTranspose2d)"
        overridden = _overridden(cls, parents[0])
        if overridden:
            return SkipReason.SUBCLASS, (f"subclass of {qualname(parents[0])} that overrides "
                                         f"{', '.join(overridden)}; swapping its class would drop that code")
        return SkipReason.SUBCLASS, (f"subclass of {qualname(parents[0])}; swapping its class would drop "
                                     f"isinstance(m, {cls.__name__}) and whatever else it adds")
    if "forward" in vars(module):
        return SkipReason.INSTANCE_FORWARD, "forward is set on the instance and would bypass the new class"
    tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    if parametrize.is_parametrized(module, "weight"):
        tensors.append(module.weight)  # computed by its parametrization, which holds the stored tensor
    bad = sorted({str(t.dtype) for t in tensors if t.dtype not in SUPPORTED_DTYPES})
    if bad:
        return SkipReason.UNSUPPORTED_DTYPE, (f"{', '.join(bad)}; cnnkern kernels take "
                                              "float16/bfloat16/float32/float64")
    return None


def _swap_class(module: nn.Module, target: type) -> None:
    if parametrize.is_parametrized(module):
        # parametrize put a generated subclass (holding the parametrized properties) above the module's
        # class; rebuild it above the target so that removing the parametrization lands on the target.
        injected = type(module)
        namespace = {k: v for k, v in vars(injected).items() if k not in ("__dict__", "__weakref__",
                                                                          "__qualname__")}
        target = type(f"Parametrized{target.__name__}", (target,), namespace)
    module.__class__ = target


def _family(module: nn.Module) -> str:
    return getattr(module, "kernel_family", "channel_shuffle")


def _scripted_twins(module: torch.jit.ScriptModule) -> int:
    names = {cls.__name__ for cls in TWINS}
    return sum(getattr(m, "original_name", None) in names for m in module.modules())


def _classify(module: nn.Module, inverse: bool) -> tuple[SkipReason, str] | bool:
    """True: a candidate to swap; False: not a module the report mentions; else why it is skipped."""
    if isinstance(module, torch.jit.ScriptModule):
        count = _scripted_twins(module)
        if not count:
            return False
        return SkipReason.TORCHSCRIPT, (f"holds {count} scripted Conv2d/ConvTranspose2d/ChannelShuffle whose "
                                        "compiled code cannot be changed; convert before torch.jit.script")
    if inverse:
        if isinstance(module, tuple(INVERSE_TWINS)):
            return True
        return _base_class(module) in TWINS and (SkipReason.ALREADY_CONVERTED, "already a torch.nn module")
    if isinstance(module, tuple(INVERSE_TWINS)):
        return SkipReason.ALREADY_CONVERTED, "already a cnnkern module"
    return isinstance(module, (_ConvNd, nn.ChannelShuffle))


def convert(model: nn.Module, include=None, exclude=None, inverse: bool = False,
            fuse: bool = False) -> ConversionReport:
    """Swap every supported torch conv / channel shuffle in ``model`` for its cnnkern twin, in place.

    ``fuse=True`` also fuses conv -> BatchNorm2d (-> activation) chains (``cnnkern.fuse``). ``inverse=True``
    swaps cnnkern twins back to their torch classes and undoes the fusion. Returns a ``ConversionReport``;
    see the module docstring for the exact rules on what is converted and on ``include`` / ``exclude``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert(): expected an nn.Module, got {type(model).__name__}")
    include = patterns(include, "include")
    exclude = patterns(exclude, "exclude")
    table = INVERSE_TWINS if inverse else TWINS
    report = ConversionReport(inverse=inverse)
    for module, names in walk(model):
        name, cls = names[0], _base_class(module)
        verdict = _classify(module, inverse)
        if verdict is False:
            continue
        if verdict is not True:
            report.skipped.append(Skipped(name, cls, *verdict))
            continue
        if not is_candidate(module, names, include, exclude):
            report.skipped.append(Skipped(name, cls, SkipReason.EXCLUDED, "filtered out by include/exclude"))
            continue
        why = _skip_reason(module, table)
        if why is not None:
            report.skipped.append(Skipped(name, cls, *why))
            continue
        before = _base_class(module)
        family = _family(module) if inverse else None
        _swap_class(module, table[before])
        report.replaced.append(Replaced(name, before, table[before], family or _family(module)))
    if fuse or inverse:
        report.fusion = (fusion_pass.unfuse if inverse else fusion_pass.fuse)(model, include, exclude)
    return report
