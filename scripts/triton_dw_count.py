#!/usr/bin/env python
"""SASS instructions per output of the Triton depthwise channels-last forward on sm_90, without a GPU.

The Triton depthwise kernels are issue-bound on the large benchmark layers: their time is about
outputs x instructions per output / (132 SMs x 4 schedulers x 1.8 GHz x 32 lanes) / 0.8, which matched the
2026-11-30 H200 run on dw32 3x3 @112 (93 per output: 393 us modelled, 363-392 us measured). This script
gives that count per autotune config: each benchmark layer's launch is recorded as
scripts/triton_sm90_check.py records it (nothing runs; the configs the autotuner's own prune keeps on an
H100/H200), compiled for sm_90, and its SASS counted; a back-edge loop (the runtime loop over kernel rows)
is counted KH times (the row walk's loop over input rows: ROWS + KH - 1 times). Notes and the model table: cnnkern/triton/depthwise_conv2d.md.

    python scripts/triton_dw_count.py            # bf16, N = 256, the layers below
    python scripts/triton_dw_count.py --wgrad    # the weight gradient instead: SASS per output-gradient
                                                 # element, its pixel loop counted 64 times (steady state);
                                                 # the row walk (stride 1): its innermost loop per band row
    python scripts/triton_dw_count.py --dgrad    # the input gradient (channels-last gradient): SASS per
                                                 # input-gradient element
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

# The kernels must be JITFunctions with their GPU configs: the interpreter off before triton is imported.
os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
import triton
import triton_sm90_check as check
from triton.compiler import ASTSource
from triton.compiler import compile as triton_compile
from triton.runtime.autotuner import Autotuner
from triton.runtime.jit import JITFunction

import cnnkern
import cnnkern.triton.depthwise_conv2d as dw_module

# (channels, input size, kernel, stride): one layer per specialisation class (3x3 s1 / s2, 7x7 s1), the
# narrow channel counts that change the channel-block prune, and ShuffleNetV2's ALIGN 2 / 4 / 8.
LAYERS = ((32, 112, 3, 1), (64, 112, 3, 2), (128, 56, 3, 1), (96, 112, 3, 2), (96, 56, 7, 1),
          (58, 28, 3, 1), (116, 14, 3, 1), (232, 7, 3, 1), (116, 28, 3, 2))
# --wgrad adds RepLKNet-31B's large kernels.
WGRAD_LAYERS = LAYERS + ((128, 56, 31, 1), (1024, 7, 13, 1))
INSN = re.compile(r"/\*([0-9a-f]{4})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def _sass(cubin: bytes) -> list[tuple[int, str, str]]:
    """(address, opcode, operands) of every instruction but NOP."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run([check._CUOBJDUMP, "-sass", f.name], capture_output=True, text=True,
                              check=True).stdout
    return [(int(m.group(1), 16), m.group(2), m.group(3)) for m in INSN.finditer(sass) if m.group(2) != "NOP"]


def _loops(seq) -> list[tuple[int, int]]:
    """(first, last) address of every back-edge loop."""
    loops = []
    for addr, op, rest in seq:
        target = re.search(r"0x([0-9a-f]+)", rest) if op.startswith("BRA") else None
        if target and int(target.group(1), 16) < addr:
            loops.append((int(target.group(1), 16), addr))
    return loops


def innermost_loop(cubin: bytes) -> int:
    """Instructions in the smallest back-edge loop body."""
    seq = _sass(cubin)
    return min(sum(1 for addr, _, _ in seq if lo <= addr <= hi) for lo, hi in _loops(seq))


def count(cubin: bytes, kh: int) -> tuple[int, int]:
    """(static instructions, dynamic ones with each back-edge loop body counted kh times)."""
    seq = _sass(cubin)
    loops = _loops(seq)
    body = sum(1 for addr, _, _ in seq if any(lo <= addr <= hi for lo, hi in loops))
    return len(seq), len(seq) - body + kh * body


WGRAD_TRIPS = 64  # pixel-loop trips counted for the weight gradient: a long split's steady state


