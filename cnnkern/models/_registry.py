"""Name -> constructor table behind ``cnnkern.models.get_model`` / ``list_models``."""

from __future__ import annotations

from collections.abc import Callable

import torch

_MODELS: dict[str, Callable[..., torch.nn.Module]] = {}


def register_model(fn: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
    if fn.__name__ in _MODELS:
        raise RuntimeError(f"cnnkern.models: a model named {fn.__name__!r} is already registered")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names accepted by ``get_model``, sorted."""
    return sorted(_MODELS)


def get_model(name: str, **kwargs) -> torch.nn.Module:
    """Build a bundled model by name, e.g. ``get_model("mobilenet_v2", num_classes=10)``."""
    try:
        fn = _MODELS[name]
    except KeyError:
        raise ValueError(f"cnnkern.models: unknown model {name!r}; available: {', '.join(list_models())}") from None
    return fn(**kwargs)
