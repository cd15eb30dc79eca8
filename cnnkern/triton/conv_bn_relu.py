"""BatchNorm + activation around a conv output in Triton: the normalize pass and the two backward passes.

Contract in ``cnnkern.problem.conv_bn``. All three kernels are elementwise over a 4-D tensor y (plus
per-channel vectors), read and written through explicit strides so NCHW, channels_last and sliced views run
without copies. The tile follows the layout of y, so that lanes run along its contiguous dimension:

  channels_last: a tile is BLOCK_R pixels x BLOCK_K channels (channels contiguous), per-channel values a row.
  otherwise:     a tile is BLOCK_R images x BLOCK_K pixels of one channel's plane (the channel is
                 program_id 1), per-channel values scalars; when every tensor's planes are dense rows
                 (stride_w 1, stride_h W) the pixel offset is the flat index itself, so the compiler sees
                 contiguous runs.

16-byte accesses: when the strides that multiply the row index and the contiguous extent are multiples of
16 bytes' worth of elements (ALIGN), the row offsets and the extent are written so the compiler can prove it
(``tl.multiple_of``; the extent as a multiple of ALIGN) and vectorise the masked loads and stores.

The backward reduction is deterministic: each program sums its run of tiles in a fixed order into its own
row of partials, and the rows are summed in a fixed order on the host; no atomics. Tile sizes are fixed per
shape (not autotuned), so the order, and the bits of the result, do not depend on timing.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from cnnkern.triton import interpreting, why_not_problem
from cnnkern.triton.tiles import (
    acc_empty,
    activate,
    activation_backward,
    activation_code,
    channels_last,
    dense,
    fma_flags,
    pix,
    reduction_splits,
    sum_splits,
)

why_not = why_not_problem

# Elements per tile: 16 per thread at 4 warps, two 16-byte vectors of fp16.
_TILE = 2048
_WARPS = 4


# ------------------------------------------------------------------------------------- tile geometry
@triton.jit
def _channels(cb, C, K_DIV, ALIGN: tl.constexpr, CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr,
              BLOCK_K: tl.constexpr):
    """Program ``cb``'s channels and their mask: a block of BLOCK_K (channels_last) or its one channel."""
    if CHANNELS_LAST:
        c = cb * BLOCK_K + tl.arange(0, BLOCK_K)
        mask_c = c < K_DIV * ALIGN  # C as a product the compiler sees as a multiple of ALIGN
    else:
        c = cb
        if INT64:
            c = c.to(tl.int64)
        mask_c = c < C
    return c, mask_c


