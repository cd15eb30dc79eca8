"""The Hopper rule of scripts/triton_sm90_check.py (--hopper) on hand-made compile results: a warpgroup-sized
16-bit tile must compile to wgmma fed by cp.async/TMA; NCHW tiles without async staging are known, not failed;
small tiles and fp32 are out of scope. The compiles themselves run in CI through the script."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from triton_sm90_rules import (
    HOPPER_FMA_KERNELS,
    fma_violations,
    hopper_tile_violations,
    hopper_violations,
    ptx_counts,
    tile_of,
)

PTX = """
    cp.async.cg.shared.global [%r1], [%rd2], 16, %r3;
    cp.async.cg.shared.global [%r4], [%rd5], 16, %r6;
    wgmma.fence.sync.aligned;
    wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%f1}, %rd7, %rd8, 1, 1, 1, 0, 1;
    wgmma.wait_group.sync.aligned 1;
    mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%f2}, {%r9}, {%r10}, {%f3};
"""


def _result(el="fp16", channels_last=True, block_m=128, threads=256, **counts):
    r = {"kernel": "_k", "ok": True, "config": "warps=8 stages=3", "threads": threads,
         "signature": {"x_ptr": f"*{el}", "N": "i32"},
         "constexprs": {"CHANNELS_LAST": str(channels_last), "BLOCK_M": str(block_m), "BLOCK_K": "64"}}
    r.update({"wgmma": 0, "mma_sync": 0, "tma": 0, "cp_async": 0})
    r.update(counts)
    return r


def test_ptx_counts_tell_the_instruction_kinds_apart():
    # wgmma.fence and wgmma.wait_group are not MMAs; cp.async.cg counts, a bulk tensor copy would be TMA.
    assert ptx_counts(PTX) == {"wgmma": 1, "mma_sync": 1, "tma": 0, "cp_async": 2}
    assert ptx_counts("cp.async.bulk.tensor.2d.shared::cluster.global [%r1], [%rd1, {%r2, %r3}];")["tma"] == 1


def test_hopper_rule():
    good = _result(wgmma=4, cp_async=24)
    no_wgmma = _result(mma_sync=8, cp_async=12)
    no_async_cl = _result(wgmma=4)
    no_async_nchw = _result(channels_last=False, wgmma=4)
    no_wgmma_nchw = _result(channels_last=False, mma_sync=8)
    tma_only = _result(wgmma=4, tma=2)
    small = _result(block_m=32, mma_sync=8)
    two_warps = _result(threads=64, mma_sync=8)
    fp32 = _result(el="fp32")
    bad, known = hopper_violations([good, no_wgmma, no_async_cl, no_async_nchw, no_wgmma_nchw, tma_only, small,
                                    two_warps, fp32])
    assert len(bad) == 3 and len(known) == 1
    assert "no wgmma" in bad[0] and "no cp.async/TMA" in bad[1] and "no wgmma" in bad[2]
    assert "'CHANNELS_LAST': 'False'" in known[0]
    assert hopper_violations([good, tma_only, small]) == ([], [])


def _tile_result(el="fp16", tile=(128, 256, 64, 8, 3), regs=160, smem=140000, spill=0, **counts):
    bm, bn, bk, warps, stages = tile
    r = _result(el=el, block_m=bm, threads=32 * warps, **{"wgmma": 4, "cp_async": 24, **counts})
    r["constexprs"].update(BLOCK_N=str(bn), BLOCK_K=str(bk))
    r.update(config=f"warps={warps} stages={stages}", regs=regs, smem=smem, spill_stores=spill, spill_loads=0,
             stack=spill)
    return r


def test_hopper_tile_rules():
    tiles = [(128, 256, 64, 8, 3), (64, 64, 64, 4, 4)]

    def estimate(tile, el, kernel):
        # "_own" stands for a kernel whose pruning counts an epilogue tile on top of the operands.
        extra = tile[0] * tile[1] * 2 if kernel == "_own" else 0
        return tile[4] * (tile[0] + tile[1]) * tile[2] * 2 + extra

    good = _tile_result()
    small = _tile_result(tile=(64, 64, 64, 4, 4), regs=90, smem=40000)
    heavy = _tile_result(regs=232)                              # a note, not a failure
    spills = _tile_result(spill=64)
    no_wgmma = _tile_result(wgmma=0, mma_sync=8)
    over_limit = _tile_result(smem=240000)
    over_estimate = _tile_result(smem=estimate((128, 256, 64, 8, 3), "fp16", "_k") + 16)
    within_own_estimate = {**over_estimate, "kernel": "_own"}  # the same need, held to its own pruning's
    not_a_hopper_tile = _tile_result(tile=(128, 128, 32, 8, 3), spill=64)  # today's list: not these rules
    fp32 = _tile_result(el="fp32", spill=64)
    failed = {**_tile_result(spill=64), "ok": False}
    nchw_spill = _tile_result(spill=64)
    nchw_spill["constexprs"]["CHANNELS_LAST"] = "False"
    tma = _tile_result(tma=2)
    tma["constexprs"]["USE_TMA"] = "True"
    tma_missing = _tile_result()
    tma_missing["constexprs"]["USE_TMA"] = "True"
    bad, notes = hopper_tile_violations([good, small, heavy, spills, no_wgmma, over_limit, over_estimate,
                                         not_a_hopper_tile, fp32, failed, nchw_spill, tma, tma_missing], tiles,
                                        232448, estimate)
    assert len(bad) == 5 and len(notes) == 2
    assert "spills 64 B" in bad[0] and "no wgmma" in bad[1]
    assert "> 232448" in bad[2] and "estimate" in bad[3]
    assert "USE_TMA without cp.async.bulk.tensor" in bad[4]
    assert "232 registers" in notes[0]
    assert notes[1].startswith("known (NCHW)") and "spills 64 B" in notes[1]
    assert hopper_tile_violations([good, small, tma, within_own_estimate], tiles, 232448, estimate) == ([], [])
    assert tile_of(good) == (128, 256, 64, 8, 3) and tile_of({"constexprs": {}, "config": "x"}) is None


def test_fma_kernel_rules():
    # The host-tiled FMA kernels at real sizes: a spill, a failed compile or > 255 registers fails; other
    # kernels (held to the GEMM rules, or to none) are not looked at.
    name = HOPPER_FMA_KERNELS[0]

    def r(**kw):
        out = {"kernel": name, "ok": True, "config": "warps=4 stages=3", "regs": 160, "spill_stores": 0,
               "spill_loads": 0, "signature": {"go_ptr": "*bf16"}, "constexprs": {"KH": "3"}}
        out.update(kw)
        return out

    good, spill, failed, regs = r(), r(spill_stores=16, spill_loads=16), r(ok=False), r(regs=None)
    other = r(kernel="_dw_wgrad_kernel", spill_stores=64, spill_loads=64)
    bad = fma_violations([good, spill, failed, regs, other])
    assert len(bad) == 3
    assert "spills 16 B" in bad[0] and "failed to compile" in bad[1] and "None registers" in bad[2]
    assert fma_violations([good, other]) == []
