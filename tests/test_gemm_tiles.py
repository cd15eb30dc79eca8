"""Which implicit-GEMM tiles a launch benchmarks (cnnkern.triton.tiles.select_gemm_tiles): a pure function of
the device capability, the operand dtype and the problem, so it is tested here on the CPU for sm_90 and sm_80
without either device. The compiled kernels' real shared memory and registers for the Hopper tiles are
checked by scripts/triton_sm90_check.py --hopper."""

from __future__ import annotations

import pytest
import torch

triton = pytest.importorskip("triton")

from cnnkern.triton import tiles
from cnnkern.triton.tiles import (
    GEMM_TILES,
    HOPPER_GEMM_TILES,
    MAX_GEMM_CONFIGS,
    SMEM_PER_BLOCK,
    gemm_tile_space,
    select_gemm_tiles,
    tile_smem_bytes,
)

H100 = (9, 0)
A100 = (8, 0)
F16 = (torch.float16, torch.bfloat16)


def _gemm(m, n, k):
    return {"GEMM_M": m, "GEMM_N": n, "GEMM_K": k}


# ResNet-50 layers as the forward implicit GEMM sees them: (batch, channels in, out, kernel, output size).
RESNET50 = {
    "3x3 64@56": (64, 64, 3, 56), "3x3 128@28": (128, 128, 3, 28), "3x3 256@14": (256, 256, 3, 14),
    "3x3 512@7": (512, 512, 3, 7), "1x1 64->256@56": (64, 256, 1, 56), "1x1 256->64@56": (256, 64, 1, 56),
    "1x1 512->128@28": (512, 128, 1, 28), "1x1 1024->256@14": (1024, 256, 1, 14),
    "1x1 512->2048@7": (512, 2048, 1, 7), "1x1 2048->512@7": (2048, 512, 1, 7),
}


def _layer(batch, c_in, c_out, k, size):
    return _gemm(batch * size * size, c_out, k * k * c_in)


