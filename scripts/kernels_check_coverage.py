"""Does the torch-free kernel check instantiate every kernel the extension ships?

CI builds the extension for sm_90a only and the torch-free check (kernels/check/check_kernels.cu, target
cnnkern_kernels_check) for sm_80, so the check is CI's only sm_80 build of the device code. This compares the
kernel entry points of the check's objects with those of the built extension (cuobjdump -symbols, demangled):
every extension kernel must appear in a check object under the same name, except for the templates in SAMPLED,
whose many template-argument combinations the check samples: for those, each (template, element type) pair
must appear. A kernel added to csrc/ and not to the check fails here, naming the kernel.

Usage (after `pip install -e .` and `cmake --build build/emulate`):
  python scripts/kernels_check_coverage.py                  # objects under build/emulate, cnnkern/_C*.so
  python scripts/kernels_check_coverage.py --objects A.o B.o --so path/to/_C.so
Exit status: 0 covered, 1 a kernel is missing, 2 a setup error (no objects, no extension, no cuobjdump).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sass_check import demangle, find_cuobjdump, find_extension

ROOT = Path(__file__).resolve().parent.parent
# Templates whose instantiations the check samples (the depthwise direct kernel: vector width x multiplier x
# kernel size x residual x epilogue x rows, 278 in the extension). Each still needs every element type.
SAMPLED = ("dw_direct_kernel",)
# Literal template arguments: enum casts like (cnnkern::EpiKind)0, integers, booleans.
_LITERAL = re.compile(r"\([\w:]+\)-?\d+|\b-?\d+\b|\btrue\b|\bfalse\b")
_IDENT = re.compile(r"[A-Za-z_]\w*")


def entry_names(cuobjdump: str, path: Path) -> list[str]:
    """Mangled names of the kernel entry points in an object or shared library (every embedded ELF)."""
    res = subprocess.run([cuobjdump, "-symbols", str(path)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"cuobjdump -symbols {path} failed: {(res.stderr or res.stdout)[-1000:]}")
    return sorted({line.split()[-1] for line in res.stdout.splitlines() if "STO_ENTRY" in line})


def template_name(demangled: str) -> str:
    """'void cnnkern::foo_kernel<...>(...)' -> 'foo_kernel'."""
    head = demangled.split("<", 1)[0].split("(", 1)[0]
    return head.split()[-1].split("::")[-1]


def coverage_key(demangled: str) -> str:
    """The name itself; for a SAMPLED template, the template and the type names among its arguments."""
    name = template_name(demangled)
    if name not in SAMPLED:
        return demangled
    args = demangled.split("<", 1)[1] if "<" in demangled else ""
    args = args.split(">(", 1)[0]  # drop the parameter list
    types = dict.fromkeys(t for t in _IDENT.findall(_LITERAL.sub(" ", args)) if t != "cnnkern")
    return f"{name}<{', '.join(types)}, ...>"


def missing(shipped: list[str], checked: list[str]) -> list[str]:
    """Coverage keys of the shipped (demangled) kernels that no checked kernel provides."""
    have = {coverage_key(n) for n in checked}
    return sorted({coverage_key(n) for n in shipped} - have)


def default_objects() -> list[Path]:
    return sorted((ROOT / "build" / "emulate" / "CMakeFiles").glob("cnnkern_kernels_check*.dir/**/*.o"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", nargs="*", type=Path, help="the check's objects (default: build/emulate)")
    ap.add_argument("--so", type=Path, help="the built extension (default: cnnkern/_C*.so)")
    ap.add_argument("--cuobjdump", help="cuobjdump to use (default: the triton wheel's)")
    args = ap.parse_args(argv)
    objects = args.objects or default_objects()
    so = args.so or find_extension()
    cuobjdump = find_cuobjdump(args.cuobjdump)
    if not objects or so is None or cuobjdump is None:
        print(f"kernels_check_coverage: setup: objects {[str(o) for o in objects]}, extension {so}, "
              f"cuobjdump {cuobjdump}", file=sys.stderr)
        return 2
    try:
        shipped_m = entry_names(cuobjdump, so)
        checked_m = sorted({n for o in objects for n in entry_names(cuobjdump, o)})
    except RuntimeError as e:
        print(f"kernels_check_coverage: {e}", file=sys.stderr)
        return 2
    pretty = demangle(shipped_m + checked_m)
    shipped = [pretty[n] for n in shipped_m]
    gaps = missing(shipped, [pretty[n] for n in checked_m])
    covered = len({coverage_key(n) for n in shipped}) - len(gaps)
    print(f"kernels_check_coverage: {len(shipped)} kernels in {so.name}, {len(checked_m)} in the check "
          f"({', '.join(o.name for o in objects)}): {covered} of {covered + len(gaps)} keys covered "
          f"(sampled: {', '.join(SAMPLED)})")
    for g in gaps:
        print(f"MISSING  {g}")
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main())
