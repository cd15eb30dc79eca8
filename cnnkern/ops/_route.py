"""Which way an eager call goes, decided in well under a microsecond.

Every public function has three routes, chosen per problem signature by its cached plan:

* ``aten``: every kernel of the op would run on the reference backend, which *is* ATen, so the call is the
  ATen function itself with ATen's autograd (double backward, forward AD and vmap included).
* ``cuda``: every kernel runs on the CUDA backend and the extension registers the op with its autograd in
  C++ (``torch.ops.cnnkern_cuda.*``): one entry into C++ for dispatch, autograd, allocation and launch.
* ``python``: anything else (Triton, mixed, forward AD): a ``torch.autograd.Function`` calling the chosen
  kernels directly.

Callers that need the dispatcher to see cnnkern's own ops get them instead (``torch.ops.cnnkern.*``): while
``torch.compile``/export traces, inside a ``TorchDispatchMode`` (FlopCounterMode, fake tensors), and for
tensor subclasses. Under forward AD and functorch transforms (``torch.func.jvp``/``grad``) the python route's
Functions are used (they carry jvp formulas, and functorch lifts them); the aten route stays ATen.
"""

from __future__ import annotations

import contextlib

import torch
import torch.autograd.forward_ad as _forward_ad

_is_compiling = torch.compiler.is_compiling
_dispatch_modes = torch._C._len_torch_dispatch_stack
_functorch_active = torch._C._are_functorch_transforms_active
_Tensor = torch.Tensor


def eager(input) -> bool:
    """True when the call may bypass the dispatcher (plain tensor, no tracing, no dispatch mode)."""
    return type(input) is _Tensor and not _is_compiling() and not _dispatch_modes()


def transformed() -> bool:
    """Forward AD or a functorch transform is active: only the python route's Functions handle those (the
    C++ autograd has no jvp), and the kernels must be reached through ``Function.apply``."""
    return _forward_ad._current_level >= 0 or _functorch_active()


def needs_autograd(*tensors) -> bool:
    """Some tensor will want a gradient, or a transform may see a tangent: run under an autograd Function."""
    if _forward_ad._current_level >= 0 or _functorch_active():
        return True
    if not torch.is_grad_enabled():
        return False
    for t in tensors:
        if t is not None and t.requires_grad:
            return True
    return False


def apply(function, *args):
    """``function.apply(*args)``, through its ctx-style twin outside functorch transforms.

    A Function written with ``setup_context`` (what functorch needs) costs ~10 us more per ``apply`` in
    torch 2.14 than one whose ``forward`` takes ``ctx``: ``apply`` binds its arguments with
    ``inspect.signature`` every call. Each of cnnkern's Functions therefore has a twin (``dual_style``) with
    the same forward, setup, backward and jvp in the older form, used whenever no transform is active.
    """
    if _functorch_active():
        return function.apply(*args)
    return function.eager.apply(*args)


def dual_style(function):
    """Class decorator: attach ``function.eager``, the ctx-style twin of a ``setup_context`` Function."""

    def forward(ctx, *args):
        output = function.forward(*args)
        function.setup_context(ctx, args, output)
        return output

    namespace = {"forward": staticmethod(forward), "backward": staticmethod(function.backward)}
    if "jvp" in vars(function):
        namespace["jvp"] = staticmethod(function.jvp)
    function.eager = type(f"{function.__name__}Eager", (torch.autograd.Function,), namespace)
    return function


def hashable(value):
    """Arguments go into plan-cache keys: lists become tuples (ints, tuples and strings already hash)."""
    return tuple(value) if isinstance(value, list) else value


_CPP_OPS: dict = {}


def cpp_op(name: str):
    """``torch.ops.cnnkern_cuda.<name>`` when the extension registers it as a functional op (returning a
    tensor, with its autograd in C++), else None. Decided once per name."""
    if name not in _CPP_OPS:
        from cnnkern._ext import extension

        op = None
        if extension() is not None and hasattr(torch.ops.cnnkern_cuda, name):
            overload = getattr(torch.ops.cnnkern_cuda, name).default
            if overload._schema.returns:
                op = overload
        _CPP_OPS[name] = op
    return _CPP_OPS[name]


# Tests and the overhead benchmark force a route: 'python' with the reference kernels (otherwise only reached
# through Triton, which on the CPU means the slow interpreter), or 'cuda' on CPU tensors, where the C++ ops
# have ATen-backed CPU kernels so that the Python-to-C++ glue is tested without a GPU. Plans are cached:
# forcing clears them on the way in and out.
_forced_route: str | None = None


def route_for(backends: set, cpp_name: str | None) -> str:
    """'aten' when every kernel is the reference's, 'cuda' when every one is CUDA's and the extension has the
    op ``cpp_name`` in C++ (with its autograd), else 'python'."""
    if _forced_route == "python" or (_forced_route == "cuda" and (cpp_name is None or cpp_op(cpp_name) is None)):
        return "python"
    if _forced_route == "cuda":
        return "cuda"
    if backends == {"reference"}:
        return "aten"
    if backends == {"cuda"} and cpp_name is not None and cpp_op(cpp_name) is not None:
        return "cuda"
    return "python"


@contextlib.contextmanager
def forced_route(route: str):
    """Run every op through ``route`` ('python', or 'cuda' where the C++ op exists, else 'python') whatever
    the kernels' backends: for tests and for measuring each route's host cost on the CPU."""
    from cnnkern.ops.backend import clear_plans

    if route not in ("python", "cuda"):
        raise ValueError(f"forced_route: 'python' or 'cuda', not {route!r}")
    global _forced_route
    previous = _forced_route
    _forced_route = route
    clear_plans()
    try:
        yield
    finally:
        _forced_route = previous
        clear_plans()
