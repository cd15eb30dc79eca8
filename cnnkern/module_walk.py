"""Module walk, display names and the ``include`` / ``exclude`` filters shared by ``cnnkern.convert`` and
``cnnkern.fuse`` (the filter rules are documented in ``cnnkern.convert``)."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable

import torch
from torch import nn


def qualname(cls: type) -> str:
    module = cls.__module__
    if module.startswith("torch.nn.modules"):
        module = "torch.nn"
    elif module.startswith("cnnkern.nn"):
        module = "cnnkern.nn"
    return f"{module}.{cls.__qualname__}"


# ------------------------------------------------------------------------------------------- filters
def patterns(value, arg: str) -> list | None:
    if value is None:
        return None
    items = [value] if isinstance(value, (str, type)) else value
    if not isinstance(items, Iterable):
        raise TypeError(f"convert(): {arg} must be a name pattern, a module class, or a list of them, "
                        f"got {type(value).__name__}")
    items = list(items)
    for item in items:
        if not isinstance(item, (str, type)):
            raise TypeError(f"convert(): {arg} patterns must be str (fnmatch on module names) or module "
                            f"classes, got {item!r} ({type(item).__name__})")
    return items


def _name_matches(name: str, pattern: str) -> bool:
    """The pattern matches the name or one of its ancestors' ("a", "a.b" for "a.b.c"); "" is the root."""
    if not name:
        return fnmatch.fnmatchcase(name, pattern)
    parts = name.split(".")
    return any(fnmatch.fnmatchcase(".".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


def _matches(module: nn.Module, names: list[str], patterns: list) -> bool:
    for pattern in patterns:
        if isinstance(pattern, type):
            if isinstance(module, pattern):
                return True
        elif any(_name_matches(name, pattern) for name in names):
            return True
    return False


def is_candidate(module, names, include, exclude) -> bool:
    if include is not None and not all(_matches(module, [n], include) for n in names):
        return False
    return exclude is None or not any(_matches(module, [n], exclude) for n in names)


# -------------------------------------------------------------------------------------------- the walk
def walk(model: nn.Module):
    """(module, [names]) for each distinct module, in ``named_modules`` order; TorchScript subtrees once."""
    names: dict[int, list[str]] = defaultdict(list)
    modules: dict[int, nn.Module] = {}
    scripted: list[str] = []
    for name, module in model.named_modules(remove_duplicate=False):
        if any(name == p or name.startswith(p + ".") or p == "" for p in scripted):
            continue
        if isinstance(module, torch.jit.ScriptModule):
            scripted.append(name)
        modules.setdefault(id(module), module)
        names[id(module)].append(name)
    return [(modules[key], names[key]) for key in modules]
