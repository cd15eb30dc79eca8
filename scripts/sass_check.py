"""Static check of the CUDA kernels the extension launches: ptxas resources and SASS, per kernel family.

For every family in ``scripts/sass_rules.py`` (FAMILIES), compiles the translation units that hold the
kernel instantiations the extension launches -- the generated per-dtype files ``csrc/cuda/<family>_*_<dt>.cu``
(their launch headers need only two c10 macros, replaced here by a tiny shim, so no torch is involved) or an
explicit-instantiation snippet mirroring the launch code -- for sm_90 with the extension's device flags plus
``-cubin -Xptxas -v``. Then parses ptxas' report (registers, spill stores/loads, static shared memory) and
the SASS from cuobjdump (the one the triton wheel carries: the CUDA toolkit on the CPU machines has none),
and checks every kernel against

  * the global rules: no spill stores/loads, no local-memory instructions (LDL/STL);
  * its family's rules (demangled-name pattern -> rules), e.g. a register ceiling from the occupancy target,
    HMMA in the 16-bit GEMMs, LDG.E.128 / STG.E.128 in the vectorized paths.

A rule that today's kernels are known to break (documented in the kernel audit) carries ``expected_fail``
with the reason: reported as XFAIL, not a failure. When such a rule passes it is reported as XPASS with
"now passes: remove expected_fail" (exit status 0 unless --strict), so the table tracks progress without
turning CI red. A rule whose pattern matches no compiled kernel is a failure (renamed kernel, stale table).

With --binary, the same rules read the cubins of the built extension (cnnkern/_C*.so; nvcc keeps one ELF per
translation unit and arch, named after the unit) through ``cuobjdump -res-usage`` and ``--dump-sass``: exactly
what ships, without compiling (~30 s instead of ~190 s; what CI runs). A binary keeps registers, stack frame
and shared memory but not ptxas' spill counts: the stack frame stands in for them (on 2026-12-01 the 19 kernels
with a stack frame were exactly the 19 ptxas reported spills for, frames within 24 bytes of the spill stores).

Usage:
  python scripts/sass_check.py --binary             # the built extension, every family (~30 s)
  python scripts/sass_check.py                      # compile every family, every dtype (~190 s on 2 cores)
  python scripts/sass_check.py --dtypes bf16,f32    # faster (~80 s)
  python scripts/sass_check.py --family channel_shuffle --dtypes bf16
  python scripts/sass_check.py --json out.json -j 2 --strict
Exit status: 0 when every rule holds (or is an expected failure), 1 on a violation, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sass_rules
from sass_rules import FAMILIES, Family, KernelStats

ROOT = Path(__file__).resolve().parent.parent
ARCH = "sm_90"
DTYPES = ["f32", "f16", "bf16"]  # the suffixes of the generated per-dtype files
# The shared memory cuobjdump -res-usage adds to every sm_90 kernel with any (see parse_res_usage).
SM90_RESERVED_SMEM = 1024

# setup.py's nvcc flags (tests/test_sass_check.py checks they are still there) and the macros torch's
# BuildExtension adds to every CUDA compile (they change the half/bf16 code); -std=c++20 as torch >= 2.10.
EXT_NVCC_FLAGS = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
TORCH_CUDA_DEFINES = [
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
]

# The only torch symbols the launch headers (csrc/cuda/*_launch.cuh) use: error checks on the host side,
# which does not exist in a -cubin compile but must still parse.
SHIM_HEADERS = {
    "c10/cuda/CUDAException.h": "#pragma once\n"
    "#define C10_CUDA_KERNEL_LAUNCH_CHECK() ((void)0)\n"
    "#define C10_CUDA_CHECK(x) ((void)(x))\n",
    "c10/util/Exception.h": "#pragma once\n#define TORCH_CHECK(cond, ...) ((void)(cond))\n",
}


class SetupError(RuntimeError):
    pass


# ---- parsers ------------------------------------------------------------------------------------------

_PTXAS_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(\w+)'")
_PTXAS_PROPS = re.compile(r"Function properties for (\S+)")
_PTXAS_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_USED = re.compile(r"Used (\d+) registers")
_PTXAS_SMEM = re.compile(r"(\d+) bytes smem")
_PTXAS_BARS = re.compile(r"used (\d+) barriers")


def parse_ptxas(text: str) -> dict[str, dict[str, int]]:
    """ptxas -v report -> {mangled kernel: {regs, stack, spill_stores, spill_loads, smem, barriers}}.

    Entries start at "Compiling entry function"; the spill line follows "Function properties for" and
    the register line ends each entry. Device functions compiled on their own (properties without an
    entry) are ignored; a missing smem field means 0 bytes of static shared memory."""
    out: dict[str, dict[str, int]] = {}
    cur: str | None = None
    for line in text.splitlines():
        m = _PTXAS_ENTRY.search(line)
        if m:
            cur = m.group(1)
            out[cur] = {"regs": 0, "stack": 0, "spill_stores": 0, "spill_loads": 0, "smem": 0, "barriers": 0}
            continue
        m = _PTXAS_PROPS.search(line)
        if m:
            if m.group(1) != cur:
                cur = None  # properties of a non-entry function
            continue
        if cur is None:
            continue
        m = _PTXAS_SPILL.search(line)
        if m:
            out[cur].update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
            continue
        m = _PTXAS_USED.search(line)
        if m:
            out[cur]["regs"] = int(m.group(1))
            s = _PTXAS_SMEM.search(line)
            b = _PTXAS_BARS.search(line)
            out[cur]["smem"] = int(s.group(1)) if s else 0
            out[cur]["barriers"] = int(b.group(1)) if b else 0
    return out


_SASS_FUNC = re.compile(r"^\s*Function : (\S+)")
# "/*0120*/   @!P0 LDG.E.128.CONSTANT R8, desc[UR4][R2.64] ;" -> opcode with its modifiers
# Modifiers are upper case, except the "x" of shape modifiers such as HGMMA.64x128x16.
_SASS_INSN = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+(?:x[0-9]+)*)*)")
_HGMMA_TNSP = re.compile(r"\.(tnsp[AB])\b")


def parse_sass(text: str) -> dict[str, Counter]:
    """cuobjdump --dump-sass -> {mangled kernel: Counter of opcodes with modifiers, e.g. 'LDG.E.128'}."""
    out: dict[str, Counter] = {}
    cur: Counter | None = None
    for line in text.splitlines():
        m = _SASS_FUNC.match(line)
        if m:
            cur = out.setdefault(m.group(1), Counter())
            continue
        if cur is None:
            continue
        m = _SASS_INSN.match(line)
        if m:
            op = m.group(1)
            # wgmma's operand majorness is an operand modifier (gdesc[UR4].tnspA.tnspB): kept on the opcode
            # so that rules can tell the weight gradient's MN-major operands from the forward's K-major ones.
            if op.startswith("HGMMA"):
                op += "".join(f".{t.upper()}" for t in _HGMMA_TNSP.findall(line))
            cur[op] += 1
    return out


_RES_FUNC = re.compile(r"^\s*Function (\S+):\s*$")
_RES_FIELD = re.compile(r"\b(REG|STACK|SHARED|LOCAL):(\d+)")


def parse_res_usage(text: str) -> dict[str, dict[str, int]]:
    """cuobjdump -res-usage of one cubin -> {mangled kernel: {regs, stack, smem, local}}.

    What a built binary keeps of ptxas' report: registers, stack frame, shared and local memory, not the spill
    counts (sass_rules.spill_bytes stands the stack frame in for them). SHARED counts the 1 KiB the sm_90
    toolchain reserves in every kernel that uses shared memory at all: subtracted here, so that smem means
    what ptxas -v prints (the static __shared__ bytes)."""
    out: dict[str, dict[str, int]] = {}
    cur: str | None = None
    for line in text.splitlines():
        m = _RES_FUNC.match(line)
        if m:
            cur = m.group(1)
            continue
        if cur is None:
            continue
        fields = {k: int(v) for k, v in _RES_FIELD.findall(line)}
        if "REG" in fields:
            shared = fields.get("SHARED", 0)
            out[cur] = {"regs": fields["REG"], "stack": fields.get("STACK", 0),
                        "smem": max(0, shared - SM90_RESERVED_SMEM) if shared else 0, "local": fields.get("LOCAL", 0)}
            cur = None
    return out


def demangle(names: list[str]) -> dict[str, str]:
    """Mangled -> demangled through c++filt (binutils); names stay mangled when it is absent."""
    tool = shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    res = subprocess.run([tool], input="\n".join(names) + "\n", capture_output=True, text=True, check=False)
    lines = res.stdout.splitlines()
    if res.returncode != 0 or len(lines) != len(names):
        return {n: n for n in names}
    return dict(zip(names, lines))


def merge(ptxas: dict[str, dict[str, int]], sass: dict[str, Counter], source: str) -> dict[str, KernelStats]:
    names = sorted(set(ptxas) | set(sass))
    pretty = demangle(names)
    return {
        n: KernelStats(mangled=n, name=pretty[n], source=source, ptxas=ptxas.get(n, {}), ops=sass.get(n, Counter()))
        for n in names
    }


# ---- tools and compilation -----------------------------------------------------------------------------

def find_nvcc(explicit: str | None = None) -> str | None:
    candidates = [explicit, os.path.join(os.environ.get("CUDA_HOME", ""), "bin", "nvcc"), "/usr/local/cuda/bin/nvcc",
                  shutil.which("nvcc")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def find_cuobjdump(explicit: str | None = None) -> str | None:
    """The cuobjdump shipped in the triton wheel (triton/backends/nvidia/bin/), else one on PATH."""
    if explicit:
        return explicit if os.path.isfile(explicit) else None
    try:
        import triton

        path = Path(triton.__file__).resolve().parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        if path.is_file():
            return str(path)
    except ImportError:
        pass
    return shutil.which("cuobjdump")


def write_shim(directory: Path) -> Path:
    for rel, text in SHIM_HEADERS.items():
        p = directory / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return directory


@dataclass
class Unit:
    family: str
    label: str          # what the report calls it (a path relative to the repository, or <family>.snippet)
    path: Path          # the .cu to compile
    arch: str = ARCH    # -arch (the family's: sm_90, or sm_90a for the wgmma / TMA kernels)


@dataclass
class UnitResult:
    unit: Unit
    seconds: float
    kernels: dict[str, KernelStats] = field(default_factory=dict)
    error: str | None = None


def units_for(fam: Family, dtypes: list[str], workdir: Path) -> list[Unit]:
    units = []
    for src in fam.sources:
        if src.generated:
            for dt in dtypes:
                for p in sorted((ROOT / "csrc" / "cuda").glob(f"{src.generated}_*_{dt}.cu")):
                    units.append(Unit(fam.name, str(p.relative_to(ROOT)), p, fam.arch))
        else:
            p = workdir / f"{fam.name}_{src.name}.cu"
            p.write_text(src.snippet)
            units.append(Unit(fam.name, f"{fam.name}:{src.name} (snippet)", p, fam.arch))
    return units


def compile_unit(unit: Unit, nvcc: str, cuobjdump: str, shim: Path, workdir: Path) -> UnitResult:
    start = time.monotonic()
    cubin = workdir / (re.sub(r"[^A-Za-z0-9_.]", "_", unit.label) + ".cubin")
    cmd = [nvcc, "-std=c++20", *EXT_NVCC_FLAGS, *TORCH_CUDA_DEFINES, f"-I{ROOT / 'kernels'}", f"-I{ROOT / 'csrc'}",
           f"-I{shim}", f"-arch={unit.arch}", "-cubin", "-Xptxas", "-v", "-o", str(cubin), str(unit.path)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return UnitResult(unit, time.monotonic() - start, error=(res.stderr or res.stdout)[-4000:])
    dump = subprocess.run([cuobjdump, "--dump-sass", str(cubin)], capture_output=True, text=True, check=False)
    if dump.returncode != 0:
        return UnitResult(unit, time.monotonic() - start, error=f"cuobjdump failed: {dump.stderr[-2000:]}")
    kernels = merge(parse_ptxas(res.stderr + res.stdout), parse_sass(dump.stdout), unit.label)
    return UnitResult(unit, time.monotonic() - start, kernels=kernels)


# ---- the built extension (--binary) ----------------------------------------------------------------------

# Kernels in translation units no family's sources name: checked against the global rules only.
UNCLAIMED = Family("unclaimed", "kernels of the extension's other translation units: global rules only", [])


def find_extension() -> Path | None:
    """The built extension: cnnkern/_C*.so in this checkout (an editable install), else where Python finds it."""
    hits = sorted((ROOT / "cnnkern").glob("_C*.so"))
    if hits:
        return hits[0]
    try:
        import importlib.util

        spec = importlib.util.find_spec("cnnkern._C")
    except ImportError:
        return None
    return Path(spec.origin) if spec and spec.origin else None


def binary_units(families: list[Family], dtypes: list[str], so: Path, cuobjdump: str,
                 workdir: Path) -> list[Unit]:
    """Every family's units as the cubins of the built extension: nvcc keeps one ELF per translation unit and
    arch in the fatbinary, named <stem>.<arch>.cubin. The sm_90a ELFs (setup.py builds 9.0 as 9.0a), else
    sm_90; extracted into workdir. The stems left over become UNCLAIMED units."""
    res = subprocess.run([cuobjdump, "-lelf", str(so)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SetupError(f"cuobjdump -lelf {so} failed: {(res.stderr or res.stdout)[-2000:]}")
    elfs = re.findall(r"ELF file\s+\d+:\s+(\S+)\.(sm_\w+)\.cubin", res.stdout)
    archs = {a for _, a in elfs}
    arch = next((a for a in ("sm_90a", "sm_90") if a in archs), None)
    if arch is None:
        raise SetupError(f"{so} holds no sm_90 code (archs: {sorted(archs) or 'none'}): build it with 9.0 in "
                         "TORCH_CUDA_ARCH_LIST, or check the sources instead (without --binary)")
    stems = sorted(st for st, a in elfs if a == arch)
    res = subprocess.run([cuobjdump, "-xelf", "all", str(so)], cwd=workdir, capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        raise SetupError(f"cuobjdump -xelf all {so} failed: {(res.stderr or res.stdout)[-2000:]}")

    def unit(family: str, stem: str) -> Unit:
        return Unit(family, f"csrc/cuda/{stem}.cu", workdir / f"{stem}.{arch}.cubin", arch)

    units: list[Unit] = []
    for fam in families:
        for src in fam.sources:
            if src.generated:
                pat = re.compile(rf"{re.escape(src.generated)}_.*_({'|'.join(map(re.escape, dtypes))})$")
                units += [unit(fam.name, st) for st in stems if pat.match(st)]
            elif src.binary in stems:
                units.append(unit(fam.name, src.binary))
            else:
                raise SetupError(f"family {fam.name}: no {src.binary}.{arch}.cubin in {so} (Source.binary "
                                 f"names a translation unit the extension does not build)")
    if len(families) == len(FAMILIES) and set(dtypes) == set(DTYPES):
        claimed = {u.label for u in units}
        units += [unit(UNCLAIMED.name, st) for st in stems if f"csrc/cuda/{st}.cu" not in claimed]
    return units


def read_unit(unit: Unit, cuobjdump: str) -> UnitResult:
    """One cubin of the built extension: resources from cuobjdump -res-usage, SASS from --dump-sass."""
    start = time.monotonic()
    out = []
    for flag in ("-res-usage", "--dump-sass"):
        res = subprocess.run([cuobjdump, flag, str(unit.path)], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            return UnitResult(unit, time.monotonic() - start, error=f"cuobjdump {flag} failed: {res.stderr[-2000:]}")
        out.append(res.stdout)
    return UnitResult(unit, time.monotonic() - start, kernels=merge(parse_res_usage(out[0]), parse_sass(out[1]),
                                                                    unit.label))


# ---- rules --------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    family: str
    kernel: str          # demangled name, or the pattern when it matched nothing
    rule: str
    status: str          # PASS, FAIL, XFAIL, XPASS
    detail: str = ""
    reason: str = ""     # expected_fail's reason


def evaluate(fam: Family, kernels: dict[str, KernelStats],
             dtypes: list[str] | None = None) -> tuple[list[Outcome], dict[str, list[str]]]:
    """Outcomes of every rule on every kernel of one family, and kernel -> the patterns it matched.

    A family rule named like a global rule (e.g. ``no spills`` with expected_fail) replaces that global
    rule for the kernels its pattern matches."""
    outcomes: list[Outcome] = []
    matched: dict[str, list[str]] = {k: [] for k in kernels}
    overridden: dict[str, set[str]] = {k: set() for k in kernels}
    global_names = {r.name for r in sass_rules.GLOBAL_RULES}
    for kr in fam.kernels:
        if kr.dtype and dtypes is not None and kr.dtype not in dtypes:
            continue
        pat = re.compile(kr.pattern)
        hits = [k for k, ks in kernels.items() if pat.search(ks.name)]
        if not hits:
            outcomes.append(Outcome(fam.name, kr.pattern, "pattern matches a kernel", "FAIL",
                                    "no compiled kernel matches: renamed kernel or stale table entry"))
            continue
        for k in hits:
            matched[k].append(kr.pattern)
            for rule in kr.rules:
                outcomes.append(_apply(fam.name, kernels[k], rule))
                if rule.name in global_names:
                    overridden[k].add(rule.name)
    for k, ks in kernels.items():
        for rule in sass_rules.GLOBAL_RULES:
            if rule.name not in overridden[k]:
                outcomes.append(_apply(fam.name, ks, rule))
    return outcomes, matched


def _apply(family: str, ks: KernelStats, rule: sass_rules.Rule) -> Outcome:
    ok, detail = rule.check(ks)
    if rule.expected_fail:
        status = "XPASS" if ok else "XFAIL"
    elif not ok and rule.tolerate is not None and rule.tolerate(ks):
        return Outcome(family, ks.name, rule.name, "WARN", detail, rule.tolerate_why)
    else:
        status = "PASS" if ok else "FAIL"
    return Outcome(family, ks.name, rule.name, status, detail, rule.expected_fail or "")


# ---- report -------------------------------------------------------------------------------------------

COLUMNS = ["LDG.128", "LDG", "STG.128", "STG", "LDGSTS", "LDSM", "HMMA", "BAR", "LDL/STL"]


def _short(name: str, width: int) -> str:
    name = name.replace("cnnkern::", "")
    return name if len(name) <= width else name[: width - 1] + "~"


def print_table(kernels: list[KernelStats], width: int = 96) -> None:
    head = f"{'kernel':<{width}} {'regs':>4} {'smem':>6} {'spill':>5} " + " ".join(f"{c:>7}" for c in COLUMNS)
    print(head)
    print("-" * len(head))
    for ks in kernels:
        c = ks.columns()
        spill = ks.ptxas.get("spill_stores", 0) + ks.ptxas.get("spill_loads", 0)
        print(f"{_short(ks.name, width):<{width}} {ks.ptxas.get('regs', 0):>4} {ks.ptxas.get('smem', 0):>6} "
              f"{spill:>5} " + " ".join(f"{c[col]:>7}" for col in COLUMNS))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", action="append", choices=[f.name for f in FAMILIES],
                    help="check only this family (repeatable; default: all)")
    ap.add_argument("--dtypes", default="all",
                    help="dtype suffixes of the generated files to compile (f32,f16,bf16), or 'all' (default; "
                         "526 kernels in ~130 s with -j 2 on an idle 2-core machine; bf16,f32: ~80 s)")
    ap.add_argument("--json", metavar="PATH", help="write kernels, resources, counts and rule outcomes as JSON")
    ap.add_argument("-j", "--jobs", type=int, default=int(os.environ.get("MAX_JOBS", "2")), help="parallel nvcc")
    ap.add_argument("--binary", nargs="?", const="", metavar="SO",
                    help="read the cubins of the built extension (default: cnnkern/_C*.so) instead of compiling: "
                         "exactly what ships, in ~40 s instead of ~160 s; a binary keeps no spill counts, so the "
                         "stack frame stands in for them")
    ap.add_argument("--nvcc", help="nvcc to use (default: $CUDA_HOME/bin/nvcc, /usr/local/cuda/bin/nvcc, PATH)")
    ap.add_argument("--cuobjdump", help="cuobjdump to use (default: the triton wheel's, then PATH)")
    ap.add_argument("--strict", action="store_true", help="an XPASS (expected failure that now passes) fails too")
    ap.add_argument("--quiet", action="store_true", help="print violations and the summary only")
    args = ap.parse_args(argv)

    so: Path | None = None
    nvcc: str | None = None
    if args.binary is not None:
        so = Path(args.binary) if args.binary else find_extension()
        if so is None or not so.is_file():
            print(f"sass_check: no built extension at {so or 'cnnkern/_C*.so'} (pip install -e . first, or pass "
                  "--binary PATH)", file=sys.stderr)
            return 2
    else:
        nvcc = find_nvcc(args.nvcc)
        if nvcc is None:
            print("sass_check: no nvcc (set CUDA_HOME or pass --nvcc)", file=sys.stderr)
            return 2
    cuobjdump = find_cuobjdump(args.cuobjdump)
    if cuobjdump is None:
        print("sass_check: no cuobjdump: expected triton/backends/nvidia/bin/cuobjdump next to `import triton` "
              "(install triton) or cuobjdump on PATH, or pass --cuobjdump", file=sys.stderr)
        return 2
    dtypes = list(DTYPES) if args.dtypes == "all" else [d.strip() for d in args.dtypes.split(",") if d.strip()]
    families = [f for f in FAMILIES if not args.family or f.name in args.family]

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sass_check_") as tmp:
        work = Path(tmp)
        if so is not None:
            try:
                units = binary_units(families, dtypes, so, cuobjdump, work)
            except SetupError as e:
                print(f"sass_check: {e}", file=sys.stderr)
                return 2
            with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                results = list(pool.map(lambda u: read_unit(u, cuobjdump), units))
            if any(u.family == UNCLAIMED.name for u in units):
                families = [*families, UNCLAIMED]
        else:
            shim = write_shim(work / "shim")
            units = [u for f in families for u in units_for(f, dtypes, work)]
            with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                results = list(pool.map(lambda u: compile_unit(u, nvcc, cuobjdump, shim, work), units))

    errors = [r for r in results if r.error]
    for r in errors:
        print(f"sass_check: compiling {r.unit.label} failed:\n{r.error}", file=sys.stderr)
    all_outcomes: list[Outcome] = []
    report_kernels: list[dict] = []
    for fam in families:
        kernels: dict[str, KernelStats] = {}
        for r in results:
            if r.unit.family == fam.name:
                for k, ks in r.kernels.items():
                    kernels.setdefault(k, ks)  # a kernel compiled in several units is checked once
        outcomes, matched = evaluate(fam, kernels, dtypes)
        all_outcomes += outcomes
        ordered = sorted(kernels.values(), key=lambda ks: ks.name)
        if not args.quiet and ordered:
            print(f"\n== {fam.name}: {len(ordered)} kernels ({fam.doc})")
            print_table(ordered)
        for ks in ordered:
            report_kernels.append({"family": fam.name, "kernel": ks.name, "mangled": ks.mangled, "source": ks.source,
                                   **ks.ptxas, "counts": ks.columns(), "matched": matched[ks.mangled]})
        unmatched = [ks.name for ks in ordered if not matched[ks.mangled]]
        if unmatched and not args.quiet:
            print(f"   ({len(unmatched)} kernels match no family pattern: global rules only)")

    by = Counter(o.status for o in all_outcomes)
    print()
    for o in all_outcomes:
        if o.status == "FAIL":
            print(f"FAIL  [{o.family}] {_short(o.kernel, 140)}\n      {o.rule}: {o.detail}")
    for o in all_outcomes:
        if o.status == "WARN":
            print(f"WARN  [{o.family}] {_short(o.kernel, 140)}\n      {o.rule}: {o.detail} (tolerated: {o.reason})")
    for o in all_outcomes:
        if o.status == "XPASS":
            print(f"XPASS [{o.family}] {_short(o.kernel, 140)}\n      {o.rule}: now passes: remove expected_fail "
                  f"(was: {o.reason})")
    if not args.quiet:
        seen = set()
        for o in all_outcomes:
            if o.status == "XFAIL" and (o.family, o.rule) not in seen:
                seen.add((o.family, o.rule))
                n = sum(1 for x in all_outcomes if x.status == "XFAIL" and (x.family, x.rule) == (o.family, o.rule))
                print(f"XFAIL [{o.family}] {o.rule} ({n} kernels): {o.reason}")
    elapsed = time.monotonic() - start
    print(f"\nsass_check: {len(report_kernels)} kernels from {len(results)} units in {elapsed:.0f} s: "
          f"{by['PASS']} pass, {by['FAIL']} FAIL, {by['WARN']} warn, {by['XFAIL']} xfail, {by['XPASS']} XPASS, {len(errors)} compile errors")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "arch": units[0].arch if units else ARCH, "binary": str(so) if so else None, "dtypes": dtypes,
            "families": [f.name for f in families], "seconds": round(elapsed, 1),
            "units": [{"unit": r.unit.label, "seconds": round(r.seconds, 1), "error": r.error} for r in results],
            "kernels": report_kernels,
            "outcomes": [o.__dict__ for o in all_outcomes],
        }, indent=1))
    failed = by["FAIL"] > 0 or errors or (args.strict and by["XPASS"] > 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
