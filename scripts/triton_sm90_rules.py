"""What scripts/triton_sm90_check.py checks in a compiled kernel, free of the script's import-time patching
(so the tests can import it): PTX instruction-kind counts and the Hopper rule."""

from __future__ import annotations

import re

# What the Hopper code path is made of, counted in the PTX: warpgroup MMA (wgmma) against the Ampere-style
# warp MMA, TMA (bulk tensor copies) against cp.async and plain loads. A 16-bit GEMM tile that compiles to
# mma.sync on sm_90 runs at a fraction of the tensor cores' rate (issue 14).
PTX_KINDS = {"wgmma": r"\bwgmma\.mma_async", "mma_sync": r"\bmma\.sync", "tma": r"\bcp\.async\.bulk\.tensor",
             "cp_async": r"\bcp\.async\.(?:ca|cg)\.shared"}


def ptx_counts(ptx: str) -> dict:
    return {k: len(re.findall(pat, ptx)) for k, pat in PTX_KINDS.items()}


def element(r: dict) -> str:
    """The element type of a launch: that of its first tensor argument."""
    return next((v[1:] for v in r["signature"].values() if isinstance(v, str) and v.startswith("*")), "?")


def hopper_violations(results: list[dict]) -> tuple[list[str], list[str]]:
    """16-bit tiles that a warpgroup MMA can serve (>= 64 rows, >= 4 warps) must compile to wgmma, and their
    operand loads must be staged asynchronously (cp.async or TMA) by Triton's software pipeline.

    Returns (violations, known): NCHW tiles cannot be staged asynchronously today, because the pixel
    index of an NCHW gather runs through a div/mod (n, oh, ow), so Triton cannot prove the 16-byte runs a
    cp.async needs. They are listed as known, not failed; on a GPU the measured backend choice sends such
    problems to cuDNN."""
    bad, known = [], []
    for r in results:
        c = r["constexprs"]
        if not r["ok"] or element(r) not in ("fp16", "bf16") or "BLOCK_M" not in c:
            continue
        if int(c["BLOCK_M"]) < 64 or r["threads"] < 128:
            continue
        missing = [k for k in ("wgmma",) if not r.get(k)] + ([] if r.get("cp_async") or r.get("tma") else
                                                             ["cp.async/TMA"])
        if missing:
            line = f"{r['kernel']} {element(r)} [{r['config']}] {c}: no {', '.join(missing)}"
            (known if missing == ["cp.async/TMA"] and c.get("CHANNELS_LAST") == "False" else bad).append(line)
    return bad, known
