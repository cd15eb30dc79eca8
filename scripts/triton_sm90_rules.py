"""What scripts/triton_sm90_check.py checks in a compiled kernel, free of the script's import-time patching
(so the tests can import it): PTX instruction-kind counts, the Hopper rule and the rules for the sm_90 tiles."""

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


REG_NOTE_8_WARPS = 168  # registers per thread above which an 8-warp tile is reported (not failed): see below


def tile_of(r: dict) -> tuple[int, int, int, int, int] | None:
    """(BLOCK_M, BLOCK_N, BLOCK_K, warps, stages) of a compile result, None for kernels without a GEMM tile."""
    c = r["constexprs"]
    cfg = re.search(r"warps=(\d+) stages=(\d+)", r["config"])
    if cfg is None or not all(k in c for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K")):
        return None
    return int(c["BLOCK_M"]), int(c["BLOCK_N"]), int(c["BLOCK_K"]), int(cfg[1]), int(cfg[2])


def spilled_bytes(r: dict) -> int:
    """ptxas' spill count when it ran, else the stack frame (spills live there; an upper bound)."""
    if r.get("spill_stores") is not None:
        return max(r["spill_stores"], r["spill_loads"])
    return r.get("stack", 0)


def hopper_tile_violations(results: list[dict], tiles, smem_limit: int, smem_estimate) -> tuple[list[str], list[str]]:
    """The rules for the tiles sm_90 benchmarks for 16-bit operands (``tiles``, cnnkern.triton.tiles'
    HOPPER_GEMM_TILES): each 16-bit variant compiled with one must use wgmma, spill nothing, fit 255
    registers and ``smem_limit`` bytes of shared memory, and need no more shared memory than
    ``smem_estimate(tile, element, kernel)`` says (the estimate that kernel's autotune pruning drops tiles
    by: an estimate below the real need would let a tile through that fails to launch).

    A variant with USE_TMA=True must load through TMA (cp.async.bulk.tensor in its PTX).

    Returns (violations, notes). Notes: 8-warp tiles above REG_NOTE_8_WARPS registers. At 168 registers
    and below, an 8-warp CTA leaves room for a second CTA's 128-thread warpgroup (64K registers per SM), and
    the 128x256 accumulator alone is 128 fp32 registers per thread: how close a tile gets says how much
    room the pipeline has, not whether it runs, so it is reported rather than failed. NCHW variants'
    problems are notes too ("known"): their gathers are not the benchmark path (see hopper_violations)."""
    tiles = set(tiles)
    bad, notes = [], []
    for r in results:
        tile = tile_of(r) if r["ok"] else None
        if tile not in tiles or element(r) not in ("fp16", "bf16"):
            continue
        channels_last = r["constexprs"].get("CHANNELS_LAST") != "False"
        name = f"{r['kernel']} {element(r)} {tile} CHANNELS_LAST={r['constexprs'].get('CHANNELS_LAST')}"
        if r["constexprs"].get("USE_TMA") == "True":
            name += " USE_TMA"
        problems = []
        if not r.get("wgmma"):
            problems.append("no wgmma")
        if r["constexprs"].get("USE_TMA") == "True" and not r.get("tma"):
            problems.append("USE_TMA without cp.async.bulk.tensor")
        if spilled_bytes(r):
            problems.append(f"spills {spilled_bytes(r)} B")
        if r["regs"] is None or r["regs"] > 255:
            problems.append(f"{r['regs']} registers")
        if r["smem"] > smem_limit:
            problems.append(f"{r['smem']} B shared memory > {smem_limit}")
        estimate = smem_estimate(tile, element(r), r["kernel"])
        if r["smem"] > estimate:
            problems.append(f"{r['smem']} B shared memory > the pruning's estimate {estimate}")
        if problems and channels_last:
            bad.append(f"{name}: {', '.join(problems)}")
        elif problems:
            notes.append(f"known (NCHW) {name}: {', '.join(problems)}")
        elif tile[3] == 8 and r["regs"] > REG_NOTE_8_WARPS:
            notes.append(f"{name}: {r['regs']} registers (8 warps, > {REG_NOTE_8_WARPS})")
    return bad, notes


# Kernels without tl.dot whose tile, warps and register-held accumulators the host picks for the problem
# (so only real-size launches reach them): --hopper compiles each such launch of its workload and holds it to
# fma_violations.
HOPPER_FMA_KERNELS = ("_dw_wgrad_rows_kernel", "_dw_dgrad_phases_kernel")


def fma_violations(results: list[dict]) -> list[str]:
    """Each compiled variant of HOPPER_FMA_KERNELS must compile, spill nothing and fit 255 registers."""
    bad = []
    for r in results:
        if r["kernel"] not in HOPPER_FMA_KERNELS:
            continue
        name = f"{r['kernel']} {element(r)} [{r['config']}] {r['constexprs']}"
        if not r["ok"]:
            bad.append(f"{name}: failed to compile")
        elif spilled_bytes(r):
            bad.append(f"{name}: spills {spilled_bytes(r)} B")
        elif r["regs"] is None or r["regs"] > 255:
            bad.append(f"{name}: {r['regs']} registers")
    return bad
