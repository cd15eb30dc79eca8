"""What the Triton kernel modules share: @triton.jit tile helpers, autotune configs and pruning, launch flags.

Every kernel module takes its shared pieces from here (and the device/dtype checks from the package), never
from another kernel module: the kernel modules stay leaves of the import graph, so one can change without
reaching into another's private names (tests/test_structure.py keeps it so). The one kernel two ops launch,
the stride-phase gather, has its own module (phase_gather.py) built on this one.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from cnnkern.problem import memory
from cnnkern.problem.conv2d import Conv2dSpec
from cnnkern.problem.conv_bn import check_activation
from cnnkern.triton import interpreting, needs_int64


# ------------------------------------------------------------------------------- autotune configs, keys
def cfg(warps: int, **blocks) -> triton.Config:
    return triton.Config(blocks, num_warps=warps)


# Implicit-GEMM tiles (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages), each list in order of preference: when
# more than MAX_GEMM_CONFIGS fit a problem equally well, the first ones are benchmarked.
GEMM_TILES = (
    (128, 128, 32, 8, 3),
    (128, 64, 32, 4, 4),
    (64, 128, 32, 4, 4),
    (64, 64, 32, 4, 4),
    (128, 128, 64, 8, 3),
    (64, 64, 64, 4, 3),
    (128, 32, 32, 4, 4),
    (32, 64, 32, 4, 4),
    (64, 32, 16, 2, 4),
)
# sm_90, 16-bit operands: warpgroup MMA (wgmma) wants M in multiples of 64 per warpgroup and a deep K step,
# so BLOCK_K is 64 throughout (one 128-byte swizzled row of 16-bit elements per operand row) and the large
# tiles run two warpgroups (8 warps). 3-5 stages hide the global-load latency behind the MMA; the 128x256 /
# 256x128 tiles stop at 4 (5 would need 240 KB of shared memory, past the 227 KB a block may use). The
# 64-row tiles are for problems too small to give every SM a large tile.
HOPPER_GEMM_TILES = (
    (128, 256, 64, 8, 3),
    (256, 128, 64, 8, 3),
    (128, 128, 64, 8, 4),
    (128, 256, 64, 8, 4),
    (256, 128, 64, 8, 4),
    (128, 128, 64, 8, 5),
    (128, 64, 64, 4, 4),
    (256, 64, 64, 8, 3),
    (128, 64, 64, 4, 5),
    (64, 128, 64, 4, 4),
    (64, 64, 64, 4, 4),
    (64, 64, 64, 4, 5),
    (64, 32, 64, 4, 4),
)
MAX_GEMM_CONFIGS = 6
# Shared memory one block may opt into, by compute capability (cudaDevAttrMaxSharedMemoryPerBlockOptin);
# used when the device cannot be asked (tests, the static check). 99 KB for capabilities not listed.
SMEM_PER_BLOCK = {(7, 0): 98304, (8, 0): 166912, (8, 6): 101376, (8, 7): 166912, (8, 9): 101376,
                  (9, 0): 232448}
DEFAULT_SMS = 132  # H100 SXM / H200; only used when the device cannot be asked
# Tensor-core flops one SM does per byte it can fetch from L2: H200 ~790 TFLOP/s / 132 SMs against an L2
# bandwidth of roughly 75 GB/s per SM (an estimate, not a measurement; A100 is about 60). Ranks tiles only.
L2_FLOP_PER_BYTE = 80


def tile_key(config: triton.Config) -> tuple[int, int, int, int, int]:
    k = config.kwargs
    return (k["BLOCK_M"], k["BLOCK_N"], k["BLOCK_K"], config.num_warps, config.num_stages)


def gemm_configs(interpreter_blocks: tuple[int, int, int] = (16, 16, 16), pre_hook=None,
                 hopper: bool = True) -> list[triton.Config]:
    """Implicit-GEMM tiles (BLOCK_M, BLOCK_N, BLOCK_K): every tile of every device's list. Which of them a
    launch benchmarks is ``select_gemm_tiles``'s choice (``GEMM_PRUNE``), per device, dtype and problem.

    The interpreter executes every program on the CPU, one operation at a time: a single tile keeps CI fast,
    its size chosen per kernel (``interpreter_blocks``). ``pre_hook``: the configs' launch hook (sets the
    block shape of a tensor-descriptor argument to the config's tile). ``hopper=False``: today's list only,
    on every device (with ``GEMM_PRUNE_PORTABLE``).
    """
    if interpreting():
        bm, bn, bk = interpreter_blocks
        return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=1, pre_hook=pre_hook)]
    tiles = list(dict.fromkeys(GEMM_TILES + (HOPPER_GEMM_TILES if hopper else ())))
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=warps, num_stages=stages,
                          pre_hook=pre_hook) for bm, bn, bk, warps, stages in tiles]


def is_hopper(capability) -> bool:
    return capability is not None and capability[0] == 9


def gemm_tile_space(capability, dtype: torch.dtype, hopper: bool = True) -> tuple:
    """The tiles a device benchmarks for one operand dtype: the Hopper list for 16-bit operands on sm_90
    (wgmma), today's list everywhere else, fp32/fp64 included (they multiply on FMA units, not wgmma), and
    for the kernels that keep it everywhere (``hopper=False``)."""
    if hopper and is_hopper(capability) and dtype in (torch.float16, torch.bfloat16):
        return HOPPER_GEMM_TILES
    return GEMM_TILES


def tile_smem_bytes(tile, dtype: torch.dtype) -> int:
    """Shared memory of a tile's operand pipeline: one A (BLOCK_M x BLOCK_K) and one B (BLOCK_K x BLOCK_N)
    buffer per stage, plus 16 B per stage for the mbarrier a TMA-fed stage waits on (8 B; what Triton 3.6/3.8
    allocates for the sm_90 tiles is exactly operands + 8 B per stage with TMA, operands alone without, and
    the epilogue reuses the buffers). scripts/triton_sm90_check.py --hopper fails if a compiled tile needs
    more than this."""
    bm, bn, bk, _warps, stages = tile
    return stages * ((bm + bn) * bk * dtype.itemsize + 16)


def select_gemm_tiles(capability, dtype: torch.dtype, problem: dict, *, smem_limit: int | None = None,
                      sms: int | None = None, max_configs: int = MAX_GEMM_CONFIGS, floor: int = 16,
                      hopper: bool = True) -> list:
    """The tiles one launch benchmarks: a pure function of the device (``capability``, None when unknown),
    the operand dtype and the problem's GEMM sizes ``{"GEMM_M", "GEMM_N", "GEMM_K"}``.

    1. the device's list for the dtype (``gemm_tile_space``, with ``hopper``);
    2. tiles whose operand pipeline exceeds the shared memory a block may use are dropped (fp32/fp64 tiles
       at BLOCK_K 64 and 3+ stages, 128x256 at 5 stages): compiling them only to fail costs tuning time;
    3. tiles far larger than the problem are dropped (a block up to the next power of two of its size);
    4. at most ``max_configs`` remain: those with the least estimated time on the busiest SM, i.e. waves of
       tiles over ``sms`` SMs x a tile's time, the larger of its MMA work and its operand traffic at
       ``L2_FLOP_PER_BYTE`` (a 128x256 tile on a problem of 26 such tiles leaves 106 SMs idle; a 64x64 tile
       waits on L2 for 2.5x its MMA time); within 10% of the best, in list order (larger, deeper tiles
       first).
    If nothing fits, the smallest tile of the list is kept.
    """
    space = gemm_tile_space(capability, dtype, hopper)
    if smem_limit is None:
        smem_limit = SMEM_PER_BLOCK.get(tuple(capability) if capability else None, 101376)
    sms = sms or DEFAULT_SMS
    caps = {i: max(floor, triton.next_power_of_2(int(problem[name])))
            for i, name in enumerate(("GEMM_M", "GEMM_N", "GEMM_K"))}
    kept = [t for t in space if tile_smem_bytes(t, dtype) <= smem_limit and all(t[i] <= c for i, c in caps.items())]
    if not kept:
        return [min(space, key=lambda t: (t[0] * t[1] * t[2], t[4]))]

    def busiest_sm(tile):
        bm, bn = tile[0], tile[1]
        tiles = triton.cdiv(int(problem["GEMM_M"]), bm) * triton.cdiv(int(problem["GEMM_N"]), bn)
        # Per K element a tile does 2*bm*bn flops and fetches (bm + bn) operand elements from L2: whichever
        # takes longer on one SM sets the tile's time.
        return triton.cdiv(tiles, sms) * max(2 * bm * bn, L2_FLOP_PER_BYTE * (bm + bn) * dtype.itemsize)

    # Within 10% of the best counts as even (the model is rough, the autotuner measures): those go in list
    # order, the rest by their estimate.
    best = min(busiest_sm(t) for t in kept)
    order = sorted(range(len(kept)), key=lambda i: (max(0, busiest_sm(kept[i]) - 1.1 * best), i))[:max_configs]
    return [kept[i] for i in sorted(order)]


def device_capability(t) -> tuple[int, int] | None:
    """(major, minor) of a CUDA tensor's device; None for other devices (the interpreter's CPU tensors)."""
    if not isinstance(t, torch.Tensor) or t.device.type != "cuda":
        return None
    return torch.cuda.get_device_capability(t.device)


def device_limits(t) -> tuple[int | None, int | None]:
    """(shared memory a block may opt into, SM count) of a CUDA tensor's device; Nones elsewhere."""
    if not isinstance(t, torch.Tensor) or t.device.type != "cuda":
        return None, None
    props = torch.cuda.get_device_properties(t.device)
    return getattr(props, "shared_memory_per_block_optin", None), props.multi_processor_count


