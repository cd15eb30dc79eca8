"""``cnnkern.convert(model, fuse=True)``'s fusion pass: conv -> BatchNorm2d (-> ReLU/ReLU6/SiLU) chains of a
model run as one ``cnnkern.nn.fused_conv_bn`` call each, in training and in eval, in place.

No module, parameter, buffer or state_dict key moves: the pass only changes the class of the module whose
forward runs a chain, so ``load_state_dict`` (strict) of the original model's weights works before and
after, the tensors are the very same objects, and hooks, device, dtype and training flags stay.

Where chains are found:

- **Sequential children** (torchvision MobileNet's ``Conv2dNormActivation``, ShuffleNetV2's branches,
  VGG-style stacks). A Sequential that is exactly [conv, bn, act] (or [conv, bn]) becomes a
  ``ConvBNReLU`` / ``ConvBNReLU6`` / ``ConvBNSiLU`` / ``ConvBN``; a longer one with chains among its children
  becomes a ``FusedSequential``. This applies to ``nn.Sequential`` and to subclasses that add nothing but
  ``__init__`` (``Conv2dNormActivation``): a class swap would drop anything else. The original class is
  kept on the instance (``_cnnkern_unfused_class``) for ``convert(model, inverse=True)``.
- **Calls by attribute in a forward** (torchvision ResNet's ``self.relu(self.bn1(self.conv1(x)))``, where
  ``self.relu`` is used again after the residual add): the module's own forward is traced with ``torch.fx``
  (every submodule a leaf), each chain's call nodes become one ``fused_conv_bn`` call with ``get_attr`` nodes
  for the modules, and the module's class becomes a generated subclass of its class whose forward is that
  graph's code. Only that call of the shared ReLU is fused; its other uses stay. Sequential subclasses with
  their own code go this way too. The generated forward is specialised on the module's non-tensor
  attributes as they were at conversion time (``if self.downsample is not None``); a forward whose graph
  differs between training and eval is not fused. Such a module pickles only through its state_dict
  (or after ``inverse=True``); ``copy.deepcopy`` works.

What is not fused, with the reason in the report: a conv or norm of another class (subclasses, lazy or
QAT modules; ``why_not_fusable``), a conv whose output is also used elsewhere (the fused op never writes
it), a module fx cannot trace (the fx error is in the detail) or whose traced graph depends on
``self.training``, an instance-level ``forward``, chains filtered out by ``include``/``exclude`` (matched on
the conv's names; a Sequential is fused only if all its chains are included). A BatchNorm or activation
module used elsewhere too is no reason to skip: only the chain's calls change, the module objects do not.
A ReLU used only after BatchNorm's output has another user is left out of the chain (conv + BN fuse).
Modules built fused (``cnnkern.nn.ConvBNReLU``, the bundled models' blocks) are reported as already fused.
At run time ``fused_conv_bn`` still runs the modules unfused while a hook is registered on them.
"""

from __future__ import annotations

import enum
import itertools
import linecache
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from cnnkern.module_walk import is_candidate, qualname, walk
from cnnkern.nn.conv_bn import (
    CONV_BN_CLASSES,
    FusedSequential,
    activation_name,
    find_chains,
    fused_conv_bn,
    why_not_fusable,
)

UNFUSED_CLASS = "_cnnkern_unfused_class"  # instance attribute (Sequential swaps) or class attribute (fx)


class FuseSkipReason(enum.Enum):
    ALREADY_FUSED = "already fused"
    EXCLUDED = "excluded"
    NOT_FUSABLE = "not fusable"
    OUTPUT_REUSED = "conv output used elsewhere"
    UNTRACEABLE = "fx cannot trace"
    TRAINING_DEPENDENT = "forward depends on training"
    INSTANCE_FORWARD = "instance forward"


@dataclass(frozen=True)
class FusedChain:
    """One chain now run by ``fused_conv_bn``: where (``container``), which modules, and how."""

    container: str
    modules: tuple[str, ...]
    activation: str | None
    via: str  # the container's new class ("ConvBNReLU", "FusedSequential") or "fx"

    def __str__(self) -> str:
        act = f", {self.activation}" if self.activation else ""
        return f"{' -> '.join(self.modules)}: fused_conv_bn{act} [{self.via} in {self.container or '(root)'}]"


@dataclass(frozen=True)
class NotFused:
    """A chain (named by its conv) or a module (for tracing problems) left unfused, and why."""

    name: str
    reason: FuseSkipReason
    detail: str

    def __str__(self) -> str:
        return f"{self.name or '(root)'}: {self.reason.value}: {self.detail}"


