#!/usr/bin/env python
"""SASS per element and a time model of the Triton channel_shuffle kernels on sm_90, without a GPU.

Each case's launch is recorded as scripts/triton_sm90_check.py records it (nothing runs; the configs the
autotuner's prune keeps on an H100/H200), compiled for sm_90 and its SASS counted. Per case, the best kept
config gives issue us = elements x SASS per element / (132 x 4 x 1.8 GHz x 32 lanes), mem us = bytes read
and written / 4.24 TB/s (the 2026-11-30 H200 copy rate) and model us = max(issue, mem) / 0.8. Notes:
cnnkern/triton/channel_shuffle.md.

    python scripts/triton_shuffle_count.py
"""

from __future__ import annotations

import os
import sys

# The kernels must be JITFunctions with their GPU configs: the interpreter off before triton is imported.
os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
import triton_dw_count as dw
import triton_sm90_check as check
from triton.compiler import ASTSource
from triton.compiler import compile as triton_compile
from triton.runtime.autotuner import Autotuner
from triton.runtime.jit import JITFunction

import cnnkern

N = 256
# (channels, size, groups): ShuffleNetV2 x1.0's shuffle inputs (116 @28, 232 @14, 464 @7), ShuffleNetV1 g3's
# after GConv1 (60 @28 is stage 2's bottleneck, 240 @28 a wide one), and the 58-channel rows (4-byte runs).
CASES = ((116, 28, 2), (232, 14, 2), (464, 7, 2), (60, 28, 3), (240, 28, 3), (58, 28, 2))
ISSUE_PER_US = 132 * 4 * 1.8e3 * 32
COPY_BYTES_PER_US = 4.24e6


def main() -> int:
    JITFunction.run = check._recording_run
    Autotuner.run = check._recording_autotune
    check._accept_cpu_tensors()
    check._as_hopper()
    print(f"{'case':22s} {'kernel':24s} {'best config':22s} {'SASS/el':>7s} {'issue us':>8s} {'mem us':>7s} "
          f"{'model us':>8s}")
    for c, size, groups in CASES:
        for layout in (torch.channels_last, torch.contiguous_format):
            check._records.clear()
            x = torch.empty(N, c, size, size, dtype=torch.bfloat16, memory_format=layout)
            with cnnkern.use_backend("triton"), torch.no_grad():
                cnnkern.channel_shuffle(x, groups)
            best = None
            for launch in check._records.values():
                k = launch.named_constexprs()
                kernel = triton_compile(ASTSource(launch.fn, launch.signature, launch.constexprs, launch.attrs),
                                        target=check.TARGET, options=launch.options.__dict__)
                _static, dynamic = dw.count(kernel.asm["cubin"], 1)
                threads = launch.options.num_warps * 32
                if "BLOCK_P" in k:
                    per_thread = int(k["BLOCK_P"]) * int(k["BLOCK_C"]) / threads
                    tile = f"{k['BLOCK_P']}x{k['BLOCK_C']} w{launch.options.num_warps}"
                else:
                    # real elements: a plane is H*W
                    per_thread = int(k["BLOCK_C"]) * min(int(k["BLOCK_HW"]), size * size) / threads
                    tile = f"{k['BLOCK_C']}x{k['BLOCK_HW']} w{launch.options.num_warps}"
                per_el = dynamic / per_thread
                if best is None or per_el < best[2]:
                    best = (launch.name, tile, per_el)
            elements = N * c * size * size
            issue = elements * best[2] / ISSUE_PER_US
            mem = 2 * elements * 2 / COPY_BYTES_PER_US
            case = f"{c} @{size} g{groups} {'NHWC' if layout == torch.channels_last else 'NCHW'}"
            print(f"{case:22s} {best[0]:24s} {best[1]:22s} {best[2]:7.1f} {issue:8.1f} {mem:7.1f} "
                  f"{max(issue, mem) / 0.8:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
