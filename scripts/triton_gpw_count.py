#!/usr/bin/env python
"""SASS per output and a time model of the Triton grouped-pointwise forward on sm_90, without a GPU.

Each benchmark layer's launch (bench/shapes_group_pointwise.py, bf16 channels_last, N = 256; the V2 tails as
plain shuffled convs) is recorded as scripts/triton_sm90_check.py records it (nothing runs; the configs the
autotuner's prune keeps on an H100/H200), compiled for sm_90 and its SASS counted, with the slab kernel's loop
over groups counted GROUPS times and the per-group kernel's K loop its trip count. Per layer the best kept
config gives:

  issue us   outputs x SASS per output / (132 SMs x 4 schedulers x 1.8 GHz x 32 lanes)
  mem us     minimal bytes (x read once, y written once) / 4.24 TB/s (the 2026-11-30 H200 copy rate)
  model us   max(issue, mem) / 0.8

The model ignores tensor-core time (<= 15 % of the memory time on these layers at 400 TFLOP/s, printed as mma
us), L2 traffic of the per-element shuffled stores and latency; it is the prediction a GPU run checks. Notes:
cnnkern/triton/group_pointwise_conv2d.md.

    python scripts/triton_gpw_count.py [--dgrad | --wgrad] [--per-group] [--ops] [name-substring ...]

--dgrad: the input gradient instead (outputs = input-gradient elements; bytes = the output gradient read,
the input gradient written; no ReLU mask); --wgrad: the weight gradient (split-K per group; "outputs" =
input elements, as --dgrad, so the columns compare; bytes = the output gradient and x read once; the host's
sum of the fp32 partials is not counted); --per-group: with the slab off (the per-group kernels on every
layer, as before the slab); --ops: the best config's SASS opcode histogram.
"""

from __future__ import annotations

import os
import sys

# The kernels must be JITFunctions with their GPU configs: the interpreter off before triton is imported.
os.environ.pop("TRITON_INTERPRET", None)
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "bench"))
import torch
import triton
import triton_dw_count as dw
import triton_sm90_check as check
from shapes_group_pointwise import GROUP_POINTWISE
from triton.compiler import ASTSource
from triton.compiler import compile as triton_compile
from triton.runtime.autotuner import Autotuner
from triton.runtime.jit import JITFunction

import cnnkern
import cnnkern.triton.group_pointwise_conv2d as gpw
from cnnkern.triton.tiles import split_chunks

N = 256
ISSUE_PER_US = 132 * 4 * 1.8e3 * 32  # thread instructions per microsecond
COPY_BYTES_PER_US = 4.24e6
MMA_FLOP_PER_US = 400e6