@dataclass(frozen=True)
class Restored:
    """``inverse=True``: a module whose class went back to its unfused one."""

    name: str
    from_class: type
    to_class: type

    def __str__(self) -> str:
        return f"{self.name or '(root)'}: {qualname(self.from_class)} -> {qualname(self.to_class)}"


@dataclass
class FusionReport:
    inverse: bool = False
    fused: list[FusedChain] = field(default_factory=list)
    skipped: list[NotFused] = field(default_factory=list)
    restored: list[Restored] = field(default_factory=list)

    def skipped_for(self, reason: FuseSkipReason) -> list[NotFused]:
        return [s for s in self.skipped if s.reason is reason]

    def via_counts(self) -> dict[str, int]:
        return dict(Counter(c.via for c in self.fused))

    def format(self, verbose: bool = False) -> list[str]:
        if self.inverse:
            if not self.restored:
                return []
            lines = [f"unfused {len(self.restored)} module(s)"]
            return lines + [f"  restored {r}" for r in self.restored] if verbose else lines
        via = ", ".join(f"{k} {n}" for k, n in sorted(self.via_counts().items()))
        reasons = Counter(s.reason.value for s in self.skipped)
        lines = [f"fused {len(self.fused)} conv-BN chain(s)" + (f" ({via})" if via else "")
                 + f"; not fused {len(self.skipped)}"
                 + (f" ({', '.join(f'{r} {n}' for r, n in reasons.items())})" if reasons else "")]
        if verbose:
            lines += [f"  fused    {c}" for c in self.fused]
        lines += [f"  unfused  {s}" for s in self.skipped
                  if verbose or s.reason is not FuseSkipReason.ALREADY_FUSED]
        return lines

    def __str__(self) -> str:
        return "\n".join(self.format())


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# -------------------------------------------------------------------------------------- Sequentials
_CLASS_METADATA = {"__module__", "__qualname__", "__doc__", "__init__", "__annotations__", "__firstlineno__",
                   "__static_attributes__", "__dict__", "__weakref__", "__orig_bases__", "__parameters__"}


def _plain_sequential(cls: type) -> bool:
    """``nn.Sequential`` or a subclass whose classes define nothing but ``__init__``: swapping its class for a
    fused Sequential loses nothing it has."""
    if not issubclass(cls, nn.Sequential):
        return False
    for c in cls.__mro__[: cls.__mro__.index(nn.Sequential)]:
        if set(vars(c)) - _CLASS_METADATA:
            return False
    return True


def _fuse_sequential(seq: nn.Sequential, name: str, names_of, include, exclude, report: FusionReport) -> None:
    children = list(seq._modules.items())
    chains = find_chains([m for _, m in children])
    if not chains:
        return
    if "forward" in vars(seq):
        report.skipped.append(NotFused(name, FuseSkipReason.INSTANCE_FORWARD,
                                       "forward is set on the Sequential instance"))
        return
    fusable, excluded = [], []
    for c in chains:
        conv = children[c.start][1]
        if c.why_not is not None:
            report.skipped.append(NotFused(names_of(conv), FuseSkipReason.NOT_FUSABLE, c.why_not))
        elif not is_candidate(conv, names_of(conv, all_names=True), include, exclude):
            excluded.append(c)
        else:
            fusable.append(c)
    if excluded:  # a Sequential fuses all its chains or none
        for c in excluded + fusable:
            detail = "filtered out by include/exclude" if c in excluded else \
                "in a Sequential with a chain filtered out by include/exclude"
            report.skipped.append(NotFused(names_of(children[c.start][1]), FuseSkipReason.EXCLUDED, detail))
        return
    if not fusable:
        return
    whole = len(chains) == 1 and chains[0].start == 0 and chains[0].stop == len(children)
    target = CONV_BN_CLASSES[chains[0].activation] if whole and not chains[0].why_not else FusedSequential
    seq.__dict__[UNFUSED_CLASS] = type(seq)
    seq.__class__ = target
    for c in fusable:
        report.fused.append(FusedChain(name, tuple(_join(name, k) for k, _ in children[c.start:c.stop]),
                                       c.activation, target.__name__))


# ------------------------------------------------------------------------------------------------ fx
_FUNCTIONAL_ACTIVATIONS = {F.relu: "relu", torch.relu: "relu", torch.relu_: "relu", F.relu6: "relu6",
                           F.silu: "silu"}