def _first_tensor(named_args: dict):
    return next((v for v in named_args.values() if isinstance(v, torch.Tensor)), None)


def prune_gemm(configs, named_args, hopper: bool = True, **kwargs):
    """``early_config_prune`` of the implicit GEMMs: ``select_gemm_tiles`` for the device and dtype of the
    launch's first tensor (its A operand) and the GEMM_M/N/K arguments."""
    if len(configs) <= 1:
        return configs
    t = _first_tensor(named_args)
    smem, sms = device_limits(t)
    problem = {name: named_args[name] for name in ("GEMM_M", "GEMM_N", "GEMM_K")}
    chosen = set(select_gemm_tiles(device_capability(t), t.dtype, problem, smem_limit=smem, sms=sms,
                                   hopper=hopper))
    return [c for c in configs if tile_key(c) in chosen] or configs[-1:]


def prune_gemm_portable(configs, named_args, **kwargs):
    """``prune_gemm`` over today's list on every device, sm_90 included."""
    return prune_gemm(configs, named_args, hopper=False)


def prune_to_problem(block_of: dict[str, str], floor: int = 16):
    """An ``early_config_prune`` dropping tiles far larger than the problem: they only waste autotuning time.

    ``block_of`` maps a block size to the kernel argument it tiles; a block is kept up to that argument's
    next power of two (at least ``floor``). If nothing fits, the last (smallest) config is kept.
    """

    def prune(configs, named_args, **kwargs):
        caps = {block: max(floor, triton.next_power_of_2(named_args[arg])) for block, arg in block_of.items()}
        kept = [c for c in configs if all(c.kwargs[block] <= cap for block, cap in caps.items())]
        return kept or configs[-1:]

    return prune


