"""setup.py's arch list: a plain 9.0 becomes 9.0a (wgmma / TMA need the arch-specific sm_90a target; sm_90a
code runs on every compute capability 9.0 GPU), 9.0+PTX and the other entries stay, the encoded list is still
shell-safe, and torch's cpp_extension turns 9.0a into compute_90a / sm_90a (checked with its own helper)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _setup_functions(*names):
    # setup.py configures the build on import; take the pure helpers out of its syntax tree instead.
    tree = ast.parse((ROOT / "setup.py").read_text())
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    assert {d.name for d in defs} == set(names)
    ns = {"re": re, "_fail": lambda msg: (_ for _ in ()).throw(SystemExit(msg))}
    exec(compile(ast.Module(body=defs, type_ignores=[]), "setup.py", "exec"), ns)  # noqa: S102 (our own setup.py)
    return [ns[n] for n in names]


@pytest.mark.parametrize("given, expect", [
    ("8.0;9.0", "8.0;9.0a"),
    ("8.0 9.0", "8.0;9.0a"),
    ("9.0", "9.0a"),
    ("9.0a", "9.0a"),
    ("9.0+PTX", "9.0+PTX"),
    ("8.0;8.6;8.9", "8.0;8.6;8.9"),
])
def test_plain_90_maps_to_90a(given, expect):
    sm90a, encode = _setup_functions("_sm90a_arch_list", "_encode_arch_list")
    assert sm90a(given) == expect
    assert encode(sm90a(given)) == expect.replace(";", ":")


def test_setup_defines_cnnkern_has_sm90a_with_90a():
    text = (ROOT / "setup.py").read_text()
    assert "archs = _sm90a_arch_list(archs)" in text and "-DCNNKERN_HAS_SM90A=1" in text


def test_torch_accepts_90a(monkeypatch):
    cpp_extension = pytest.importorskip("torch.utils.cpp_extension")
    if not hasattr(cpp_extension, "_get_cuda_arch_flags"):
        pytest.skip("torch's private arch helper moved")
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0;9.0a")
    flags = cpp_extension._get_cuda_arch_flags()
    assert "-gencode=arch=compute_90a,code=sm_90a" in flags and "-gencode=arch=compute_80,code=sm_80" in flags
