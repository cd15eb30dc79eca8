"""The rule table of scripts/sass_check.py: which translation units hold each kernel family's instantiations,
and what every kernel of the family must show in ptxas' report and its SASS.

A new kernel family is one ``Family`` entry in FAMILIES; a new kernel of a family is one ``KernelRules``
(a regular expression searched in the demangled name, e.g. ``void cnnkern::dw_direct_kernel<__nv_bfloat16,
8, 1, 3, false, (cnnkern::EpiKind)0>(...)``, and its rules). Every kernel also gets GLOBAL_RULES.

``expected_fail="why"`` marks a rule today's kernels are known to break (see the kernel audit,
../shared/gpu-runs/2026-11-30-h200/kernel-audit.md, section and fix): reported as XFAIL; once it passes,
sass_check reports "now passes: remove expected_fail" so the entry gets updated.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

# ---- what a compiled kernel looks like ------------------------------------------------------------------


def op_class(op: str) -> str | None:
    """The report column of a SASS opcode (with modifiers), or None for the uncounted ones."""
    base = op.split(".")[0]
    if base == "LDGSTS":
        return "LDGSTS"
    if base == "LDG":
        return "LDG.128" if ".128" in op else "LDG"
    if base == "STG":
        return "STG.128" if ".128" in op else "STG"
    if base == "LDSM":
        return "LDSM"
    if base == "HMMA":
        return "HMMA"
    if base == "BAR":
        return "BAR"
    if base in ("LDL", "STL"):
        return "LDL/STL"
    return None


@dataclass
class KernelStats:
    mangled: str
    name: str                      # demangled (or mangled when c++filt is absent)
    source: str                    # the unit it was first compiled in
    ptxas: dict[str, int]          # regs, stack, spill_stores, spill_loads, smem, barriers
    ops: Counter                   # SASS opcode (with modifiers) -> static count

    def columns(self) -> dict[str, int]:
        out = dict.fromkeys(["LDG.128", "LDG", "STG.128", "STG", "LDGSTS", "LDSM", "HMMA", "BAR", "LDL/STL"], 0)
        for op, n in self.ops.items():
            c = op_class(op)
            if c:
                out[c] += n
        out["total"] = sum(self.ops.values())
        return out

    def count(self, what: str) -> int:
        """A report column (``LDG.128``, ``HMMA``...) or, failing that, opcodes matching a regex."""
        cols = self.columns()
        if what in cols:
            return cols[what]
        pat = re.compile(what)
        return sum(n for op, n in self.ops.items() if pat.search(op))


# ---- rules ----------------------------------------------------------------------------------------------


@dataclass
class Rule:
    name: str
    check: Callable[[KernelStats], tuple[bool, str]]
    expected_fail: str | None = None


def max_regs(limit: int, why: str, expected_fail: str | None = None) -> Rule:
    def check(ks: KernelStats) -> tuple[bool, str]:
        regs = ks.ptxas.get("regs", 0)
        return regs <= limit, f"{regs} registers > {limit}"

    return Rule(f"registers <= {limit} ({why})", check, expected_fail)


def has(what: str, at_least: int = 1, expected_fail: str | None = None) -> Rule:
    def check(ks: KernelStats) -> tuple[bool, str]:
        n = ks.count(what)
        return n >= at_least, f"{n} x {what}, expected >= {at_least}"

    return Rule(f"has {what}" + (f" x{at_least}" if at_least > 1 else ""), check, expected_fail)


def lacks(what: str, expected_fail: str | None = None) -> Rule:
    def check(ks: KernelStats) -> tuple[bool, str]:
        n = ks.count(what)
        return n == 0, f"{n} x {what}, expected none"

    return Rule(f"no {what}", check, expected_fail)


def max_smem(limit: int, expected_fail: str | None = None) -> Rule:
    def check(ks: KernelStats) -> tuple[bool, str]:
        s = ks.ptxas.get("smem", 0)
        return s <= limit, f"{s} bytes of static shared memory > {limit}"

    return Rule(f"static smem <= {limit} B", check, expected_fail)


def _no_spills(ks: KernelStats) -> tuple[bool, str]:
    st, ld = ks.ptxas.get("spill_stores", 0), ks.ptxas.get("spill_loads", 0)
    return st == 0 and ld == 0, f"{st} bytes spill stores, {ld} bytes spill loads"


def _ptxas_seen(ks: KernelStats) -> tuple[bool, str]:
    return bool(ks.ptxas) and bool(ks.ops), "missing from ptxas' report or from the SASS dump"


GLOBAL_RULES = [
    Rule("ptxas and SASS both report it", _ptxas_seen),
    Rule("no spills", _no_spills),
    lacks("LDL/STL"),
]


@dataclass
class KernelRules:
    pattern: str                   # regex searched in the demangled name
    rules: list[Rule]


@dataclass
class Source:
    """Where a family's instantiations are compiled from: the generated files csrc/cuda/<generated>_*_<dt>.cu
    (exactly what the extension builds), or an explicit-instantiation snippet mirroring a launch file that
    includes torch (name + snippet)."""

    generated: str | None = None
    name: str = ""
    snippet: str = ""


@dataclass
class Family:
    name: str
    doc: str
    sources: list[Source]
    kernels: list[KernelRules] = field(default_factory=list)


# ---- the table --------------------------------------------------------------------------------------------

SIXTEEN = r"(__half|__nv_bfloat16)"
GEMM_256 = "2 CTAs x 256 threads per SM"
AUDIT_FIX1 = "audit section 1 / ranked fix 1: GEMM mainloop rewrite (being fixed)"

# The GEMM rules conv2d and grouped pointwise share (same implicit_gemm_kernel mainloop).
def _gemm_rules(problem: str) -> list[KernelRules]:
    return [
        KernelRules(rf"implicit_gemm_kernel<cnnkern::{problem}<", [
            max_regs(128, GEMM_256),
            max_regs(85, "3 CTAs x 256 threads per SM", expected_fail=f"89-128 today; {AUDIT_FIX1}"),
            has("BAR"),
            has("LDGSTS", expected_fail=f"no cp.async today; {AUDIT_FIX1}"),
        ]),
        KernelRules(rf"implicit_gemm_kernel<cnnkern::{problem}<{SIXTEEN}", [
            has("HMMA"),
            has("LDSM", expected_fail=f"bf16 WMMA fragments load through LD.E + MOVM; {AUDIT_FIX1}"),
        ]),
    ]


FAMILIES: list[Family] = [
    Family(
        "conv2d", "implicit-GEMM conv2d fwd / dgrad / wgrad + split-K reduction",
        [Source(generated="conv2d")],
        _gemm_rules(r"Conv2d(Fwd|Dgrad|Wgrad)Problem") + [
            KernelRules(r"implicit_gemm_kernel<cnnkern::Conv2dFwdProblem<\w+, \(cnnkern::Fast\)1, [48],", [
                has("LDG.128"),
            ]),
            KernelRules(r"conv2d_wgrad_reduce_kernel<", [max_regs(64, "8 CTAs x 256 threads per SM / 2")]),
        ],
    ),
    Family(
        "depthwise_conv2d", "depthwise direct (NHWC), tiled (NCHW), weight grad",
        [Source(generated="depthwise_conv2d")],
        [
            # Vectorized channels-fast paths (V = 16 bytes): 16-byte window loads.
            KernelRules(r"dw_direct_kernel<(float, 4|__half, 8|__nv_bfloat16, 8),", [has("LDG.128")]),
            KernelRules(r"dw_direct_kernel<", [max_regs(80, "3 CTAs x 256 threads per SM")]),
            KernelRules(r"dw_tiled_kernel<", [
                max_regs(64, "4 CTAs x 256 threads per SM"),
                has("BAR"),
                has("LDGSTS", expected_fail="staging is 2-byte LDG.U16, one fastdivmod per element; audit "
                                            "section 4 (16-byte cp.async row loads)"),
            ]),
            KernelRules(r"dw_wgrad_kernel<", [max_regs(128, GEMM_256)]),
        ],
    ),
    Family(
        "group_pointwise_conv2d", "grouped 1x1 conv fwd / dgrad / wgrad (implicit GEMM, shuffle epilogue)",
        [Source(generated="group_pointwise_conv2d")],
        _gemm_rules(r"Gpw(Fwd|Dgrad|Wgrad)Problem"),
    ),
    Family(
        "conv_bn_relu", "BatchNorm normalize / backward reduce / apply elementwise kernels",
        [Source(generated="conv_bn_relu")],
        [
            KernelRules(r"bn_kernel<", [max_regs(64, "4 CTAs x 256 threads per SM")]),
            # V > 1 (16-byte access width): vector loads (every op reads 16-byte vectors).
            KernelRules(r"bn_kernel<(float, \(cnnkern::BnOp\)\d, \(cnnkern::Act\)\d, (true|false), 4|"
                        r"(__half|__nv_bfloat16), \(cnnkern::BnOp\)\d, \(cnnkern::Act\)\d, (true|false), 8),",
                        [has("LDG.128")]),
        ],
    ),
    Family(
        "channel_shuffle", "channel permutation copy: tiled channels-fast kernel + generic strided kernel",
        [Source(name="launch", snippet="""// Mirrors csrc/cuda/channel_map.cu (which includes ATen): every kernel its run<E>() can launch.