GEMM_PRUNE = {"early_config_prune": prune_gemm}
# The grouped pointwise GEMMs (group_pointwise_conv2d.py) keep today's tiles on sm_90 too: compiled for sm_90
# (scripts/triton_sm90_check.py --hopper), their 128x64x64 4-warp tile reaches 255 registers and spills
# (4 B per thread channels_last, ~1 KB NCHW bf16), and their benchmark layers are not the issue-14 ones.
GEMM_PRUNE_PORTABLE = {"early_config_prune": prune_gemm_portable}
# Autotune key of the conv2d implicit GEMMs (direct forward/weight grad and the phase gather).
CONV_GEMM_KEY = ["GEMM_M", "GEMM_N", "GEMM_K", "KH", "KW", "CHANNELS_LAST"]


# ------------------------------------------------------------------------------------- @triton.jit helpers
@triton.jit
def tile_offsets(pid_m, pid_n, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, INT64: tl.constexpr):
    """Row and column indices of tile (pid_m, pid_n), widened when an offset could pass int32."""
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if INT64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
    return offs_m, offs_n


@triton.jit
def pix(p, OH, OW):
    """Flattened pixel index -> (n, oh, ow)."""
    ohw = OH * OW
    n = p // ohw
    rem = p % ohw
    return n, rem // OW, rem % OW