def test_hopper_space_is_what_the_issue_asks_for():
    # BLOCK_K 64 throughout, 3-5 stages; the three large wgmma tiles with two warpgroups.
    assert {t[2] for t in HOPPER_GEMM_TILES} == {64}
    assert {t[4] for t in HOPPER_GEMM_TILES} <= {3, 4, 5}
    for tile in ((128, 128, 64), (128, 256, 64), (256, 128, 64)):
        assert any(t[:3] == tile and t[3] == 8 for t in HOPPER_GEMM_TILES), tile
    # wgmma: 64 rows per warpgroup, so every Hopper tile has at least 64 rows per 4 warps.
    assert all(t[0] >= 64 * (t[3] // 4) for t in HOPPER_GEMM_TILES)
    # Split-K chunks of the weight gradients are rounded to 64: every BLOCK_K must divide it.
    assert all(64 % t[2] == 0 for t in GEMM_TILES + HOPPER_GEMM_TILES)
    assert len(set(HOPPER_GEMM_TILES)) == len(HOPPER_GEMM_TILES)


@pytest.mark.parametrize("dtype", F16 + (torch.float32, torch.float64))
def test_space_by_capability_and_dtype(dtype):
    hopper_16 = dtype in F16
    assert gemm_tile_space(H100, dtype) == (HOPPER_GEMM_TILES if hopper_16 else GEMM_TILES)
    # Other devices (and an unknown one) keep today's list, whatever the dtype.
    for cap in (A100, (8, 6), (7, 0), None, (10, 0)):
        assert gemm_tile_space(cap, dtype) == GEMM_TILES


def test_smem_estimate_and_budget():
    assert tile_smem_bytes((128, 256, 64, 8, 4), torch.float16) == 4 * (384 * 64 * 2 + 16) == 196672
    assert SMEM_PER_BLOCK[H100] == 227 * 1024
    big = _gemm(1 << 20, 4096, 4096)
    for dtype in F16:
        kept = select_gemm_tiles(H100, dtype, big, max_configs=100)
        # 128x256 at 5 stages would need 240 KB: not in the list; everything listed fits.
        assert all(tile_smem_bytes(t, dtype) <= SMEM_PER_BLOCK[H100] for t in kept)
        assert kept == list(HOPPER_GEMM_TILES)
    # fp32 tiles at BLOCK_K 64 take twice the bytes: on an sm_86 (99 KB) the 128x128x64 x 3 tile (192 KB)
    # goes, on sm_90 it stays; fp64's (384 KB) goes everywhere.
    kept86 = select_gemm_tiles((8, 6), torch.float32, big, max_configs=100)
    assert (128, 128, 64, 8, 3) not in kept86 and kept86
    assert (128, 128, 64, 8, 3) in select_gemm_tiles(H100, torch.float32, big, max_configs=100)
    for cap in (H100, A100):
        kept64 = select_gemm_tiles(cap, torch.float64, big, max_configs=100)
        assert (128, 128, 64, 8, 3) not in kept64
        assert all(tile_smem_bytes(t, torch.float64) <= SMEM_PER_BLOCK[cap] for t in kept64)
    # A device-reported limit wins over the table.
    small = select_gemm_tiles(H100, torch.float16, big, smem_limit=100 * 1024, max_configs=100)
    assert small and all(tile_smem_bytes(t, torch.float16) <= 100 * 1024 for t in small)


@pytest.mark.parametrize("cap", [H100, A100])
@pytest.mark.parametrize("dtype", F16 + (torch.float32,))
@pytest.mark.parametrize("batch", [32, 256])
@pytest.mark.parametrize("layer", sorted(RESNET50))
def test_resnet50_layers_keep_a_few_fitting_tiles(cap, dtype, batch, layer):
    problem = _layer(batch, *RESNET50[layer])
    kept = select_gemm_tiles(cap, dtype, problem)
    space = gemm_tile_space(cap, dtype)
    assert 1 <= len(kept) <= MAX_GEMM_CONFIGS
    assert len(set(kept)) == len(kept) and all(t in space for t in kept)
    # In the list's order (the preference the ties fall back on).
    assert [space.index(t) for t in kept] == sorted(space.index(t) for t in kept)
    for t in kept:
        assert t[1] <= max(16, triton.next_power_of_2(problem["GEMM_N"]))
        assert tile_smem_bytes(t, dtype) <= SMEM_PER_BLOCK[cap]


def test_large_problems_benchmark_the_large_tiles_first():
    # ResNet-50 1x1 64->256 at 56x56, batch 256: 6272 tiles of 128x256, every tile shape fills the SMs evenly;
    # the list's first six (the 8-warp wgmma tiles) are benchmarked.
    kept = select_gemm_tiles(H100, torch.float16, _layer(256, *RESNET50["1x1 64->256@56"]))
    assert kept == list(HOPPER_GEMM_TILES[:MAX_GEMM_CONFIGS])
    assert all(t[3] == 8 for t in kept)


def test_small_problems_drop_tiles_that_leave_sms_idle():
    # 3x3 512@7 at batch 32: M = 1568. A 128x256 tile makes 26 programs for 132 SMs; 64-row tiles fill them.
    problem = _layer(32, *RESNET50["3x3 512@7"])
    kept = select_gemm_tiles(H100, torch.float16, problem)
    assert (128, 256, 64, 8, 3) not in kept and (256, 128, 64, 8, 3) not in kept
    assert any(t[0] == 64 for t in kept)
    # On one SM (a made-up device) no SM idles: the tiles that fetch the fewest bytes per flop win.
    assert (128, 256, 64, 8, 3) in select_gemm_tiles(H100, torch.float16, problem, sms=1)


def test_problem_size_pruning():
    # 64 output channels: no tile wider than 64 columns; a 20-pixel problem keeps only the 32-row tile.
    kept = select_gemm_tiles(H100, torch.float16, _gemm(1 << 16, 64, 576))
    assert kept and all(t[1] <= 64 for t in kept)
    assert select_gemm_tiles(A100, torch.float16, _gemm(20, 40, 36)) == [(32, 64, 32, 4, 4)]
    # Nothing fits (Hopper tiles start at 64 rows): the smallest tile is kept rather than none.
    assert select_gemm_tiles(H100, torch.float16, _gemm(8, 8, 8)) == [(64, 32, 64, 4, 4)]
    assert select_gemm_tiles(A100, torch.float16, _gemm(8, 8, 8)) == [(64, 32, 16, 2, 4)]


def test_prune_hook_reads_device_dtype_and_problem(monkeypatch):
    """prune_gemm (the autotuners' early_config_prune) asks select_gemm_tiles for the launch's device and
    first tensor's dtype, and returns the matching Config objects of the union list."""
    configs = [triton.Config({"BLOCK_M": t[0], "BLOCK_N": t[1], "BLOCK_K": t[2]}, num_warps=t[3],
                             num_stages=t[4]) for t in dict.fromkeys(GEMM_TILES + HOPPER_GEMM_TILES)]
    x = torch.empty(2, dtype=torch.bfloat16)
    args = {"x_ptr": x, "w_ptr": x, **_layer(256, *RESNET50["3x3 256@14"])}
    for cap in (H100, A100):
        monkeypatch.setattr(tiles, "device_capability", lambda t, cap=cap: cap)
        monkeypatch.setattr(tiles, "device_limits", lambda t, cap=cap: (SMEM_PER_BLOCK[cap], 132))
        kept = tiles.prune_gemm(configs, args)
        assert [tiles.tile_key(c) for c in kept] == select_gemm_tiles(cap, torch.bfloat16, args)
    # A single (interpreter) config is never pruned.
    assert tiles.prune_gemm(configs[:1], args) == configs[:1]
    # CPU tensors: no capability, today's list.
    monkeypatch.undo()
    kept = tiles.prune_gemm(configs, args)
    assert [tiles.tile_key(c) for c in kept] == select_gemm_tiles(None, torch.bfloat16, args)


def test_portable_kernels_keep_todays_tiles_on_sm90():
    # The grouped pointwise GEMMs: today's list on sm_90 too (their 128x64x64 4-warp tile spills there).
    problem = _layer(256, *RESNET50["1x1 64->256@56"])
    for cap in (H100, A100, None):
        assert gemm_tile_space(cap, torch.float16, hopper=False) == GEMM_TILES
        kept = select_gemm_tiles(cap, torch.float16, problem, hopper=False)
        assert kept and all(t in GEMM_TILES for t in kept)