#include "conv/channel_shuffle.cuh"
namespace cnnkern {
#define CNNKERN_SASS_SHUFFLE(E, V)                                                                   \\
  template __global__ void channel_shuffle_tile_kernel<E, false>(const ChannelShuffleTileParams<E>); \\
  template __global__ void channel_shuffle_tile_kernel<E, true>(const ChannelShuffleTileParams<E>);  \\
  template __global__ void channel_shuffle_kernel<E, 1, true>(const ChannelShuffleParams<E>);        \\
  template __global__ void channel_shuffle_kernel<E, 1, false>(const ChannelShuffleParams<E>);       \\
  template __global__ void channel_shuffle_kernel<E, V, true>(const ChannelShuffleParams<E>);        \\
  template __global__ void channel_shuffle_kernel<E, V, false>(const ChannelShuffleParams<E>)
CNNKERN_SASS_SHUFFLE(uint16_t, 8);
CNNKERN_SASS_SHUFFLE(uint32_t, 4);
}  // namespace cnnkern
""")],
        [
            KernelRules(r"channel_shuffle_tile_kernel<", [
                max_regs(32, "8 CTAs x 256 threads per SM: the persistent grid assumes it"),
                has("LDG.128"), has("STG.128"), has("BAR"),
            ]),
            # The generic kernel's 16-byte paths: pixel-fast (both sides vectors) and channel-fast
            # (the unpermuted side: loads when scattering, stores when gathering; one kernel does both).
            KernelRules(r"channel_shuffle_kernel<unsigned (short, 8|int, 4), (true|false)>",
                        [has("LDG.128"), has("STG.128")]),
            KernelRules(r"channel_shuffle_kernel<", [max_regs(32, "8 CTAs x 256 threads per SM")]),
        ],
    ),
]