@triton.jit
def mma(acc, a, b, UPCAST: tl.constexpr, IEEE: tl.constexpr):
    if UPCAST:
        # The interpreter's bf16 dot is wrong (triton 3.8); fp32 is exact for bf16 products.
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    # out_dtype=acc.dtype: triton < 3.8 defaults it to fp32 and asserts that acc has that dtype, so an fp64
    # accumulator fails to compile there (compiled and interpreted alike); 3.8 takes acc's dtype itself.
    if IEEE:
        return tl.dot(a, b, acc, input_precision="ieee", out_dtype=acc.dtype)
    return tl.dot(a, b, acc, out_dtype=acc.dtype)


@triton.jit
def tap_mma(acc, x_ptr, x_pix, ok, sxc, w_ptr, w_tap, swc, C, mask_n, UPCAST: tl.constexpr, IEEE: tl.constexpr,
            BLOCK_K: tl.constexpr):
    """acc += x[pixels, c] @ w[c, cols] over the C channels of one kernel tap, BLOCK_K at a time."""
    offs_k = tl.arange(0, BLOCK_K)
    for c0 in range(0, C, BLOCK_K):
        c = c0 + offs_k
        mask_c = c < C
        a = tl.load(x_ptr + x_pix[:, None] + c[None, :] * sxc, mask=ok[:, None] & mask_c[None, :], other=0.0)
        b = tl.load(w_ptr + w_tap[None, :] + c[:, None] * swc, mask=mask_c[:, None] & mask_n[None, :], other=0.0)
        acc = mma(acc, a, b, UPCAST, IEEE)
    return acc


@triton.jit
def conv_taps_mma(acc, x_ptr, x_row, ih0, iw0, mask_m, H, W, dil_h, dil_w, sxh, sxw, sxc, w_ptr, w_col, swh, sww,
                  swc, C, mask_n, w_desc, n0, KH: tl.constexpr, KW: tl.constexpr, UPCAST: tl.constexpr,
                  IEEE: tl.constexpr, USE_TMA: tl.constexpr, BLOCK_K: tl.constexpr):
    """acc += sum over the KH x KW taps and the C channels of x[pixel at the tap, c] @ w[c, tap, cols].

    One flat loop over (tap, channel block) rather than a channel loop per unrolled tap: Triton software-
    pipelines a loop (num_stages: cp.async on sm_80, async wgmma on sm_90), and the per-tap loops of a
    64-channel layer have two iterations each, too short to fill a pipeline. The tap's coordinates and
    bounds are recomputed per iteration (a few integer ops on BLOCK_M lanes, next to a BLOCK_M x BLOCK_N x
    BLOCK_K MMA).

    USE_TMA: the weight tile comes through ``w_desc`` (``weight_descriptor``: the (taps, C_out, C_in) view
    of a K-contiguous weight), one TMA copy per stage instead of BLOCK_N x BLOCK_K / 8 cp.async by every
    thread; ``n0`` is the tile's first output channel. Channels past C_in and rows past C_out come back as
    zeros from the copy itself; rows of the next group (groups > 1) only reach the masked columns."""
    offs_k = tl.arange(0, BLOCK_K)
    c_blocks = tl.cdiv(C, BLOCK_K)
    for kk in range(KH * KW * c_blocks):
        tap = kk // c_blocks
        c0 = (kk - tap * c_blocks) * BLOCK_K
        c = c0 + offs_k
        r = tap // KW
        s = tap - r * KW
        ih = ih0 + r * dil_h
        iw = iw0 + s * dil_w
        ok = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        mask_c = c < C
        a = tl.load(x_ptr + (x_row + ih * sxh + iw * sxw)[:, None] + c[None, :] * sxc,
                    mask=ok[:, None] & mask_c[None, :], other=0.0)
        if USE_TMA:
            b = tl.trans(tl.reshape(w_desc.load([tap, n0, c0]), (w_desc.block_shape[1], BLOCK_K)))
        else:
            b = tl.load(w_ptr + (w_col + r * swh + s * sww)[None, :] + c[:, None] * swc,
                        mask=mask_c[:, None] & mask_n[None, :], other=0.0)
        acc = mma(acc, a, b, UPCAST, IEEE)
    return acc