_METHOD_ACTIVATIONS = {"relu": "relu", "relu_": "relu"}


class _OneLevelTracer(fx.Tracer):
    """Traces a module's own forward: every submodule call is a ``call_module`` leaf; ``fused_conv_bn``
    calls (modules built fused) stay calls."""

    def __init__(self):
        super().__init__(autowrap_functions=(fused_conv_bn,))

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _trace(module: nn.Module, training: bool) -> fx.Graph:
    saved = module.training
    module.training = training  # its own flag only: the children are leaves
    try:
        return _OneLevelTracer().trace(module)
    finally:
        module.training = saved


def _only_input(node: fx.Node, source: fx.Node) -> bool:
    """``node`` reads ``source`` as its first argument and otherwise only an ``inplace`` flag."""
    extra = [*node.args[1:], *(v for k, v in node.kwargs.items() if k == "inplace")]
    return (bool(node.args) and node.args[0] is source and all(isinstance(v, bool) for v in extra)
            and set(node.kwargs) <= {"inplace"})


def _activation_of(node: fx.Node, source: fx.Node, root: nn.Module):
    """(name, the argument for fused_conv_bn) when ``node`` is a fusable activation of ``source``."""
    if node.op == "call_module" and node.args == (source,) and not node.kwargs:
        name = activation_name(root.get_submodule(node.target))
        return (name, "module") if name else None
    if node.op == "call_function" and node.target in _FUNCTIONAL_ACTIVATIONS and _only_input(node, source):
        return _FUNCTIONAL_ACTIVATIONS[node.target], "name"
    if node.op == "call_method" and node.target in _METHOD_ACTIVATIONS and node.args == (source,):
        return _METHOD_ACTIVATIONS[node.target], "name"
    return None


def _graph_chains(graph: fx.Graph, root: nn.Module):
    """(conv node, bn node, act node or None, activation name, act argument kind, problem or None)."""
    for conv_node in list(graph.nodes):
        if conv_node.op != "call_module" or not isinstance(root.get_submodule(conv_node.target), nn.Conv2d):
            continue
        users = list(conv_node.users)
        norms = [u for u in users if u.op == "call_module" and u.args == (conv_node,) and not u.kwargs
                 and isinstance(root.get_submodule(u.target), nn.BatchNorm2d)]
        if not norms:
            continue
        bn_node = norms[0]
        if len(users) > 1 or len(conv_node.args) != 1 or conv_node.kwargs:
            others = ", ".join(u.name for u in users if u is not bn_node)
            problem = (FuseSkipReason.OUTPUT_REUSED, f"{conv_node.target}'s output also goes to {others}"
                       if others else f"{conv_node.target} is called with more than one argument")
            yield conv_node, bn_node, None, None, None, problem
            continue
        bn_users = list(bn_node.users)
        act = _activation_of(bn_users[0], bn_node, root) if len(bn_users) == 1 else None
        act_node = bn_users[0] if act else None
        yield conv_node, bn_node, act_node, act and act[0], act and act[1], None


_FX_CLASSES: dict[tuple[type, str], type] = {}
_counter = itertools.count()


def _fx_class(cls: type, graph: fx.Graph) -> type:
    """A subclass of ``cls`` whose forward is ``graph``'s code (one class per distinct code)."""
    code = graph.python_code(root_module="self")
    key = (cls, code.src)
    if key not in _FX_CLASSES:
        filename = f"<cnnkern.fuse {cls.__qualname__} #{next(_counter)}>"
        namespace = dict(code.globals)
        exec(compile(code.src, filename, "exec"), namespace)  # noqa: S102 - fx's own code generation
        linecache.cache[filename] = (len(code.src), None, code.src.splitlines(True), filename)  # tracebacks
        _FX_CLASSES[key] = type(cls.__name__, (cls,), {
            "forward": namespace["forward"], "__module__": cls.__module__,
            "__qualname__": f"{cls.__qualname__}[fused]", UNFUSED_CLASS: cls,
            "_cnnkern_fused_code": code.src})
    return _FX_CLASSES[key]


