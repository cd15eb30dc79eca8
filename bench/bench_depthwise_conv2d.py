#!/usr/bin/env python
"""Benchmark cnnkern.depthwise_conv2d (CUDA and Triton backends) against cuDNN eager and torch.compile on
every depthwise layer of MobileNetV1, MobileNetV2, ShuffleNetV2 x1.0, ConvNeXt-T (7x7) and RepLKNet-31B
(31x31 ... 13x13); see bench/shapes_depthwise.py.

Same procedure as bench_conv2d.py (bench/_driver.py): every provider is checked against F.conv2d in
higher precision before it is timed (a mismatch is reported, not timed). Depthwise convolution is bound by
memory, so next to TFLOP/s each result gives GB/s of its minimal traffic and that as a % of the copy
bandwidth measured at the start of the run (%bw). The summary gives geomean speedups vs cudnn and vs
torch.compile per config and per network, then the issue's targets with PASS / FAIL / not measured, and a
small section times the weight gradient alone with torch.use_deterministic_algorithms on and off.

Without a CUDA GPU the script still runs, on reduced shapes, timing only the CPU paths; those numbers
say nothing about GPU kernel performance. See bench/README.md.

    python bench/bench_depthwise_conv2d.py            # full grid on GPU; quick reduced run on CPU
    python bench/bench_depthwise_conv2d.py --quick    # headline subset: bf16, both layouts, batch 256
    python bench/bench_depthwise_conv2d.py --layers dilated   # DeepLab dilated depthwise vs deterministic cuDNN
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import _common as C
import _deterministic as DET
import _driver as D
import torch
from shapes_depthwise import DEPTHWISE, DILATED_DEPTHWISE

PROVIDERS = {
    "cudnn": "F.conv2d(groups=C) eager on the GPU, cudnn.benchmark=True. ATen runs cuDNN or its own "
             "depthwise kernel (NCHW bf16, NCHW strided, ...); the note column names the one it picked",
    "compile": "torch.compile(F.conv2d, dynamic=False), mode from --compile-mode (default 'default')",
    "cnnkern-cuda": "cnnkern.depthwise_conv2d inside cnnkern.use_backend('cuda')",
    "cnnkern-triton": "cnnkern.depthwise_conv2d inside cnnkern.use_backend('triton')",
    "cnnkern-auto": "cnnkern.depthwise_conv2d with its automatic backend choice",
    "cnnkern-reference": "cnnkern.depthwise_conv2d inside cnnkern.use_backend('reference')",
    "aten-cpu": "F.conv2d(groups=C) eager on the CPU (ATen)",
}
EAGER = ("cudnn", "aten-cpu")

# The targets, evaluated for each of these providers ("eager" = the cudnn provider).
TARGET_PROVIDERS = ("cnnkern-cuda", "cnnkern-triton")
BW_GOAL = 80.0  # (a) % of the measured copy bandwidth
SPEEDUP_TARGETS = (  # (id, what, which records, goal): geomean speedup vs cudnn over those records
    ("b", "fwd geomean x eager, all layers and configs", lambda r: r["mode"] == "fwd", 1.3),
    ("c", "fwd geomean x eager, bf16 NCHW",
     lambda r: r["mode"] == "fwd" and r["dtype"] == "bf16" and r["layout"] == "nchw", 2.0),
    ("d", "fwd+bwd geomean x eager, all layers and configs", lambda r: r["mode"] == "fwdbwd", 1.5),
)

# Weight-gradient timing with deterministic algorithms on vs off: a few representative layers
# (3x3 stride 2 on a big map, 3x3 on many channels, 7x7, 31x31).
DET_LAYERS = ("mnv2.block2.dw", "mnv2.block8.dw", "convnext.stage1.dw", "replk.stage1.dw")


def depthwise_call(ck, s):
    return lambda x, w: ck.depthwise_conv2d(x, w, None, s.stride, s.padding, s.dilation)


def add_arguments(p) -> None:
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode of the compile provider (default 'default': inductor calls ATen's "
                        "convolution, i.e. cuDNN, for the conv itself; 'max-autotune-no-cudagraphs' also "
                        "tries inductor's Triton conv templates, minutes per problem)")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                   help="time the weight gradient alone with torch.use_deterministic_algorithms(True) vs "
                        f"False on {', '.join(DET_LAYERS)} (default: on when fwdbwd is run)")


def on_start(run: D.Run) -> None:
    run.spec.compile_mode = run.args.compile_mode
    run.meta["compile_mode"] = run.args.compile_mode
    cudnn = torch.backends.cudnn
    run.meta["cudnn_flags"] = {"enabled": cudnn.enabled, "benchmark": cudnn.benchmark,
                               "deterministic": cudnn.deterministic, "allow_tf32": cudnn.allow_tf32,
                               "available": cudnn.is_available(),
                               "version": cudnn.version() if cudnn.is_available() else None}
    if run.on_gpu:
        flags = " ".join(f"{k}={v}" for k, v in run.meta["cudnn_flags"].items())
        print(f"cudnn: {flags}\nnote: for depthwise convs ATen uses cuDNN only in some cases (channels_last; "
              "NCHW fp16 stride 1 with enough channels); otherwise, e.g. NCHW bf16, it runs its own depthwise "
              "kernel. The note column of the cudnn rows names the kernel family ATen picked.")
    if "compile" in run.runnable:
        print(f"compile: torch.compile(F.conv2d, mode={run.args.compile_mode!r}, dynamic=False); compile "
              "time is not timed")


# --------------------------------------------------------------------------------------------------
# Targets


def _verdict(run: D.Run, value: float | None, goal: float, not_ok: int) -> str:
    if not run.on_gpu:
        return "n/a (no GPU)"
    if value is None:
        return "not measured"
    if not_ok:
        return f"FAIL ({not_ok} not ok)"  # a mismatch, error or refusal in the set cannot pass
    return "PASS" if value >= goal else "FAIL"


def evaluate_targets(run: D.Run, summary: list[dict]) -> list[dict]:
    def beyond_l2(r) -> bool:  # (a): stride-1 forward whose minimal traffic does not fit in L2
        return r["mode"] == "fwd" and r["stride"] == 1 and bool(run.l2_bytes) and r["bytes"] > run.l2_bytes

    # (id, what, which records, goal, metric, aggregate): (a) needs every result at the goal, so the worst one.
    rows = [("a", "fwd %bw, worst stride-1 layer with minimal traffic > L2", beyond_l2, BW_GOAL, "bw_pct", min)]
    rows += [(tid, what, keep, goal, "speedup", C.geomean) for tid, what, keep, goal in SPEEDUP_TARGETS]
    out = []
    for prov in TARGET_PROVIDERS:
        mine = [r for r in run.records if r["provider"] == prov] if run.on_gpu else []
        for tid, what, keep, goal, metric, agg in rows:
            chosen = [r for r in mine if keep(r)]
            vals = [r[metric] for r in chosen if r.get("status") == "ok" and r.get(metric)]
            not_ok = sum(r.get("status") != "ok" for r in chosen)
            value = agg(vals) if vals else None
            out.append({"target": tid, "provider": prov, "goal": goal, "value": value, "n": len(vals),
                        "n_pass": sum(v >= goal for v in vals), "not_ok": not_ok,
                        "geomean": C.geomean(vals), "what": what, "verdict": _verdict(run, value, goal, not_ok)})
    return out


def print_targets(run: D.Run, targets: list[dict]) -> None:
    l2 = f"{run.l2_bytes / 2**20:g} MiB" if run.l2_bytes else "n/a"
    bw = f"{run.measured_gbps:.0f} GB/s" if run.measured_gbps else "n/a"
    print(f"\n== targets (eager = the cudnn provider; measured bandwidth {bw}, L2 {l2}; pass = results that "
          "meet the goal on their own) ==")
    for t in targets:
        unit = "%" if t["target"] == "a" else "x"
        val = "-" if t["value"] is None else f"{t['value']:.1f}%" if unit == "%" else f"{t['value']:.3f}x"
        goal = f">= {t['goal']:g}{unit}"
        print(f"  ({t['target']}) {t['provider']:15} {t['what']:55} {val:>7} {goal:>8}  "
              f"pass {t['n_pass']}/{t['n']}  {t['verdict']}")


# --------------------------------------------------------------------------------------------------
# Deterministic weight gradient


@contextlib.contextmanager
def deterministic_algorithms(on: bool):
    old, old_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(on)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old, warn_only=old_warn)


def wgrad_fn(prov: str, s, x, w, dy):
    """The weight gradient alone: ATen's convolution_backward for the eager providers, cnnkern's
    conv2d_backward_weight op (which dispatches to the depthwise kernels) for the cnnkern ones."""
    st, pad, dil = [s.stride] * 2, [s.padding] * 2, [s.dilation] * 2
    if prov in EAGER:
        return lambda: torch.ops.aten.convolution_backward(dy, x, w, None, st, pad, dil, False, [0, 0], s.groups,
                                                           [False, True, False])[1]
    return lambda: torch.ops.cnnkern.conv2d_backward_weight(dy, x, list(w.shape), st, pad, dil, s.groups)


def _det_one(run: D.Run, prov: str, s, x, w, dy, ref_dw, dt: str, rec: dict) -> None:
    tol = C.REL_TOL[dt]
    provider = D.Provider(prov, run.ck, s, run.spec)
    for det, tag in ((False, "nondet"), (True, "det")):
        try:
            with deterministic_algorithms(det), provider.context():
                f = wgrad_fn(prov, s, x, w, dy)
                first = f()
                again = f()
                D.sync(run.dev)
                rec[f"repeatable_{tag}"] = bool(torch.equal(first, again))
                part = {}
                if not D.check_outputs(part, (tag,), (first,), (ref_dw,), tol):
                    rec.update(status="mismatch", note=part["note"], **{f"err_{tag}": part["err"]})
                    return
                rec[f"err_{tag}"] = part["err"]
                del first, again
                rec[f"ms_{tag}"] = run.time(f)["ms"]
        except Exception as e:  # noqa: BLE001 - a failure is a result
            D.record_failure(run, rec, e, prov.startswith("cnnkern-"))
            if det and "deterministic" in str(e).lower():  # no deterministic implementation: a fact, not a bug
                rec["status"] = "unsupported"
            rec["note"] = f"{tag}: {rec['note']}"
            return
    rec.update(status="ok", slowdown=rec["ms_det"] / rec["ms_nondet"],
               err=max(rec["err_nondet"], rec["err_det"]),
               repeatable=f"{'yes' if rec['repeatable_nondet'] else 'no'}/{'yes' if rec['repeatable_det'] else 'no'}")


def deterministic_section(run: D.Run) -> dict[str, list[dict]]:
    enabled = run.args.deterministic
    if enabled is None:
        enabled = "fwdbwd" in run.modes
    provs = [p for p in run.runnable if p in EAGER or p in ("cnnkern-cuda", "cnnkern-triton", "cnnkern-reference")]
    if not enabled or not provs:
        return {}
    shapes = [s for s in run.shapes if s.name in DET_LAYERS] or run.shapes[:2]
    if run.interpreter:
        shapes = shapes[:1]
    dt, n = run.dtypes[0], max(run.batches)
    print(f"\n== weight gradient alone, torch.use_deterministic_algorithms off vs on: {dt}, batch {n}; "
          "slowdown = det ms / non-det ms; repeatable = two calls bitwise equal (non-det/det) ==")
    table = C.Table([C.Col("layer", "layer", 26, align="<"), C.Col("problem", "problem", 22, align="<"),
                     C.Col("provider", "provider", 17, align="<"), C.Col("layout", "layout", 13, align="<"),
                     C.Col("status", "status", 11, align="<"), C.Col("ms_nondet", "ms", 9, ".4f"),
                     C.Col("ms_det", "ms det", 9, ".4f"), C.Col("slowdown", "slowdown", 8, ".2f"),
                     C.Col("repeatable", "repeatable", 10, align="<"), C.Col("err", "rel.err", 8, ".1e"),
                     C.Col("note", "note", 10, align="<")])
    table.header()
    out = []
    for li, layout in enumerate(run.layouts):
        for si, s in enumerate(shapes):
            base = {"layer": s.name, "group": s.group, "problem": f"N{n} {s.describe()}", "batch": n,
                    "dtype": dt, "layout": layout, "mode": "wgrad", "k": s.k, "stride": s.stride}
            try:
                x, w, dy, ref = D.make_problem(s, n, C.DTYPES[dt], layout, True, run.ref_dtype, run.dev,
                                               run.args.seed * 1_000_003 + 900_000 + li * 100 + si)
            except Exception as e:  # noqa: BLE001
                if run.on_gpu:
                    torch.cuda.empty_cache()
                rec = dict(base, provider="(setup)", status="error", note=D.short_exc(e))
                out.append(rec)
                table.row(rec)
                continue
            x, w = x.detach(), w.detach()
            for prov in provs:
                rec = dict(base, provider=prov)
                _det_one(run, prov, s, x, w, dy, ref[2], dt, rec)
                out.append(rec)
                table.row(rec)
            del x, w, dy, ref
    return {"deterministic_wgrad": out}


SPEC = D.BenchSpec(
    name="depthwise_conv2d",
    description="Benchmark cnnkern.depthwise_conv2d vs cuDNN eager / torch.compile on the depthwise layers of "
                "MobileNetV1/V2, ShuffleNetV2, ConvNeXt-T and RepLKNet-31B.",
    shapes=DEPTHWISE,
    shapes_label="network",
    providers=PROVIDERS,
    default_providers={"cuda": ["cudnn", "compile", "cnnkern-cuda", "cnnkern-triton"],
                       "cpu": ["aten-cpu", "cnnkern-reference", "cnnkern-triton", "cnnkern-cuda"]},
    baselines={"cuda": ["cudnn", "compile"], "cpu": ["aten-cpu", "compile"]},
    layers_help="keep layers whose name contains PAT or matches it as a regex, whose network is PAT (mnv1, "
                "mnv2, shv2, convnext, replk) or whose kernel is PAT (3x3, 7x7, 31x31, ...); 'dilated' switches to the "
                "dilated depthwise convs of DeepLab networks (then filtered by the other PATs)",
    quick_help="headline subset (bf16, channels_last and nchw, batch 256 on GPU) unless those flags are "
               "given, and shorter timing. Implied on CPU.",
    dtypes=(["fp16", "bf16"], ["bf16"]),
    layouts=(["channels_last", "nchw"], ["channels_last", "nchw"]),
    batches=([64, 256], [256]),
    cpu_channel_div=16,
    cpu_dtypes=["fp16"],  # ATen's CPU bf16 kernels miss the bf16 tolerance on the 27-31 tap kernels
    evaluate_targets=evaluate_targets,
    print_targets=print_targets,
    summary_title="== geomean speedup vs {baseline} (>1 = faster) per config: over all layers ('all') and per "
                  "network; 'weighted' = the network's total depthwise time ratio (layers weighted by count); "
                  "'gm xcompile' = geomean speedup vs torch.compile ==",
    group_header="network",
    cnnkern_api="depthwise_conv2d",
    cnnkern_call=depthwise_call,
    compile_mode="default",
    interpreter_layers=("mnv2.block2.dw", "mnv2.block8.dw", "convnext.stage1.dw", "replk.stage4.dw"),
    gpu_timing={"full": (25.0, 100.0), "quick": (10.0, 50.0)},
    summary_all_groups=True,
    measure_bandwidth=True,
    record_aten_backend=True,
    add_arguments=add_arguments,
    on_start=on_start,
    extra_sections=deterministic_section,
)

# --layers dilated: the dilated depthwise convs of DeepLab networks (shapes_depthwise.DILATED_DEPTHWISE),
# batch 16, with the deterministic providers; the targets are issue 5's dilated one instead of (a)-(d).
DILATED_SPEC = DET.dilated_spec(
    SPEC, DILATED_DEPTHWISE, "cnnkern.depthwise_conv2d",
    ["cudnn", "cudnn-det", "compile", "cnnkern-cuda", "cnnkern-triton", "cnnkern-cuda-det", "cnnkern-triton-det"],
    description="Benchmark cnnkern.depthwise_conv2d vs cuDNN eager (also deterministic) / torch.compile on the "
                "dilated depthwise layers of DeepLab networks.",
    batches=([8, 16], [16]),
    summary_title="== geomean speedup vs {baseline} (>1 = faster) per config, over all layers ('all') and per "
                  "network; 'weighted' = the network's total time ratio; 'gm xcudnn-det' / 'gm xcompile' = "
                  "geomean speedup vs deterministic cuDNN / torch.compile ==",
    interpreter_layers=("mnv2dl8.block15.dw", "mnv3dl.block13.dw"),
)


def main(argv: list[str] | None = None) -> int:
    dilated, argv = DET.split_dilated(sys.argv[1:] if argv is None else argv)
    return D.main(DILATED_SPEC if dilated else SPEC, argv)


if __name__ == "__main__":
    sys.exit(main())