@triton.jit
def add_per_channel(acc, v_ptr, co, mask_n, ENABLED: tl.constexpr, ACC_DTYPE: tl.constexpr):
    """acc[:, j] += v[co[j]] (a bias or folded-BN shift), when ENABLED."""
    if ENABLED:
        acc += tl.load(v_ptr + co, mask=mask_n, other=0.0).to(ACC_DTYPE)[None, :]
    return acc


@triton.jit
def store_tile(y_ptr, pix_off, co, syc, acc, mask_m, mask_n):
    """y[pixels, co] = acc, in y's dtype (rows are pixel offsets, columns channel indices)."""
    y_off = pix_off[:, None] + (co * syc)[None, :]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def bias_store(acc, b_ptr, y_ptr, pix_off, co, syc, mask_m, mask_n, HAS_BIAS: tl.constexpr,
               ACC_DTYPE: tl.constexpr):
    """y[pixels, co] = acc (+ bias[co]), in y's dtype."""
    acc = add_per_channel(acc, b_ptr, co, mask_n, HAS_BIAS, ACC_DTYPE)
    store_tile(y_ptr, pix_off, co, syc, acc, mask_m, mask_n)


# ------------------------------------------------------- conv + BatchNorm epilogues (cnnkern.problem.conv_bn)
# The activation as a constexpr: one compiled variant per activation, no branch at run time.
ACTIVATION_CODES = {None: 0, "relu": 1, "relu6": 2, "silu": 3}


def activation_code(activation) -> int:
    check_activation(activation)
    return ACTIVATION_CODES[activation]


@triton.jit
def activate(z, ACT: tl.constexpr):
    """act(z) for ACT = ACTIVATION_CODES[activation], in z's (fp32/fp64) precision."""
    # NaN propagates, as through ATen's relu/relu6 (a NaN must not be silenced into a finite activation).
    if ACT == 1:
        z = tl.maximum(z, 0.0, propagate_nan=tl.PropagateNan.ALL)
    elif ACT == 2:
        z = tl.clamp(z, 0.0, 6.0, propagate_nan=tl.PropagateNan.ALL)
    elif ACT == 3:
        # z / (1 + e^-z): no inf * 0 for very negative z (e^-z overflows to inf, the quotient is -0).
        z = z / (1.0 + tl.exp(-z))
    return z


@triton.jit
def activation_backward(grad, z, ACT: tl.constexpr):
    """grad * act'(z). ReLU's derivative at 0 is 0 (ATen's threshold_backward); relu6's also at 6."""
    if ACT == 1:
        grad = tl.where(z > 0.0, grad, 0.0)
    elif ACT == 2:
        grad = tl.where((z > 0.0) & (z < 6.0), grad, 0.0)
    elif ACT == 3:
        s = 1.0 / (1.0 + tl.exp(-z))
        grad = grad * (s * (1.0 + z * (1.0 - s)))
    return grad


@triton.jit
def affine_act(acc, b_ptr, scale_ptr, shift_ptr, co, mask, HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr,
               HAS_SHIFT: tl.constexpr, ACT: tl.constexpr, ACC_DTYPE: tl.constexpr):
    """act((acc + bias[co]) * scale[co] + shift[co]) in ACC_DTYPE, each term present when its flag is set.

    ``co`` and ``mask`` are channel indices already shaped to broadcast against acc (a row of columns for a
    GEMM tile, a scalar for a tile of one channel's plane).
    """
    if HAS_BIAS:
        acc += tl.load(b_ptr + co, mask=mask, other=0.0).to(ACC_DTYPE)
    if HAS_SCALE:
        acc *= tl.load(scale_ptr + co, mask=mask, other=0.0).to(ACC_DTYPE)
    if HAS_SHIFT:
        acc += tl.load(shift_ptr + co, mask=mask, other=0.0).to(ACC_DTYPE)
    return activate(acc, ACT)


