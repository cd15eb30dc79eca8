#!/usr/bin/env python
"""Benchmark cnnkern.conv_transpose2d (CUDA and Triton backends) against cuDNN eager (also with
torch.backends.cudnn.deterministic=True) and torch.compile on the transposed convs of a DCGAN generator,
a U-Net decoder and issue 5's 512 -> 256 stride-2 decoder problem (2x2, 4x4 and 3x3 forms); see
bench/shapes_conv_transpose.py.

Same procedure as bench_conv2d.py (bench/_driver.py): every provider is checked against
F.conv_transpose2d in higher precision (output, and in fwdbwd mode grad_input and grad_weight) before it
is timed; a mismatch is reported, not timed. The summary gives geomean speedups per config and network,
then issue 5's target "transposed >= 1.0x cuDNN" for cnnkern-cuda and cnnkern-triton, forward and
forward+backward.

Without a CUDA GPU the script still runs, on reduced shapes, timing only the CPU paths; those numbers
say nothing about GPU kernel performance. See bench/README.md.

    python bench/bench_conv_transpose2d.py            # full grid on GPU; quick reduced run on CPU
    python bench/bench_conv_transpose2d.py --quick    # fp16, both layouts, batch 64, fwd and fwdbwd
    python bench/bench_conv_transpose2d.py --layers dcgan --mode fwd --providers cudnn,cnnkern-cuda
"""

from __future__ import annotations

import sys

import _common as C
import _deterministic as DET
import _driver as D
import torch
import torch.nn.functional as F
from shapes_conv_transpose import CONV_TRANSPOSE, TransposeShape

OP = "cnnkern.conv_transpose2d"
_DET = DET.det_providers(OP)
PROVIDERS = {
    "cudnn": "F.conv_transpose2d eager on the GPU (cuDNN), cudnn.benchmark=True",
    "cudnn-det": _DET["cudnn-det"],
    "compile": "torch.compile(F.conv_transpose2d, dynamic=False), mode from --compile-mode (default 'default')",
    "cnnkern-cuda": f"{OP} inside cnnkern.use_backend('cuda')",
    "cnnkern-triton": f"{OP} inside cnnkern.use_backend('triton')",
    "cnnkern-cuda-det": _DET["cnnkern-cuda-det"],
    "cnnkern-triton-det": _DET["cnnkern-triton-det"],
    "cnnkern-auto": f"{OP} with its automatic backend choice",
    "cnnkern-reference": f"{OP} inside cnnkern.use_backend('reference')",
    "aten-cpu": "F.conv_transpose2d eager on the CPU (ATen)",
}
TARGET_PROVIDERS = ("cnnkern-cuda", "cnnkern-triton")
GOAL = 1.0  # issue 5: transposed >= 1.0x cuDNN (geomean speedup vs the cudnn provider)


def _args(s: TransposeShape) -> tuple:
    return s.stride, s.padding, s.output_padding, s.groups, s.dilation


def eager_call(s: TransposeShape):
    args = _args(s)
    return lambda x, w: F.conv_transpose2d(x, w, None, *args)


def cnnkern_call(ck, s: TransposeShape):
    args = _args(s)
    return lambda x, w: ck.conv_transpose2d(x, w, None, *args)