@triton.jit
def _tile(blk, cb, N, C, H, W, K_DIV, ALIGN: tl.constexpr, CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr,
          BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """Tile ``blk`` of channel block (channels_last) or channel (otherwise) ``cb``: (n, c, h, w, k, mask,
    mask_c). n, h, w index rows (pixels, or images with h, w per column); k is the contiguous index (channel
    or flat pixel); c is a channel vector (channels_last) or a scalar. K_DIV * ALIGN: the contiguous extent.
    """
    # The extent as a product the compiler sees as a multiple of ALIGN: masks stay uniform over a vector.
    K = K_DIV * ALIGN
    if INT64:
        blk = blk.to(tl.int64)
    r = tl.arange(0, BLOCK_R)
    c, mask_c = _channels(cb, C, K_DIV, ALIGN, CHANNELS_LAST, INT64, BLOCK_K)
    if CHANNELS_LAST:
        p = blk * BLOCK_R + r
        n, h, w = pix(p, H, W)
        k = c
        mask = (p < N * H * W)[:, None] & mask_c[None, :]
    else:
        k_blocks = tl.cdiv(K, BLOCK_K)
        n = (blk // k_blocks) * BLOCK_R + r
        k = (blk % k_blocks) * BLOCK_K + tl.arange(0, BLOCK_K)
        h = k // W
        w = k % W
        mask = (n < N)[:, None] & (k < K)[None, :]
    return n, c, h, w, k, mask, mask_c


@triton.jit
def _offsets(n, c, h, w, k, sn, sc, sh, sw, ALIGN: tl.constexpr, CHANNELS_LAST: tl.constexpr,
             FLAT_HW: tl.constexpr):
    """Element offsets of a tile in a tensor with strides (sn, sc, sh, sw): row part + contiguous part."""
    if CHANNELS_LAST:
        off = tl.multiple_of(n * sn + h * sh + w * sw, ALIGN)[:, None] + (c * sc)[None, :]
    elif FLAT_HW:
        off = tl.multiple_of(n * sn + c * sc, ALIGN)[:, None] + k[None, :]
    else:
        off = (n * sn + c * sc)[:, None] + (h * sh + w * sw)[None, :]
    return off


@triton.jit
def _per_channel(ptr, c, mask_c, CHANNELS_LAST: tl.constexpr, ACC_DTYPE: tl.constexpr):
    """A per-channel vector's values for the tile, shaped to broadcast against it."""
    v = tl.load(ptr + c, mask=mask_c, other=0.0).to(ACC_DTYPE)
    if CHANNELS_LAST:
        v = v[None, :]
    return v


# ------------------------------------------------------------------------------------------- kernels
@triton.jit
def _normalize_kernel(
    y_ptr, a_ptr, b_ptr, out_ptr,
    N, C, H, W, K_DIV,
    syn, syc, syh, syw, son, soc, soh, sow,
    ACT: tl.constexpr, CHANNELS_LAST: tl.constexpr, FLAT_HW: tl.constexpr, ALIGN: tl.constexpr,
    INT64: tl.constexpr, ACC_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    n, c, h, w, k, mask, mask_c = _tile(tl.program_id(0), tl.program_id(1), N, C, H, W, K_DIV, ALIGN,
                                        CHANNELS_LAST, INT64, BLOCK_R, BLOCK_K)
    y = tl.load(y_ptr + _offsets(n, c, h, w, k, syn, syc, syh, syw, ALIGN, CHANNELS_LAST, FLAT_HW), mask=mask,
                other=0.0).to(ACC_DTYPE)
    z = y * _per_channel(a_ptr, c, mask_c, CHANNELS_LAST, ACC_DTYPE) + \
        _per_channel(b_ptr, c, mask_c, CHANNELS_LAST, ACC_DTYPE)
    out = activate(z, ACT)
    tl.store(out_ptr + _offsets(n, c, h, w, k, son, soc, soh, sow, ALIGN, CHANNELS_LAST, FLAT_HW),
             out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _dz_xhat(g_ptr, y_ptr, a, b, mean, invstd, n, c, h, w, k, mask, sgn, sgc, sgh, sgw, syn, syc, syh, syw,
             ACT: tl.constexpr, CHANNELS_LAST: tl.constexpr, FLAT_HW: tl.constexpr, ALIGN: tl.constexpr,
             ACC_DTYPE: tl.constexpr):
    """dz = grad * act'(y * a + b) and xhat = (y - mean) * invstd over the tile, both zero where masked."""
    g = tl.load(g_ptr + _offsets(n, c, h, w, k, sgn, sgc, sgh, sgw, ALIGN, CHANNELS_LAST, FLAT_HW), mask=mask,
                other=0.0).to(ACC_DTYPE)
    y = tl.load(y_ptr + _offsets(n, c, h, w, k, syn, syc, syh, syw, ALIGN, CHANNELS_LAST, FLAT_HW), mask=mask,
                other=0.0).to(ACC_DTYPE)
    dz = tl.where(mask, activation_backward(g, y * a + b, ACT), 0.0)
    xhat = tl.where(mask, (y - mean) * invstd, 0.0)
    return dz, xhat


@triton.jit
def _bwd_reduce_kernel(
    g_ptr, y_ptr, a_ptr, b_ptr, mean_ptr, invstd_ptr, part_ptr,
    N, C, H, W, K_DIV, BLOCKS, CHUNK,
    sgn, sgc, sgh, sgw, syn, syc, syh, syw,
    ACT: tl.constexpr, CHANNELS_LAST: tl.constexpr, FLAT_HW: tl.constexpr, ALIGN: tl.constexpr,
    INT64: tl.constexpr, ACC_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # Program (split, channel block or channel) sums tiles [split*CHUNK, (split+1)*CHUNK) of its channels
    # into partials[split, 0 (sum dz) | 1 (sum dz*xhat), C] (contiguous, ACC_DTYPE).
    split = tl.program_id(0)
    cb = tl.program_id(1)
    c, mask_c = _channels(cb, C, K_DIV, ALIGN, CHANNELS_LAST, INT64, BLOCK_K)
    a = _per_channel(a_ptr, c, mask_c, CHANNELS_LAST, ACC_DTYPE)
    b = _per_channel(b_ptr, c, mask_c, CHANNELS_LAST, ACC_DTYPE)
    mean = _per_channel(mean_ptr, c, mask_c, CHANNELS_LAST, ACC_DTYPE)
    invstd = _per_channel(invstd_ptr, c, mask_c, CHANNELS_LAST, ACC_DTYPE)
    sum_dz = tl.zeros((BLOCK_R, BLOCK_K), dtype=ACC_DTYPE)
    sum_dzx = tl.zeros((BLOCK_R, BLOCK_K), dtype=ACC_DTYPE)
    start = split * CHUNK
    for blk in range(start, tl.minimum(start + CHUNK, BLOCKS)):
        n, c, h, w, k, mask, mask_c = _tile(blk, cb, N, C, H, W, K_DIV, ALIGN, CHANNELS_LAST, INT64, BLOCK_R,
                                            BLOCK_K)
        dz, xhat = _dz_xhat(g_ptr, y_ptr, a, b, mean, invstd, n, c, h, w, k, mask, sgn, sgc, sgh, sgw,
                            syn, syc, syh, syw, ACT, CHANNELS_LAST, FLAT_HW, ALIGN, ACC_DTYPE)
        sum_dz += dz
        sum_dzx += dz * xhat
    row = part_ptr + split * 2 * C
    if CHANNELS_LAST:
        tl.store(row + c, tl.sum(sum_dz, axis=0), mask=mask_c)
        tl.store(row + C + c, tl.sum(sum_dzx, axis=0), mask=mask_c)
    else:
        tl.store(row + c, tl.sum(sum_dz))
        tl.store(row + C + c, tl.sum(sum_dzx))


@triton.jit
def _bwd_apply_kernel(
    g_ptr, y_ptr, a_ptr, b_ptr, mean_ptr, invstd_ptr, kdz_ptr, kone_ptr, kxhat_ptr, out_ptr,
    N, C, H, W, K_DIV,
    sgn, sgc, sgh, sgw, syn, syc, syh, syw, son, soc, soh, sow,
    ACT: tl.constexpr, CHANNELS_LAST: tl.constexpr, FLAT_HW: tl.constexpr, ALIGN: tl.constexpr,
    INT64: tl.constexpr, ACC_DTYPE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    n, c, h, w, k, mask, mask_c = _tile(tl.program_id(0), tl.program_id(1), N, C, H, W, K_DIV, ALIGN,
                                        CHANNELS_LAST, INT64, BLOCK_R, BLOCK_K)
    dz, xhat = _dz_xhat(g_ptr, y_ptr, _per_channel(a_ptr, c, mask_c, CHANNELS_LAST, ACC_DTYPE),
                        _per_channel(b_ptr, c, mask_c, CHANNELS_LAST, ACC_DTYPE),
                        _per_channel(mean_ptr, c, mask_c, CHANNELS_LAST, ACC_DTYPE),
                        _per_channel(invstd_ptr, c, mask_c, CHANNELS_LAST, ACC_DTYPE),
                        n, c, h, w, k, mask, sgn, sgc, sgh, sgw, syn, syc, syh, syw, ACT, CHANNELS_LAST,
                        FLAT_HW, ALIGN, ACC_DTYPE)
    out = _per_channel(kdz_ptr, c, mask_c, CHANNELS_LAST, ACC_DTYPE) * dz + \
        _per_channel(kone_ptr, c, mask_c, CHANNELS_LAST, ACC_DTYPE) + \
        _per_channel(kxhat_ptr, c, mask_c, CHANNELS_LAST, ACC_DTYPE) * xhat
    tl.store(out_ptr + _offsets(n, c, h, w, k, son, soc, soh, sow, ALIGN, CHANNELS_LAST, FLAT_HW),
             out.to(out_ptr.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------------- host wrappers
class _Layout:
    """How the tensors of one call are tiled: the constexprs and sizes the kernels share, and the grid."""

    def __init__(self, y: torch.Tensor, tensors):
        n, c, h, w = y.shape
        self.nhwc = channels_last(y)
        # Flat planes: pixel (h, w) of every tensor sits at offset h * W + w from its plane's start.
        self.flat = not self.nhwc and all((w == 1 or t.stride(3) == 1) and (h == 1 or t.stride(2) == w)
                                          for t in tensors)
        extent = c if self.nhwc else h * w
        # Strides that multiply row indices (dims of size 1 never move the offset).
        row_dims = (0, 2, 3) if self.nhwc else (0, 1)
        vec = 16 // y.element_size()
        aligned = (self.nhwc or self.flat) and extent % vec == 0 and all(
            t.stride(d) % vec == 0 for t in tensors for d in row_dims if t.shape[d] > 1)
        self.align = vec if aligned else 1
        self.block_k = min(triton.next_power_of_2(extent), 128 if self.nhwc else 1024)
        rows = n * h * w if self.nhwc else n
        self.block_r = max(1, min(triton.next_power_of_2(rows), _TILE // self.block_k))
        # Row blocks, times the blocks of a plane when a tile is part of one.
        self.blocks = triton.cdiv(rows, self.block_r) * (1 if self.nhwc else triton.cdiv(extent,
                                                                                          self.block_k))
        self.channel_programs = triton.cdiv(c, self.block_k) if self.nhwc else c
        self.sizes = (n, c, h, w, extent // self.align)
        self.consts = {"CHANNELS_LAST": self.nhwc, "FLAT_HW": self.flat, "ALIGN": self.align,
                       "BLOCK_R": self.block_r, "BLOCK_K": self.block_k, **fma_flags(y.dtype, tensors)}
        if not interpreting():
            self.consts["num_warps"] = _WARPS


def normalize(y, a, b, out, activation) -> None:
    """out = act(y * a + b), a and b per channel."""
    a, b = dense(a, b)
    lay = _Layout(y, (y, out))
    _normalize_kernel[(lay.blocks, lay.channel_programs)](
        y, a, b, out, *lay.sizes, *y.stride(), *out.stride(), ACT=activation_code(activation), **lay.consts)


def backward_reduce(grad, y, a, b, mean, invstd, activation) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum dz, sum dz * xhat) per channel, dz = grad * act'(y * a + b), xhat = (y - mean) * invstd."""
    a, b, mean, invstd = dense(a, b, mean, invstd)
    lay = _Layout(y, (grad, y))
    n, c, h, w = y.shape
    # Enough splits of the pixels to give every SM a few programs, each still running over >= 4 tiles.
    tile_pixels = lay.block_r * (1 if lay.nhwc else lay.block_k)
    splits = min(lay.blocks, reduction_splits(n * h * w, lay.channel_programs, y.device,
                                              interpreter_cutoff=512, min_run=4 * tile_pixels, cap=512))
    chunk = triton.cdiv(lay.blocks, splits)
    splits = triton.cdiv(lay.blocks, chunk)
    partials = acc_empty((splits, 2, c), y)
    _bwd_reduce_kernel[(splits, lay.channel_programs)](
        grad, y, a, b, mean, invstd, partials, *lay.sizes, lay.blocks, chunk, *grad.stride(), *y.stride(),
        ACT=activation_code(activation), **lay.consts)
    sums = sum_splits(partials)
    return sums[0], sums[1]


def backward_apply(grad, y, a, b, mean, invstd, k_dz, k_one, k_xhat, out, activation) -> None:
    """out = k_dz * dz + k_one + k_xhat * xhat (per-channel k's), dz and xhat as in ``backward_reduce``."""
    a, b, mean, invstd, k_dz, k_one, k_xhat = dense(a, b, mean, invstd, k_dz, k_one, k_xhat)
    lay = _Layout(y, (grad, y, out))
    _bwd_apply_kernel[(lay.blocks, lay.channel_programs)](
        grad, y, a, b, mean, invstd, k_dz, k_one, k_xhat, out, *lay.sizes, *grad.stride(), *y.stride(),
        *out.stride(), ACT=activation_code(activation), **lay.consts)


# The kernels this module gives the registry (cnnkern.ops.registry), by the name the ops ask for.
KERNELS = {"conv_bn_relu_normalize": normalize, "conv_bn_relu_bwd_reduce": backward_reduce,
           "conv_bn_relu_bwd_apply": backward_apply}
