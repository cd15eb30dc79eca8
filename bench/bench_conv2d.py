#!/usr/bin/env python
"""Benchmark cnnkern.conv2d (CUDA and Triton backends) against cuDNN and torch.compile on the distinct
convolutions of ResNet-50 (see bench/shapes.py).

For every (layer, batch, dtype, layout, mode) and provider the output (and, in fwdbwd mode, grad_input
and grad_weight) is first checked against F.conv2d computed in higher precision; a provider that fails
the check is reported as "mismatch" and not timed for that problem. Then the median time is measured
(GPU: CUDA events with the L2 cache flushed between runs; CPU: time.perf_counter).

Without a CUDA GPU the script still runs, on reduced shapes, timing only the CPU paths; those numbers
say nothing about GPU kernel performance. See bench/README.md. The loop itself is bench/_driver.py.

    python bench/bench_conv2d.py                       # full grid on GPU; quick reduced run on CPU
    python bench/bench_conv2d.py --quick --layers 3x3  # headline configuration only
    python bench/bench_conv2d.py --layers dilated      # DeepLabv3 dilated 3x3 convs vs deterministic cuDNN
"""

from __future__ import annotations

import sys

import _deterministic as DET
import _driver as D
from shapes import DILATED, RESNET50

PROVIDERS = {
    "cudnn": "torch.nn.functional.conv2d eager on the GPU (cuDNN), cudnn.benchmark=True",
    "cnnkern-cuda": "cnnkern.conv2d inside cnnkern.use_backend('cuda')",
    "cnnkern-triton": "cnnkern.conv2d inside cnnkern.use_backend('triton')",
    "compile": "torch.compile(F.conv2d, mode='max-autotune', dynamic=False); slow to compile, opt-in",
    "cnnkern-auto": "cnnkern.conv2d with its automatic backend choice",
    "cnnkern-reference": "cnnkern.conv2d inside cnnkern.use_backend('reference')",
    "aten-cpu": "torch.nn.functional.conv2d eager on the CPU (ATen / oneDNN)",
}
# The reported target: ResNet-50 3x3 layers, fp16, channels_last, batch 256, geomean speedup vs cuDNN.
TARGETS = {"cnnkern-triton": 0.85, "cnnkern-cuda": 0.90}
TARGET_CONFIG = {"dtype": "fp16", "layout": "channels_last", "batch": 256, "group": "3x3"}


def target_report(run: D.Run, summary: list[dict]) -> list[dict]:
    out = []
    for prov, goal in TARGETS.items():
        for mode in D.MODES:
            hit = [r for r in summary if r["provider"] == prov and r["mode"] == mode
                   and all(r[k] == v for k, v in TARGET_CONFIG.items())]
            gm = hit[0]["geomean"] if hit else None
            if not run.on_gpu:
                verdict = "n/a (no GPU)"
            elif gm is None:
                verdict = "not measured"
            else:
                verdict = "PASS" if gm >= goal else "BELOW TARGET"
            out.append({"provider": prov, "mode": mode, "target": goal, "geomean": gm, "verdict": verdict})
    return out


def print_targets(run: D.Run, targets: list[dict]) -> None:
    print("\n== target: ResNet-50 3x3, fp16 channels_last, batch 256, geomean vs cudnn ==")
    for t in targets:
        gm = "-" if t["geomean"] is None else f"{t['geomean']:.3f}"
        print(f"  {t['provider']:15} {t['mode']:7} {gm:>6}  (target >= {t['target']:.2f})  {t['verdict']}")


SPEC = D.BenchSpec(
    name="conv2d",
    description="Benchmark cnnkern.conv2d vs cuDNN / torch.compile on ResNet-50 convolutions.",
    shapes=RESNET50,
    shapes_label="ResNet-50",
    providers=PROVIDERS,
    default_providers={"cuda": ["cudnn", "cnnkern-cuda", "cnnkern-triton"],
                       "cpu": ["aten-cpu", "cnnkern-reference", "cnnkern-triton", "cnnkern-cuda"]},
    baselines={"cuda": ["cudnn"], "cpu": ["aten-cpu"]},
    layers_help="keep layers whose name contains PAT or matches it as a regex, or whose kernel class is PAT "
                "(3x3, 1x1, 7x7/stem); 'dilated' switches to DeepLabv3's dilated convs (then filtered by the other PATs)",
    quick_help="headline configuration only (fp16, channels_last, batch 256 on GPU) unless those flags are "
               "given, and shorter timing. Implied on CPU.",
    dtypes=(["fp16", "bf16"], ["fp16"]),
    layouts=(["channels_last", "nchw"], ["channels_last"]),
    batches=([32, 256], [256]),
    evaluate_targets=target_report,
    print_targets=print_targets,
    summary_title="== geomean speedup vs {baseline} (>1 = faster); 'weighted' = ResNet-50 total time ratio, "
                  "layers weighted by count ==",
    # The Triton interpreter needs seconds per call even on the reduced shapes: on CPU runs that include
    # it, only these representative layers are run unless --layers is given.
    interpreter_layers=("r50.conv1", "r50.layer1.0.conv2", "r50.layer2.0.conv2", "r50.layer1.0.conv3",
                        "r50.layer2.0.downsample.0"),
)

# --layers dilated: DeepLabv3-ResNet-50's dilated 3x3 convs (shapes.DILATED), DeepLab's training batch 16,
# with the deterministic providers; the direct conv2d weight gradient is deterministic in every mode, so the
# plain cnnkern providers are opt-in there.
DILATED_SPEC = DET.dilated_spec(
    SPEC, DILATED, "cnnkern.conv2d", ["cudnn", "cudnn-det", "cnnkern-cuda-det", "cnnkern-triton-det"],
    description="Benchmark cnnkern.conv2d vs cuDNN (also deterministic) on DeepLabv3's dilated 3x3 convs.",
    batches=([8, 16], [16]),
    summary_title="== geomean speedup vs {baseline} (>1 = faster) per config, over all layers ('all') and per "
                  "network; 'weighted' = the network's total dilated-conv time ratio; 'gm xcudnn-det' = geomean "
                  "speedup vs deterministic cuDNN ==",
    interpreter_layers=("dl3os8.layer4.1.conv2", "dl3os16.aspp.1"),
)


def main(argv: list[str] | None = None) -> int:
    dilated, argv = DET.split_dilated(sys.argv[1:] if argv is None else argv)
    return D.main(DILATED_SPEC if dilated else SPEC, argv)


if __name__ == "__main__":
    sys.exit(main())