def _per_output(launch, layer) -> tuple[str, float, str]:
    """(tile, SASS instructions per real output, the SASS) of one recorded launch."""
    c = launch.named_constexprs()
    kernel = triton_compile(ASTSource(launch.fn, launch.signature, launch.constexprs, launch.attrs),
                            target=check.TARGET, options=launch.options.__dict__)
    warps = launch.options.num_warps
    bm, bn = int(c["BLOCK_M"]), int(c["BLOCK_N"])
    cg_out, cg_in = layer.cout // layer.groups, layer.cin // layer.groups
    if launch.name == "_gpw_slab_fwd_kernel":
        trips, outputs = layer.groups, bm * min(bn, cg_out) * layer.groups
    elif launch.name == "_gpw_slab_dgrad_kernel":
        trips, outputs = layer.groups, bm * min(bn, cg_in) * layer.groups
    elif launch.name == "_gpw_slab_wgrad_kernel":
        # One (group, tile) per program over a split's chunk of pixels; the splits as the host sizes them
        # on 132 SMs (tiles.reduction_splits), the chunk rounded to the kernel's unit.
        gemm_k = N * layer.hw * layer.hw
        tiles_per_split = layer.groups * triton.cdiv(cg_out, bm) * triton.cdiv(cg_in, bn)
        splits = max(1, min(4 * 132 // tiles_per_split, gemm_k // 1024, 64))
        chunk, splits = split_chunks(gemm_k, splits, gpw._SLAB_WGRAD_UNIT)
        trips, outputs = triton.cdiv(chunk, int(c["BLOCK_K"])), gemm_k * layer.cin / (tiles_per_split * splits)
    elif launch.name == "_gpw_wgrad_kernel":
        # One group and split: a K loop over its chunk of pixels. "Outputs" as for the input gradient (input
        # elements), so the issue time is comparable: thread instructions of the whole grid / N*H*W*C_in.
        splits = int(c["SPLIT_K"])
        gemm_k = N * layer.hw * layer.hw
        chunk = triton.cdiv(triton.cdiv(gemm_k, splits), 64) * 64  # tiles.split_chunks' rounding
        programs = triton.cdiv(cg_out, bm) * triton.cdiv(cg_in, bn) * layer.groups * splits
        trips, outputs = triton.cdiv(chunk, int(c["BLOCK_K"])), gemm_k * layer.cin / programs
    elif launch.name == "_gpw_dgrad_kernel":  # one group, its K loop over cg_out
        trips, outputs = triton.cdiv(cg_out, int(c["BLOCK_K"])), bm * min(bn, cg_in)
    else:  # the per-group forward: one group, its K loop over cg_in
        trips, outputs = triton.cdiv(cg_in, int(c["BLOCK_K"])), bm * min(bn, cg_out)
    _static, dynamic = dw.count(kernel.asm["cubin"], trips)
    tile = f"{bm}x{bn}x{c['BLOCK_K']} w{warps} s{launch.options.num_stages}"
    return tile, dynamic / (outputs / (warps * 32)), kernel.asm["cubin"]  # dynamic: one thread's count


def _histogram(cubin: bytes) -> str:
    import collections
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run([check._CUOBJDUMP, "-sass", f.name], capture_output=True, text=True,
                              check=True).stdout
    counts = collections.Counter(m.group(2) for m in dw.INSN.finditer(sass) if m.group(2) != "NOP")
    return " ".join(f"{op}:{n}" for op, n in counts.most_common(40))


def main(argv: list[str]) -> int:
    JITFunction.run = check._recording_run
    Autotuner.run = check._recording_autotune
    check._accept_cpu_tensors()
    check._as_hopper()
    ops, wgrad = "--ops" in argv, "--wgrad" in argv
    dgrad = wgrad or "--dgrad" in argv
    wanted = ("_gpw_slab_dgrad_kernel", "_gpw_dgrad_kernel") if dgrad else ("_gpw_slab_fwd_kernel", "_gpw_fwd_kernel")
    if wgrad:
        wanted = ("_gpw_slab_wgrad_kernel", "_gpw_wgrad_kernel")
    if "--per-group" in argv:
        gpw.SLAB[0] = False
    names = [a for a in argv if not a.startswith("--")]
    layers = [s for s in GROUP_POINTWISE if not names or any(a in s.name for a in names)]
    print(f"{'layer':26s} {'problem':22s} {'kernel':10s} {'best tile':18s} {'SASS/out':>8s} {'issue us':>8s} "
          f"{'mma us':>7s} {'mem us':>7s} {'model us':>8s}")
    for layer in layers:
        check._records.clear()
        x = torch.empty(N, layer.cin, layer.hw, layer.hw, dtype=torch.bfloat16, memory_format=torch.channels_last)
        w = torch.empty(layer.cout, layer.cin // layer.groups, 1, 1, dtype=torch.bfloat16).requires_grad_(wgrad)
        with cnnkern.use_backend("triton"), torch.set_grad_enabled(dgrad):
            y = cnnkern.group_pointwise_conv2d(x.requires_grad_(dgrad), w, None, groups=layer.groups,
                                               shuffle_groups=layer.shuffle_groups)
            if dgrad:  # nothing runs: the launches are recorded
                y.backward(torch.empty_like(y))
        launches = [r for r in check._records.values() if r.name in wanted]
        if not launches:
            print(f"{layer.name:26s} {layer.describe():22s} (no Triton forward launch recorded)")
            continue
        tile, per_out, cubin = min((_per_output(r, layer) for r in launches), key=lambda t: t[1])
        outputs = N * layer.hw * layer.hw * (layer.cin if dgrad else layer.cout)
        issue = outputs * per_out / ISSUE_PER_US
        mem = N * layer.hw * layer.hw * (layer.cin + layer.cout) * 2 / COPY_BYTES_PER_US
        mma = 2 * outputs * ((layer.cout if dgrad else layer.cin) // layer.groups) / MMA_FLOP_PER_US
        kind = "slab" if launches[0].name.startswith("_gpw_slab") else "per-group"
        print(f"{layer.name:26s} {layer.describe():22s} {kind:10s} {tile:18s} {per_out:8.1f} {issue:8.1f} "
              f"{mma:7.1f} {mem:7.1f} {max(issue, mem) / 0.8:8.1f}")
        if ops:
            print("   ", _histogram(cubin))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
