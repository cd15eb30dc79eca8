"""The public ops: one module per family (``cnnkern.problem.FAMILIES``), each exporting its ``__all__``,
plus the backend controls. Adding an op adds its module to that one list; nothing here changes."""

import importlib as _importlib

from cnnkern.ops.backend import available_backends, backend_status, last_choice, use_backend
from cnnkern.problem import FAMILIES as _FAMILIES

__all__ = ["available_backends", "backend_status", "last_choice", "use_backend"]
for _family in _FAMILIES:
    _module = _importlib.import_module(f"cnnkern.ops.{_family}")
    for _name in _module.__all__:
        globals()[_name] = getattr(_module, _name)
    __all__ += _module.__all__
