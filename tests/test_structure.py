"""cnnkern's import structure: layers import downwards, and nothing imports in a circle.

The package is read with ``ast``, never imported, so a module that fails to import is still checked. Rules:

- no import circle between cnnkern modules. An import inside a function counts: deferring one end of a
  circle keeps it from failing at load time but leaves the two modules depending on each other (the three
  circles issue 11 names were all of that kind). Imports under ``if TYPE_CHECKING:`` do not count.
  ``from pkg import name`` is an edge to the submodule ``pkg.name`` when there is one, else to ``pkg``; the
  parent packages that Python initialises on the way are not edges (every submodule would close a circle
  with a package ``__init__`` that imports it).
- a Triton kernel module (``cnnkern.triton.<op>``) takes what it shares from the package ``cnnkern.triton``
  and the shared modules in ``TRITON_SHARED`` only, never from another kernel module; no module of
  ``cnnkern.triton`` reaches for another module's private (``_name``) symbol.
- ``cnnkern.problem`` is the bottom layer: it imports nothing else from cnnkern.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "cnnkern"

# Circles that exist today and are being removed (issue 11, "Structure"), each as its set of modules (one
# strongly connected component of the import graph). Empty this as they go: a listed circle that no longer
# exists fails the test too, so the list cannot go stale.
ALLOWED_CIRCLES: frozenset[frozenset[str]] = frozenset()

# Modules of cnnkern.triton that kernel modules may import (beside the package itself): the @triton.jit
# helpers and configs, and the phase-gather kernel that conv2d's input gradient and conv_transpose2d share.
TRITON_SHARED = frozenset({"cnnkern.triton.tiles", "cnnkern.triton.phase_gather"})

# Compiled extensions (setup.py builds them; a pure-Python install has none): modules, not package symbols.
EXTENSIONS = frozenset({"cnnkern._C"})


class _Import:
    """One import of a cnnkern module from another: the module it reaches, the names taken from it, whether it
    sits in a function (``deferred``), and the name it binds to the module itself, if any (``import a.b as m``,
    ``from a import b``)."""

    def __init__(self, target: str, names: tuple[str, ...], deferred: bool, line: int, bound: str | None = None):
        self.target, self.names, self.deferred, self.line, self.bound = target, names, deferred, line, bound


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).parts)
    parts[-1] = parts[-1].split(".")[0]  # conv2d.py -> conv2d, _C.cpython-311-x86_64-linux-gnu.so -> _C
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` statement names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(source: str, module: str, is_package: bool, modules: set[str]) -> list[_Import]:
    """The cnnkern modules ``module`` imports (``modules``: the names of all cnnkern modules)."""
    found: list[_Import] = []

    def owning_module(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def visit(node: ast.AST, deferred: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            deferred = True
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, deferred)
            return  # type-checking imports never run
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = owning_module(alias.name)
                if target is not None:
                    bound = alias.asname if target == alias.name else None
                    found.append(_Import(target, (), deferred, node.lineno, bound))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            symbols = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    found.append(_Import(sub, (), deferred, node.lineno, alias.asname or alias.name))
                else:
                    symbols.append(alias.name)
            target = owning_module(base)
            if symbols and target is not None:
                found.append(_Import(target, tuple(symbols), deferred, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, deferred)

    visit(ast.parse(source), False)
    return found


def _sources(root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}


SOURCES = _sources()
MODULES = set(SOURCES) | EXTENSIONS
IMPORTS = {m: _imports(p.read_text(), m, p.name == "__init__.py", MODULES) for m, p in SOURCES.items()}


def _circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected sets of more than one module (or a module importing itself), by Tarjan's method."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: set[frozenset[str]] = set()

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.add(w)
                if w == v:
                    break
            if len(scc) > 1 or v in graph.get(v, ()):
                out.add(frozenset(scc))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def _graph() -> dict[str, set[str]]:
    return {m: {i.target for i in imps if i.target != m} for m, imps in IMPORTS.items()}


def _describe(circle: frozenset[str]) -> str:
    edges = sorted({f"{m} -> {i.target}{' (in a function)' if i.deferred else ''} (line {i.line})"
                    for m in circle for i in IMPORTS.get(m, ()) if i.target in circle and i.target != m})
    return "{" + ", ".join(sorted(circle)) + "}:\n    " + "\n    ".join(edges)


def test_no_import_circles():
    found = _circles(_graph())
    msgs = [f"import circle {_describe(c)}" for c in sorted(found - ALLOWED_CIRCLES, key=sorted)]
    msgs += [f"circle {sorted(c)} no longer exists: remove it from ALLOWED_CIRCLES"
             for c in sorted(ALLOWED_CIRCLES - found, key=sorted)]
    assert not msgs, "\n".join(msgs)


def _triton_kernel_modules() -> list[str]:
    return sorted(m for m in IMPORTS if m.startswith("cnnkern.triton.") and m not in TRITON_SHARED)


@pytest.mark.parametrize("module", _triton_kernel_modules())
def test_triton_kernel_module_imports_no_other_kernel_module(module):
    bad = [f"line {i.line}: imports {i.target}" for i in IMPORTS[module]
           if i.target.startswith("cnnkern.triton.") and i.target != module and i.target not in TRITON_SHARED]
    assert not bad, (f"{module} must take shared pieces from cnnkern.triton or {sorted(TRITON_SHARED)}:\n"
                     + "\n".join(bad))


def test_triton_shared_modules_import_no_kernel_module():
    assert TRITON_SHARED <= set(IMPORTS), f"TRITON_SHARED names a missing module: {TRITON_SHARED - set(IMPORTS)}"
    kernels = set(_triton_kernel_modules())
    bad = [f"{m} line {i.line}: imports {i.target}" for m in sorted(TRITON_SHARED) for i in IMPORTS[m]
           if i.target in kernels]
    assert not bad, "\n".join(bad)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _private_uses(source: str, imports: list[_Import]) -> list[str]:
    """``from m import _x``, and ``m._x`` where ``m`` is an imported cnnkern module (by alias or full name)."""
    out = [f"line {i.line}: from {i.target} import {n}" for i in imports for n in i.names if _private(n)]
    modules = {i.bound for i in imports if i.bound} | {i.target for i in imports}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _private(node.attr) and _dotted(node.value) in modules:
            out.append(f"line {node.lineno}: {_dotted(node.value)}.{node.attr}")
    return out


@pytest.mark.parametrize("module", sorted(m for m in IMPORTS if m.startswith("cnnkern.triton")))
def test_triton_module_uses_no_private_symbol_of_another_module(module):
    others = [i for i in IMPORTS[module] if i.target != module]
    bad = _private_uses(SOURCES[module].read_text(), others)
    assert not bad, f"{module} uses private names of other modules:\n" + "\n".join(bad)


def _in_problem(module: str) -> bool:
    return module == "cnnkern.problem" or module.startswith("cnnkern.problem.")


@pytest.mark.parametrize("module", sorted(filter(_in_problem, IMPORTS)))
def test_problem_is_the_bottom_layer(module):
    bad = [f"line {i.line}: imports {i.target}" for i in IMPORTS[module] if not _in_problem(i.target)]
    assert not bad, f"{module} is the bottom layer and may import only cnnkern.problem:\n" + "\n".join(bad)


# ------------------------------------------------------------------------------- the checker's own rules
MODS = {"pkg", "pkg.a", "pkg.sub", "pkg.sub.b", "pkg.sub.c"}


@pytest.mark.parametrize("source, module, is_package, expected", [
    ("import pkg.sub.b", "pkg.a", False, [("pkg.sub.b", (), False)]),
    ("import pkg.sub.b.thing", "pkg.a", False, [("pkg.sub.b", (), False)]),
    ("from pkg.sub import b, helper", "pkg.a", False, [("pkg.sub.b", (), False), ("pkg.sub", ("helper",), False)]),
    ("from . import c", "pkg.sub.b", False, [("pkg.sub.c", (), False)]),
    ("from .c import x", "pkg.sub.b", False, [("pkg.sub.c", ("x",), False)]),
    ("from .. import a", "pkg.sub.b", False, [("pkg.a", (), False)]),
    ("from .b import x", "pkg.sub", True, [("pkg.sub.b", ("x",), False)]),
    ("def f():\n    from pkg import a", "pkg.sub.b", False, [("pkg.a", (), True)]),
    ("class K:\n    import pkg.a", "pkg.sub.b", False, [("pkg.a", (), False)]),
    ("if TYPE_CHECKING:\n    import pkg.a\nelse:\n    import pkg.sub", "pkg.sub.b", False, [("pkg.sub", (), False)]),
    ("import os\nfrom torch import nn", "pkg.a", False, []),
])
def test_import_resolution(source, module, is_package, expected):
    got = [(i.target, i.names, i.deferred) for i in _imports(source, module, is_package, MODS)]
    assert got == expected


def test_private_use_finder():
    source = "import pkg.a as m\nfrom pkg.sub import b\nfrom pkg.sub import _h\nm._x\nb._y\npkg.a._z\nm.__doc__\nm.ok\n"
    imports = _imports(source, "pkg.sub.c", False, MODS)
    assert _private_uses(source, imports) == ["line 3: from pkg.sub import _h", "line 4: m._x", "line 5: b._y",
                                              "line 6: pkg.a._z"]


def test_circle_finder():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}, "f": set()}
    assert _circles(graph) == {frozenset({"a", "b", "c"}), frozenset({"d"})}