@triton.jit
def moments(v, valid, AXIS: tl.constexpr):
    """(count, mean, M2) of v's valid elements along AXIS (None: the whole tile), two-pass: the mean first,
    then the squared deviations from it, so values far from zero (1e4 +- 1) keep their spread in fp32, where
    a sum of squares minus the squared sum would cancel to noise."""
    # keep_dims: count and mean broadcast back over the tile whatever AXIS is.
    count_k = tl.sum(valid.to(v.dtype), axis=AXIS, keep_dims=True)
    mean_k = tl.sum(tl.where(valid, v, 0.0), axis=AXIS, keep_dims=True) / tl.maximum(count_k, 1.0)
    dev = tl.where(valid, v - mean_k, 0.0)
    # Summing the kept size-1 dims drops them: count and mean in M2's shape.
    return tl.sum(count_k, axis=AXIS), tl.sum(mean_k, axis=AXIS), tl.sum(dev * dev, axis=AXIS)


@triton.jit
def store_moments(ptr, count, mean, m2, mask):
    """partials[..., 0:3] = (count, mean, M2); ``ptr`` points at element 0 of the (..., 3) rows."""
    tl.store(ptr, count, mask=mask)
    tl.store(ptr + 1, mean, mask=mask)
    tl.store(ptr + 2, m2, mask=mask)


@triton.jit
def conv_epilogue(acc, b_ptr, scale_ptr, shift_ptr, y_ptr, part_ptr, pix_off, co, syc, mask_m, mask_n, tile,
                  C_OUT, HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
                  ACT: tl.constexpr, STATS: tl.constexpr, INT64: tl.constexpr, ACC_DTYPE: tl.constexpr):
    """The forward conv kernels' store of a (pixels x channels) tile: y = act((acc + bias) * scale + shift),
    rounded once to y's dtype; with STATS, also this tile's (count, mean, M2) per channel of the values as
    stored, into partials[tile, co, :] (partials: (tiles, C_OUT, 3) contiguous, ACC_DTYPE)."""
    acc = affine_act(acc, b_ptr, scale_ptr, shift_ptr, co[None, :], mask_n[None, :], HAS_BIAS, HAS_SCALE,
                     HAS_SHIFT, ACT, ACC_DTYPE)
    y = acc.to(y_ptr.dtype.element_ty)
    valid = mask_m[:, None] & mask_n[None, :]
    tl.store(y_ptr + pix_off[:, None] + (co * syc)[None, :], y, mask=valid)
    if STATS:
        if INT64:
            tile = tile.to(tl.int64)
        count, mean, m2 = moments(y.to(ACC_DTYPE), valid, 0)
        store_moments(part_ptr + (tile * C_OUT + co) * 3, count, mean, m2, mask_n)


@triton.jit
def phase_pixels(offs_m, ph, pw, JH, JW, HO, WO, stride_h, stride_w, GEMM_M):
    """Pixels offs_m of phase (ph, pw)'s sub-grid: image n, place (jh, jw) in the sub-grid, output (oh, ow)."""
    jhw = JH * JW
    n = offs_m // jhw
    rem = offs_m % jhw
    jh = rem // JW
    jw = rem % JW
    oh = ph + jh * stride_h
    ow = pw + jw * stride_w
    # The last row/column of the phase grid exists only for the phases that fit in HO/WO.
    mask_m = (offs_m < GEMM_M) & (oh < HO) & (ow < WO)
    return n, jh, jw, oh, ow, mask_m