def _wgrad() -> int:
    """SASS per output-gradient element (pixel x channel) of the weight gradient's best kept config."""
    for c, size, k, stride in WGRAD_LAYERS:
        check._records.clear()
        x = torch.empty(256, c, size, size, dtype=torch.bfloat16, memory_format=torch.channels_last)
        w = torch.empty(c, 1, k, k, dtype=torch.bfloat16).requires_grad_()
        with cnnkern.use_backend("triton"):
            y = cnnkern.depthwise_conv2d(x, w, None, stride, k // 2)
            y.backward(torch.empty_like(y))
        best = None
        for launch in check._records.values():
            if launch.name not in ("_dw_wgrad_kernel", "_dw_wgrad_rows_kernel"):
                continue
            cx = launch.named_constexprs()
            src = ASTSource(launch.fn, launch.signature, launch.constexprs, launch.attrs)
            kernel = triton_compile(src, target=check.TARGET, options=launch.options.__dict__)
            threads = launch.options.num_warps * 32
            if launch.name == "_dw_wgrad_rows_kernel":
                # The loop over a band's input rows, per gradient row: BAND_ROWS + TR - 1 trips load
                # BAND_ROWS gradient rows of the strip (one pixel per thread); the strip loop's own
                # instructions are left out. Every tap-row block reads the gradient again.
                ring = cx["RING"] == "True"
                _c, (_strips, _chunk, _bands, rows), _grid = dw_module._wgrad_rows_geometry(
                    256, c, size // stride, size // stride, k, k, 2, 4, ring, True, 132)
                tr = int(cx["TR"])
                inner = innermost_loop(kernel.asm["cubin"])
                warm = tr - 1 if ring else 0  # the ring's extra steps per band
                per = inner * (rows + warm) / rows / (int(cx["BLOCK_W"]) * int(cx["BLOCK_C"]) / threads)
                per *= k // tr
                tile = f"rows {cx['BLOCK_W']}x{cx['BLOCK_C']} TR{tr} w{launch.options.num_warps} band {rows}"
            else:
                _static, dynamic = count(kernel.asm["cubin"], WGRAD_TRIPS)
                per = dynamic / (WGRAD_TRIPS * int(cx["BLOCK_P"]) * int(cx["BLOCK_C"]) / threads)
                # A program covers BLOCK_T taps: every tap block reads the gradient again.
                per *= triton.cdiv(k * k, int(cx["BLOCK_T"]))
                tile = f"{cx['BLOCK_P']}x{cx['BLOCK_C']} w{launch.options.num_warps}"
            if best is None or per < best[1]:
                best = (tile, per)
        out = 256 * c * (size // stride) ** 2
        issue = out * best[1] / (132 * 4 * 1.8e3 * 32) / 0.8
        mem = 256 * c * (size * size + (size // stride) ** 2) * 2 / 4.24e6 / 0.85
        print(f"dw{c} {k}x{k} @{size}/s{stride}: best {best[0]}, {best[1]:.1f} SASS per gradient element; "
              f"issue {issue:.0f} us, memory {mem:.0f} us")
    return 0


def _dgrad() -> int:
    """SASS per input-gradient element of the input gradient's best kept config, channels-last gradient."""
    for c, size, k, stride in LAYERS:
        check._records.clear()
        x = torch.empty(256, c, size, size, dtype=torch.bfloat16, memory_format=torch.channels_last)
        x.requires_grad_()
        w = torch.empty(c, 1, k, k, dtype=torch.bfloat16)
        with cnnkern.use_backend("triton"):
            y = cnnkern.depthwise_conv2d(x, w, None, stride, k // 2)
        check._records.clear()  # the forward's launches (the input gradient may launch the same kernel)
        with cnnkern.use_backend("triton"):
            torch.autograd.grad(y, x, torch.empty_like(y))
        best = None
        for launch in check._records.values():
            cx = launch.named_constexprs()
            src = ASTSource(launch.fn, launch.signature, launch.constexprs, launch.attrs)
            kernel = triton_compile(src, target=check.TARGET, options=launch.options.__dict__)
            threads = launch.options.num_warps * 32
            if launch.name == "_dw_dgrad_phases_kernel":  # per block row: S x S pixels of BLOCK_W blocks
                per = innermost_loop(kernel.asm["cubin"]) / (int(cx["S"]) ** 2 * int(cx["BLOCK_W"])
                                                             * int(cx["BLOCK_C"]) / threads)
                tile = f"phases {cx['BLOCK_W']}x{cx['BLOCK_C']} w{launch.options.num_warps}"
            elif launch.name == "_dw_fwd_rows_kernel":  # stride 1: the forward's row walk
                rows = int(cx["ROWS"])
                _static, dynamic = count(kernel.asm["cubin"], rows + k - 1)
                per = dynamic / (int(cx["BLOCK_W"]) * int(cx["BLOCK_C"]) * rows / threads)
                tile = f"rows {cx['BLOCK_W']}x{cx['BLOCK_C']}x{rows}r"
            elif launch.name == "_dw_dgrad_channels_kernel":
                _static, dynamic = count(kernel.asm["cubin"], k)
                per = dynamic / (int(cx["BLOCK_P"]) * int(cx["BLOCK_C"]) / threads)
                tile = f"channels {cx['BLOCK_P']}x{cx['BLOCK_C']}"
            else:
                continue
            if best is None or per < best[1]:
                best = (tile, per)
        el = 256 * c * size * size
        issue = el * best[1] / (132 * 4 * 1.8e3 * 32) / 0.8
        mem = 256 * c * (size * size + (size // stride) ** 2) * 2 / 4.24e6 / 0.85
        print(f"dw{c} {k}x{k} @{size}/s{stride}: best {best[0]}, {best[1]:.1f} SASS per input-gradient element; "
              f"issue {issue:.0f} us, memory {mem:.0f} us")
    return 0


def main(argv: list[str]) -> int:
    JITFunction.run = check._recording_run
    Autotuner.run = check._recording_autotune
    check._accept_cpu_tensors()
    check._as_hopper()
    if "--wgrad" in argv:
        return _wgrad()
    if "--dgrad" in argv:
        return _dgrad()
    for c, size, k, stride in LAYERS:
        check._origin[0] = f"dw{c} {k}x{k} @{size}/s{stride}"
        x = torch.empty(256, c, size, size, dtype=torch.bfloat16, memory_format=torch.channels_last)
        w = torch.empty(c, 1, k, k, dtype=torch.bfloat16)
        with cnnkern.use_backend("triton"), torch.no_grad():
            cnnkern.depthwise_conv2d(x, w, None, stride, k // 2)
    print(f"{'first layer reaching it':24s} {'tile':>12s} warps {'out/thread':>10s} {'static':>7s} "
          f"{'dynamic':>8s} {'per output':>10s}")
    for launch in check._records.values():
        if launch.name not in ("_dw_fwd_channels_kernel", "_dw_fwd_rows_kernel"):
            continue
        c = launch.named_constexprs()
        src = ASTSource(launch.fn, launch.signature, launch.constexprs, launch.attrs)
        kernel = triton_compile(src, target=check.TARGET, options=launch.options.__dict__)
        warps = launch.options.num_warps
        if "ROWS" in c:  # the row walk: ROWS + KH - 1 input rows per program, ROWS output rows
            rows, kh = int(c["ROWS"]), int(c["KH"])
            static, dynamic = count(kernel.asm["cubin"], rows + kh - 1)
            tile = f"{c['BLOCK_W']}x{c['BLOCK_C']}x{rows}r"
            per_thread = int(c["BLOCK_W"]) * int(c["BLOCK_C"]) * rows / (warps * 32)
        else:  # the channels kernel: its loop over kernel rows
            static, dynamic = count(kernel.asm["cubin"], int(c["KH"]))
            tile = f"{c['BLOCK_P']}x{c['BLOCK_C']}"
            per_thread = int(c["BLOCK_P"]) * int(c["BLOCK_C"]) / (warps * 32)
        print(f"{launch.origin:24s} {tile:>12s} {warps:5d} {per_thread:10.0f} "
              f"{static:7d} {dynamic:8d} {dynamic / per_thread:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