def _fuse_traced(module: nn.Module, name: str, names_of, include, exclude, report: FusionReport) -> None:
    if "forward" in vars(module):
        report.skipped.append(NotFused(name, FuseSkipReason.INSTANCE_FORWARD,
                                       "forward is set on the instance and would bypass the fused class"))
        return
    try:
        graph = _trace(module, module.training)
        other = _trace(module, not module.training)
    except Exception as e:  # noqa: BLE001 - any tracing failure is a reason, reported with fx's message
        msg = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        report.skipped.append(NotFused(name, FuseSkipReason.UNTRACEABLE, msg))
        return
    built = [n for n in graph.nodes if n.op == "call_function" and n.target is fused_conv_bn]
    if built:
        report.skipped.append(NotFused(name, FuseSkipReason.ALREADY_FUSED,
                                       f"its forward calls fused_conv_bn {len(built)} time(s)"))
    chains = list(_graph_chains(graph, module))
    if not chains:
        return
    if graph.python_code("self").src != other.python_code("self").src:
        report.skipped.append(NotFused(name, FuseSkipReason.TRAINING_DEPENDENT,
                                       "its traced forward differs between training and eval"))
        return
    done = []
    for conv_node, bn_node, act_node, act, kind, problem in chains:
        conv, bn = module.get_submodule(conv_node.target), module.get_submodule(bn_node.target)
        conv_name = names_of(conv)
        why = problem or ((FuseSkipReason.NOT_FUSABLE, why_not_fusable(conv, bn))
                          if why_not_fusable(conv, bn) else None)
        if why is None and not is_candidate(conv, names_of(conv, all_names=True), include, exclude):
            why = (FuseSkipReason.EXCLUDED, "filtered out by include/exclude")
        if why is not None:
            report.skipped.append(NotFused(conv_name, *why))
            continue
        last = act_node or bn_node
        with graph.inserting_before(conv_node):
            refs = [graph.get_attr(conv_node.target), graph.get_attr(bn_node.target)]
            if kind == "module":
                refs.append(graph.get_attr(act_node.target))
            elif kind == "name":
                refs.append(act)
            fused = graph.call_function(fused_conv_bn, (conv_node.args[0], *refs))
        last.replace_all_uses_with(fused)
        for node in (act_node, bn_node, conv_node):
            if node is not None:
                graph.erase_node(node)
        targets = [conv_node.target, bn_node.target] + ([act_node.target] if kind == "module" else [])
        calls = tuple(_join(name, t) for t in targets) + ((f"{act}()",) if kind == "name" else ())
        done.append(FusedChain(name, calls, act, "fx"))
    if done:
        graph.lint()
        module.__class__ = _fx_class(type(module), graph)
        report.fused.extend(done)


# ------------------------------------------------------------------------------------------- the pass
def _has_direct(module: nn.Module, cls: type) -> bool:
    return any(isinstance(m, cls) for m in module._modules.values())


def fuse(model: nn.Module, include=None, exclude=None) -> FusionReport:
    """Fuse every conv -> BatchNorm2d (-> activation) chain of ``model`` in place (module docstring)."""
    report = FusionReport()
    walked = walk(model)
    names = {id(m): n for m, n in walked}

    def names_of(module, all_names=False):
        found = names.get(id(module), ["?"])
        return found if all_names else found[0]

    for module, module_names in walked:
        name = module_names[0]
        if isinstance(module, torch.jit.ScriptModule):
            continue
        if isinstance(module, FusedSequential) or UNFUSED_CLASS in vars(type(module)):
            by_convert = UNFUSED_CLASS in vars(module) or UNFUSED_CLASS in vars(type(module))
            how = "by cnnkern.convert" if by_convert else f"built as {type(module).__name__}"
            report.skipped.append(NotFused(name, FuseSkipReason.ALREADY_FUSED, how))
        elif _plain_sequential(type(module)):
            _fuse_sequential(module, name, names_of, include, exclude, report)
        elif (type(module).forward is not nn.Module.forward and _has_direct(module, nn.Conv2d)
              and _has_direct(module, nn.BatchNorm2d)):
            _fuse_traced(module, name, names_of, include, exclude, report)
    return report


def unfuse(model: nn.Module, include=None, exclude=None) -> FusionReport:
    """Undo ``fuse``: every module it changed gets its own class back (modules built fused stay)."""
    report = FusionReport(inverse=True)
    for module, module_names in walk(model):
        original = module.__dict__.get(UNFUSED_CLASS) or vars(type(module)).get(UNFUSED_CLASS)
        if original is None or not is_candidate(module, module_names, include, exclude):
            continue
        before = type(module)
        module.__dict__.pop(UNFUSED_CLASS, None)
        module.__class__ = original
        report.restored.append(Restored(module_names[0], before, original))
    return report


__all__ = ["FuseSkipReason", "FusedChain", "FusionReport", "NotFused", "Restored", "fuse", "unfuse"]