@triton.jit
def channel_mask(c, C, ALIGN: tl.constexpr):
    """c < C, taken in units of ALIGN when ALIGN > 1 (callers guarantee C % ALIGN == 0, so it is the same
    mask): Triton then sees the mask constant over each run of ALIGN channels and keeps 16/8/4-byte accesses,
    which a per-element mask splits into 2-byte ones. The host side of ALIGN is ``vector_align``."""
    if ALIGN > 1:
        return (c // ALIGN) < (C // ALIGN)
    return c < C


@triton.jit
def shuffle_dest(c, OFF, CPG, SG):
    """Where channel c is stored after the channel shuffle: the shuffled position of ``OFF + c``.

    The kernel-side twin of ``ChannelMap.dest`` (cnnkern.problem.channel_map): OFF = offset, CPG = per_group,
    SG = shuffle_groups.
    """
    d = c + OFF
    return (d % CPG) * SG + d // CPG


# --------------------------------------------------------------------------------- host-side launch helpers
# Tests set FORCE_TMA[0] to run the TMA paths (the weight through a tensor descriptor) under the interpreter,
# which loads a descriptor's box with the same zero fill past the tensor's edges as TMA does.
FORCE_TMA = [False]


def tma_enabled() -> bool:
    """``CNNKERN_TRITON_TMA=0`` keeps the weight on pointer loads on sm_90 too: the TMA path has not run on a
    GPU yet (2026-12-01), and a GPU session must be able to tell the two apart in one process."""
    return os.environ.get("CNNKERN_TRITON_TMA", "1").strip().lower() not in ("0", "off", "false")


def weight_descriptor(w: torch.Tensor, force: bool | None = None):
    """A TMA descriptor of a conv weight (D0, D1, KH, KW) as a (taps, D0, D1) tensor, tap = r * KW + s; None
    where the weight keeps its pointer loads. The forward reads it as (taps, C_out, C_in/groups), the stride-
    phase gather as (taps, input-role channels, output-role channels per group).

    Taken on sm_90 (``device_capability``) for 16-bit weights whose dim 1 is contiguous (a channels_last
    weight, or any 1x1 one) with the taps one stride apart and 16-byte aligned rows, as TMA needs. Not
    under the interpreter unless forced (``force``, default ``FORCE_TMA[0]``: the tests' run of the TMA
    index math on the CPU): the pointer path is what every other device compiles. Its block shape is set
    per autotune config by a config pre_hook (``set_weight_block``)."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    force = FORCE_TMA[0] if force is None else force
    if not force and (interpreting() or not tma_enabled() or not is_hopper(device_capability(w))):
        return None
    if w.dtype not in (torch.float16, torch.bfloat16) or w.dim() != 4:
        return None
    c_out, cg_in, kh, kw = w.shape
    so, sc, sh, sw = w.stride()
    taps = kh * kw
    if sc != 1 and cg_in > 1:
        return None
    # The taps as one dimension: (r, s) at r * KW + s, one stride apart (a size-1 dim's stride is free).
    if taps == 1:
        tap_stride = so
    elif kw == 1:
        tap_stride = sh
    elif kh == 1 or sh == kw * sw:
        tap_stride = sw
    else:
        return None
    size = w.element_size()
    if w.data_ptr() % 16 or (so * size) % 16 or (tap_stride * size) % 16:
        return None
    # The block shape is a placeholder until the config's pre_hook sets it.
    return TensorDescriptor(w, [taps, c_out, cg_in], [tap_stride, so, 1], [1, 16, 16])


def set_weight_block(nargs: dict) -> None:
    """Config pre_hook of the forward: the weight box is one tap of BLOCK_N output x BLOCK_K input channels."""
    desc = nargs.get("w_desc")
    if desc is not None:
        desc.block_shape = [1, nargs["BLOCK_N"], nargs["BLOCK_K"]]


def set_weight_block_kn(nargs: dict) -> None:
    """Config pre_hook of the phase gather: one tap of BLOCK_K input-role x BLOCK_N output-role channels."""
    desc = nargs.get("w_desc")
    if desc is not None:
        desc.block_shape = [1, nargs["BLOCK_K"], nargs["BLOCK_N"]]


def channels_last(t: torch.Tensor) -> bool:
    return t.stride(1) == 1 and t.shape[1] > 1


def conv_geometry(spec: Conv2dSpec) -> tuple[int, ...]:
    """stride_h, stride_w, pad_h, pad_w, dil_h, dil_w: the order every conv kernel takes them in."""
    return (*spec.stride, *spec.pad_tl, *spec.dilation)


def ceil_div(a: int, b: int) -> int:
    """triton.cdiv for host code on the per-call path: triton 3.8's is a ConstexprFunction (~2 us a call)."""
    return -(-a // b)


def pow2_at_least(n: int) -> int:
    """triton.next_power_of_2 for host code on the per-call path (same reason as ``ceil_div``)."""
    return 1 << max(0, n - 1).bit_length()


def one_pixel_pitch(st, h: int, w: int) -> bool:
    """Whether (N, C, H, W) strides put the pixels at one pitch: offset (n*H + h)*W + w times the W stride
    (the kernels' PITCHED: a pixel's offset is then a product, not a division into (n, h, w))."""
    return st[0] == h * st[2] and st[2] == w * st[3]


def vector_align(esize: int, *values: int) -> int:
    """The largest of 8, 4, 2, 1 elements (at most 16 bytes of ``esize``-byte elements) dividing every value:
    channel counts, channel offsets and pixel strides of unit-channel-stride tensors. When every offset a
    kernel forms is a sum of such values, each run of that many channels starts 16/8/4-byte aligned from the
    tensor's base (the kernels' ALIGN hint, with ``tl.multiple_of`` and ``channel_mask``). Integer arithmetic
    only: it runs per call."""
    g = math.gcd(16 // esize, *values)
    return g & -g  # its largest power-of-two factor (g divides 16 // esize, so at most 8)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation (and split-partials) dtype: fp64 for fp64, fp32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def fma_flags(dtype: torch.dtype, tensors) -> dict:
    """Constexprs of the elementwise (no ``tl.dot``) kernels."""
    return {"INT64": needs_int64(tensors), "ACC_DTYPE": tl.float64 if dtype == torch.float64 else tl.float32}


def mma_flags(dtype: torch.dtype, tensors) -> dict:
    """Constexprs of the kernels that go through ``mma``: fma_flags plus how the dot runs."""
    return {
        **fma_flags(dtype, tensors),
        "UPCAST": interpreting() and dtype == torch.bfloat16,
        "IEEE": dtype in (torch.float32, torch.float64),
    }


def dense(*vectors):
    """Per-channel vectors as the kernels index them (channel c at element offset c): contiguous, None kept."""
    return tuple(None if v is None else v.contiguous() for v in vectors)


def acc_empty(shape, like: torch.Tensor) -> torch.Tensor:
    """An fp32 (fp64 for fp64 ``like``) buffer a kernel writes: statistics or reduction partials. Allocated
    where every kernel output is (cnnkern.problem.memory), so the NaN-poisoning tests cover it too."""
    acc = acc_dtype(like.dtype)
    proto = like if like.dtype == acc else like.new_empty((0,), dtype=acc)
    return memory.empty(shape, proto, torch.contiguous_format)


class LaunchedBlocks(dict):
    """A grid function's record of the block sizes it was last called with, i.e. those of the launch that ran
    (the autotuner calls the grid again for the chosen config after benchmarking the others). Per call, so
    two threads launching the same kernel never read each other's choice."""

    def grid(self, grid_fn):
        def wrapped(meta):
            self.clear()
            self.update({k: v for k, v in meta.items() if k.startswith("BLOCK_")})
            return grid_fn(meta)

        return wrapped


def reduction_splits(length: int, programs: int, device: torch.device, *, interpreter_cutoff: int,
                     min_run: int, cap: int) -> int:
    """How many programs share a reduction over ``length`` elements.

    Enough to give every SM a few programs when the output grid alone (``programs``) is small, while each
    split still loops over at least ``min_run`` elements; at most ``cap``.
    """
    if interpreting() or device.type != "cuda":
        return 1 if length <= interpreter_cutoff else 2  # still exercises the split path in the interpreter
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    want = max(1, (4 * sms) // max(programs, 1))
    return int(max(1, min(want, length // min_run, cap)))


def split_k(gemm_k: int, tiles: int, device: torch.device) -> int:
    """Split-K factor of the implicit-GEMM weight gradients (``tiles``: output tiles of the launch)."""
    return reduction_splits(gemm_k, tiles, device, interpreter_cutoff=64, min_run=1024, cap=64)


def split_chunks(length: int, splits: int, unit: int) -> tuple[int, int]:
    """(chunk, splits) with the chunk rounded up to ``unit``.

    ``unit`` is a multiple of every block size along the reduction, so no two splits share a block; rounding
    can leave fewer splits than asked for.
    """
    chunk = triton.cdiv(triton.cdiv(length, splits), unit) * unit
    return chunk, triton.cdiv(length, chunk)


def sum_splits(partials: torch.Tensor) -> torch.Tensor:
    """The per-split partials (dim 0) summed in a fixed order; no reduction for a single split."""
    return partials.sum(0) if partials.shape[0] > 1 else partials[0]