def make_problem(s: TransposeShape, n: int, dtype: torch.dtype, layout: str, backward: bool, ref_dtype,
                 dev: torch.device, seed: int):
    """x (N, C_in, hw, hw), weight (C_in, C_out / groups, k, k), dy, and the reference computed by
    F.conv_transpose2d from the same rounded inputs in higher precision."""
    return D.make_problem(s, n, dtype, layout, backward, ref_dtype, dev, seed,
                          w_shape=(s.cin, s.cout // s.groups, s.k, s.k),
                          reference=lambda x, w: F.conv_transpose2d(x, w, None, *_args(s)))


def counts(s: TransposeShape, n: int, elem_size: int, backward: bool) -> tuple[int, int]:
    """2*N*H_in*W_in*C_in*(C_out/groups)*k*k per pass (the useful multiply-adds: each input pixel times
    each tap, as for the equivalent conv2d whose input gradient this is; no inserted zeros counted), x3
    with backward; minimal traffic as for conv2d (reads x, w, writes y; fwd+bwd adds dy, x, w, dx, dw)."""
    flops = C.conv2d_flops(n, s.cout, s.cin, s.hw, s.hw, s.k, s.k, s.groups, backward)
    nbytes = C.conv2d_min_bytes(n, s.cin, s.cout, s.hw, s.hw, s.out_hw, s.out_hw, s.k, s.k, s.groups,
                                elem_size, backward)
    return flops, nbytes


def add_arguments(p) -> None:
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode of the compile provider (default 'default': inductor calls ATen's "
                        "convolution, i.e. cuDNN, for the conv itself; 'max-autotune-no-cudagraphs' also tries "
                        "inductor's Triton conv templates, minutes per problem)")


def on_start(run: D.Run) -> None:
    run.spec.compile_mode = run.args.compile_mode
    run.meta["compile_mode"] = run.args.compile_mode
    run.meta["shapes"] = [s.as_dict() for s in run.shapes]
    if "compile" in run.runnable:
        print(f"compile: torch.compile(F.conv_transpose2d, mode={run.args.compile_mode!r}, dynamic=False); "
              "compile time is not timed")
    if "cudnn-det" in run.runnable:
        print("cudnn-det: torch.backends.cudnn.deterministic=True and torch.use_deterministic_algorithms(True) "
              "around its check and timing")


def evaluate_targets(run: D.Run, summary: list[dict]) -> list[dict]:
    out = []
    for prov in TARGET_PROVIDERS:
        for mode, what in (("fwd", "fwd geomean x cudnn, all layers and configs"),
                           ("fwdbwd", "fwd+bwd geomean x cudnn, all layers and configs")):
            chosen = [r for r in run.records if r["provider"] == prov and r["mode"] == mode] if run.on_gpu else []
            out.append(DET.speedup_target(run, mode, prov, what, GOAL, chosen))
    return out


def print_targets(run: D.Run, targets: list[dict]) -> None:
    DET.print_speedup_targets("target: transposed >= 1.0x cuDNN (eager F.conv_transpose2d, cudnn.benchmark; pass = "
                              "results that meet it on their own)", targets)


SPEC = D.BenchSpec(
    name="conv_transpose2d",
    description="Benchmark cnnkern.conv_transpose2d vs cuDNN (also deterministic) / torch.compile on DCGAN, "
                "U-Net and decoder transposed convs.",
    shapes=CONV_TRANSPOSE,
    shapes_label="DCGAN / U-Net / decoder",
    providers=PROVIDERS,
    default_providers={"cuda": ["cudnn", "cudnn-det", "compile", "cnnkern-cuda", "cnnkern-triton"],
                       "cpu": ["aten-cpu", "cnnkern-reference", "cnnkern-triton", "cnnkern-cuda"]},
    baselines={"cuda": ["cudnn", "cudnn-det", "compile"], "cpu": ["aten-cpu"]},
    layers_help="keep layers whose name contains PAT or matches it as a regex, or whose network is PAT (dcgan, "
                "unet, dec) or kernel size is PAT (2x2, 3x3, 4x4)",
    quick_help="headline subset (fp16, channels_last and nchw, batch 64 on GPU) unless those flags are given, "
               "and shorter timing. Implied on CPU.",
    dtypes=(["fp16", "bf16"], ["fp16"]),
    layouts=(["channels_last", "nchw"], ["channels_last", "nchw"]),
    batches=([16, 128], [64]),
    evaluate_targets=evaluate_targets,
    print_targets=print_targets,
    summary_title="== geomean speedup vs {baseline} (>1 = faster) per config, over all layers ('all') and per "
                  "network; 'weighted' = total time ratio (layers weighted by count); 'gm xcudnn-det' / "
                  "'gm xcompile' = geomean speedup vs deterministic cuDNN / torch.compile ==",
    group_header="network",
    cnnkern_api="conv_transpose2d",
    cnnkern_call=cnnkern_call,
    compile_mode="default",
    counts=counts,
    cpu_max_hw=8,  # the input; outputs are at most 16 (stride 2)
    interpreter_layers=("dcgan.up2", "unet.up3", "dec.k3.64"),
    gpu_timing={"full": (25.0, 100.0), "quick": (10.0, 50.0)},
    summary_all_groups=True,
    add_arguments=add_arguments,
    on_start=on_start,
    eager_call=eager_call,
    make_problem=make_problem,
    provider_backends=dict(DET.DET_BACKENDS),
    provider_context=DET.provider_context,
    explain_failures=False,
)

if __name__ == "__main__":
    sys.exit(D.main(SPEC))
