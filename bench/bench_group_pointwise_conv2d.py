#!/usr/bin/env python
"""Benchmark cnnkern.group_pointwise_conv2d (grouped 1x1 conv fused with the channel shuffle after it) and
cnnkern.shuffle_cat_pointwise (ShuffleNetV2 unit tail: shuffle(cat([passthrough, conv1x1(x)]), 2)) against
eager F.conv2d + F.channel_shuffle and torch.compile of the same two ops, on every 1x1 layer of
ShuffleNetV1 1.0x (g = 3 and g = 8) and ShuffleNetV2 x1.0; see bench/shapes_group_pointwise.py.

Same procedure as bench_conv2d.py (bench/_driver.py): every provider is checked against the same ops in
higher precision before it is timed. Each layer carries the shuffle that follows it in the real network:
the baselines run conv + shuffle (or conv + cat + shuffle), the cnnkern providers the fused op.
``cnnkern-triton-noshuffle`` / ``cnnkern-cuda-noshuffle`` run the same Triton / CUDA kernel without the
shuffle (shuffle_groups=None, or shuffle_groups=1 for the concat layers), so the cost of the fused shuffle
can be read off. The baseline's
F.channel_shuffle returns a contiguous (NCHW) tensor even for channels_last input: that copy is part of
its real cost. 1x1 convs are bound by memory, so next to TFLOP/s each result gives GB/s of its minimal
traffic and that as a % of the copy bandwidth measured at the start of the run (%bw).

Without a CUDA GPU the script still runs, on reduced shapes, timing only the CPU paths; those numbers
say nothing about GPU kernel performance. See bench/README.md.

    python bench/bench_group_pointwise_conv2d.py            # full grid on GPU; quick reduced run on CPU
    python bench/bench_group_pointwise_conv2d.py --quick    # headline subset: bf16, both layouts, batch 256
"""

from __future__ import annotations

import contextlib
import math
import sys

import _common as C
import _driver as D
import torch
import torch.nn.functional as F
from shapes_group_pointwise import GROUP_POINTWISE, GroupPointwiseShape

PROVIDERS = {
    "cudnn": "eager F.conv2d(groups=g) (cuDNN, cudnn.benchmark=True) then F.channel_shuffle (ShuffleNetV2 "
             "tails: torch.cat with the passthrough, then F.channel_shuffle(., 2))",
    "compile": "torch.compile of the same conv + shuffle function (dynamic=False), mode from --compile-mode",
    "cnnkern-cuda": "cnnkern.group_pointwise_conv2d / shuffle_cat_pointwise inside use_backend('cuda')",
    "cnnkern-triton": "cnnkern.group_pointwise_conv2d / shuffle_cat_pointwise inside use_backend('triton')",
    "cnnkern-triton-noshuffle": "the same Triton kernel without the shuffle (shuffle_groups=None; concat "
                                "layers: shuffle_cat_pointwise with shuffle_groups=1), checked against the "
                                "unshuffled reference",
    "cnnkern-cuda-noshuffle": "the same CUDA kernel without the shuffle (as cnnkern-triton-noshuffle)",
    "cnnkern-triton-pergroup": "cnnkern-triton with the slab kernels off (cnnkern.triton.group_pointwise_conv2d"
                               ".SLAB): the per-group GEMM kernels the slab ones replaced, in the same run",
    "cnnkern-auto": "cnnkern.group_pointwise_conv2d / shuffle_cat_pointwise with the automatic backend choice",
    "cnnkern-reference": "cnnkern.group_pointwise_conv2d / shuffle_cat_pointwise inside use_backend('reference')",
    "aten-cpu": "eager F.conv2d + F.channel_shuffle on the CPU (ATen)",
}
NOSHUFFLE = "cnnkern-triton-noshuffle"
NOSHUFFLE_CUDA = "cnnkern-cuda-noshuffle"
NOSHUFFLE_OF = {"cnnkern-triton": NOSHUFFLE, "cnnkern-cuda": NOSHUFFLE_CUDA}  # fused provider -> its baseline
PERGROUP = "cnnkern-triton-pergroup"

# The targets. (a) fused vs the same kernel without shuffle; (b), (c) geomean speedups of the fused
# op over the layers that the network shuffles after (fwd and fwd+bwd, every config).
SHUFFLE_OVERHEAD_GOAL = 5.0  # % (at most)
SPEEDUP_GOALS = (("b", "cudnn", 1.4, "geomean x eager conv+shuffle, shuffled layers"),
                 ("c", "compile", 1.15, "geomean x torch.compile, shuffled layers"))
TARGET_PROVIDERS = ("cnnkern-triton", "cnnkern-cuda")

def _shuffled(s: GroupPointwiseShape) -> bool:
    return s.shuffle_groups is not None


# ``passthrough``: the ShuffleNetV2 tail's passthrough half, an extra input of the concat layers' problems
# (make_problem returns it in D.Problem.inputs; the driver hands it to these call builders).
def eager_call(s: GroupPointwiseShape, passthrough: torch.Tensor | None = None):
    g, sg, p = s.groups, s.shuffle_groups, passthrough
    if s.cat:
        def f(x, w):
            return F.channel_shuffle(torch.cat([p, F.conv2d(x, w, None, 1, 0, 1, g)], 1), sg)
    elif sg is not None:
        def f(x, w):
            return F.channel_shuffle(F.conv2d(x, w, None, 1, 0, 1, g), sg)
    else:
        def f(x, w):
            return F.conv2d(x, w, None, 1, 0, 1, g)
    return f


def cnnkern_call(ck, s: GroupPointwiseShape, shuffle: bool = True, passthrough: torch.Tensor | None = None):
    g, sg, p = s.groups, s.shuffle_groups, passthrough
    if s.cat:
        sg = sg if shuffle else 1
        return lambda x, w: ck.shuffle_cat_pointwise(p, x, w, None, g, shuffle_groups=sg)
    sg = sg if shuffle else None
    return lambda x, w: ck.group_pointwise_conv2d(x, w, None, g, sg)


def provider_call(name: str, ck, s: GroupPointwiseShape, passthrough: torch.Tensor | None = None):
    return cnnkern_call(ck, s, shuffle=name not in NOSHUFFLE_OF.values(), passthrough=passthrough)


@contextlib.contextmanager
def provider_context(name: str):
    """The per-group provider's switch, held around its check and timing (the backward included)."""
    if name != PERGROUP:
        yield
        return
    from cnnkern.triton import group_pointwise_conv2d as triton_gpw

    prior = triton_gpw.SLAB[0]
    triton_gpw.SLAB[0] = False
    try:
        yield
    finally:
        triton_gpw.SLAB[0] = prior


def make_problem(s: GroupPointwiseShape, n: int, dtype: torch.dtype, layout: str, backward: bool, ref_dtype,
                 dev: torch.device, seed: int):
    """x, w, dy and the higher-precision references: {None: conv + the layer's shuffle (or cat + shuffle),
    NOSHUFFLE: conv alone (or cat without shuffle), with the same dy}; concat layers also get their
    passthrough tensor as the extra input ``passthrough``."""
    gen = torch.Generator(device=dev).manual_seed(seed)

    def randn(*shape, scale=1.0):
        t = torch.randn(*shape, generator=gen, device=dev, dtype=torch.float32)
        return C.to_layout((t * scale if scale != 1.0 else t).to(dtype), layout)

    hw, oc = s.hw, s.cout
    x = randn(n, s.cin, hw, hw)
    w = randn(s.cout, s.cin // s.groups, 1, 1, scale=1 / math.sqrt(s.cin // s.groups))
    p = randn(n, oc, hw, hw) if s.cat else None
    out_c = 2 * oc if s.cat else oc
    dy = randn(n, out_c, hw, hw) if backward else None

    refs = {}
    xr = x.detach().to(ref_dtype).requires_grad_(backward)
    wr = w.detach().to(ref_dtype).requires_grad_(backward)
    with D.strict_fp32() if dev.type == "cuda" else contextlib.nullcontext():
        yr = F.conv2d(xr, wr, None, 1, 0, 1, s.groups)
        for key, shuffle in ((None, True), (NOSHUFFLE, False)):
            y = torch.cat([p.to(ref_dtype), yr], 1) if s.cat else yr
            if shuffle and s.shuffle_groups is not None:
                y = F.channel_shuffle(y, s.shuffle_groups)
            ref = [y.detach()]
            if backward:
                ref += [t.detach() for t in torch.autograd.grad(y, (xr, wr), dy.to(ref_dtype), retain_graph=True)]
            refs[key] = ref
    refs[NOSHUFFLE_CUDA] = refs[NOSHUFFLE]
    if backward:
        x.requires_grad_(True)
        w.requires_grad_(True)
    return D.Problem(x, w, dy, refs, {"passthrough": p} if s.cat else {})


def counts(s: GroupPointwiseShape, n: int, elem_size: int, backward: bool) -> tuple[int, int]:
    """FLOPs and minimal traffic of the conv (the shuffle is free when fused); a concat layer also reads
    the passthrough and writes it into the output once (forward only: it needs no gradient here)."""
    flops, nbytes = D.conv_counts(s, n, elem_size, backward)
    if s.cat:
        nbytes += 2 * n * s.cout * s.hw * s.hw * elem_size
    return flops, nbytes


CPU_CHANNEL_DIV = 8


def reduce_shape(s: GroupPointwiseShape) -> GroupPointwiseShape:
    """CPU reduction that keeps the structure: channels per group / 8 (at least 1), C_out a multiple of
    both groups and shuffle groups, spatial size capped at 16."""
    import dataclasses

    g = s.groups
    unit = math.lcm(g, s.shuffle_groups or 1)
    cin = max(1, s.cin // g // CPU_CHANNEL_DIV) * g
    cout = max(unit, s.cout // CPU_CHANNEL_DIV // unit * unit)
    return dataclasses.replace(s, cin=cin, cout=cout, hw=min(s.hw, 16))


def add_arguments(p) -> None:
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode of the compile provider (default 'default'; 'max-autotune-no-"
                        "cudagraphs' also tries inductor's Triton conv templates, minutes per problem)")


def on_start(run: D.Run) -> None:
    run.spec.compile_mode = run.args.compile_mode
    run.meta["compile_mode"] = run.args.compile_mode
    run.meta["shapes"] = [dict(s.as_dict(), shuffle_groups=s.shuffle_groups, cat=s.cat) for s in run.shapes]
    if "compile" in run.runnable:
        print(f"compile: torch.compile(conv + shuffle, mode={run.args.compile_mode!r}, dynamic=False); compile "
              "time is not timed")
    print("note: the eager baseline's F.channel_shuffle returns NCHW even for channels_last input (part of "
          "its cost); layers without a shuffle in the network run the plain conv in every provider")


# --------------------------------------------------------------------------------------------------
# Targets


def _key(r: dict) -> tuple:
    return r["layer"], r["dtype"], r["layout"], r["batch"], r["mode"]


def evaluate_targets(run: D.Run, summary: list[dict]) -> list[dict]:
    shuffled = {s.name for s in run.shapes if _shuffled(s)}
    recs = [r for r in run.records if r["layer"] in shuffled] if run.on_gpu else []
    out = []

    def row(tid, prov, what, goal, vals, chosen, value, better):
        not_ok = sum(r.get("status") != "ok" for r in chosen)
        if not run.on_gpu:
            verdict = "n/a (no GPU)"
        elif chosen and all(r.get("status") == "unsupported" for r in chosen):
            verdict = "n/a (unsupported: " + (chosen[0].get("note") or "")[:60] + ")"
        elif value is None:
            verdict = "not measured"
        elif not_ok:
            verdict = f"FAIL ({not_ok} not ok)"
        else:
            verdict = "PASS" if better(value) else "FAIL"
        n_pass = sum(bool(better(v)) for v in vals)
        out.append({"target": tid, "provider": prov, "goal": goal, "value": value, "n": len(vals),
                    "n_pass": n_pass, "not_ok": not_ok, "what": what, "verdict": verdict})

    # (a) shuffle overhead: ms(fused) / ms(same kernel, no shuffle) - 1, geomean over the shuffled layers.
    for prov, noshuffle in NOSHUFFLE_OF.items():
        fused = {_key(r): r for r in recs if r["provider"] == prov}
        plain = {_key(r): r for r in recs if r["provider"] == noshuffle}
        chosen = [r for k, r in fused.items() if k in plain] + [r for k, r in plain.items() if k in fused]
        ratios = [fused[k]["ms"] / plain[k]["ms"] for k in fused if k in plain
                  and fused[k].get("status") == "ok" and plain[k].get("status") == "ok"]
        pcts = [100.0 * (v - 1) for v in ratios]
        value = 100.0 * (C.geomean(ratios) - 1) if ratios else None
        row("a", prov, "shuffle overhead vs noshuffle (geomean %), shuffled layers", SHUFFLE_OVERHEAD_GOAL,
            pcts, chosen, value, lambda v: v <= SHUFFLE_OVERHEAD_GOAL)
    # (b), (c) speedups.
    for prov in TARGET_PROVIDERS:
        mine = [r for r in recs if r["provider"] == prov]
        for tid, base, goal, what in SPEEDUP_GOALS:
            field = "speedup" if base == run.baseline else f"speedup_vs_{base}"
            vals = [r[field] for r in mine if r.get("status") == "ok" and r.get(field)]
            row(tid, prov, what, goal, vals, mine, C.geomean(vals) if vals else None, lambda v, g=goal: v >= g)
    return out


def print_targets(run: D.Run, targets: list[dict]) -> None:
    print("\n== targets (eager = cudnn conv + F.channel_shuffle; shuffled layers = those the network shuffles "
          "after; pass = results that meet the goal on their own) ==")
    for t in targets:
        if t["target"] == "a":
            val = "-" if t["value"] is None else f"{t['value']:+.1f}%"
            goal = f"<= {t['goal']:g}%"
        else:
            val = "-" if t["value"] is None else f"{t['value']:.3f}x"
            goal = f">= {t['goal']:g}x"
        print(f"  ({t['target']}) {t['provider']:15} {t['what']:58} {val:>8} {goal:>8}  "
              f"pass {t['n_pass']}/{t['n']}  {t['verdict']}")


SPEC = D.BenchSpec(
    name="group_pointwise_conv2d",
    description="Benchmark cnnkern.group_pointwise_conv2d / shuffle_cat_pointwise vs eager conv + "
                "channel_shuffle and torch.compile on the 1x1 layers of ShuffleNetV1 (g=3, g=8) and "
                "ShuffleNetV2 x1.0.",
    shapes=GROUP_POINTWISE,
    shapes_label="ShuffleNet",
    providers=PROVIDERS,
    default_providers={"cuda": ["cudnn", "compile", "cnnkern-cuda", NOSHUFFLE_CUDA, "cnnkern-triton", NOSHUFFLE],
                       "cpu": ["aten-cpu", "cnnkern-reference", "cnnkern-triton", NOSHUFFLE, "cnnkern-cuda"]},
    baselines={"cuda": ["cudnn", "compile"], "cpu": ["aten-cpu", "compile"]},
    layers_help="keep layers whose name contains PAT or matches it as a regex, or whose network is PAT "
                "(shv1g3, shv1g8, shv2)",
    quick_help="headline subset (bf16, channels_last and nchw, batch 256 on GPU) unless those flags are "
               "given, and shorter timing. Implied on CPU.",
    dtypes=(["fp16", "bf16"], ["bf16"]),
    layouts=(["channels_last", "nchw"], ["channels_last", "nchw"]),
    batches=([64, 256], [256]),
    cpu_channel_div=CPU_CHANNEL_DIV,
    evaluate_targets=evaluate_targets,
    print_targets=print_targets,
    summary_title="== geomean speedup vs {baseline} (>1 = faster) per config: over all layers ('all') and per "
                  "network; 'weighted' = the network's total 1x1 time ratio (layers weighted by count); "
                  "'gm xcompile' = geomean speedup vs torch.compile ==",
    group_header="network",
    cnnkern_api="group_pointwise_conv2d",
    cnnkern_call=lambda ck, s, **inputs: cnnkern_call(ck, s, **inputs),
    cnnkern_provider_call=provider_call,
    compile_mode="default",
    counts=counts,
    interpreter_layers=("shv1g3.stage4.1.gconv1", "shv1g8.stage4.0.gconv2", "shv2.stage4.0.branch1.2"),
    gpu_timing={"full": (25.0, 100.0), "quick": (10.0, 50.0)},
    summary_all_groups=True,
    measure_bandwidth=True,
    add_arguments=add_arguments,
    on_start=on_start,
    eager_call=eager_call,
    make_problem=make_problem,
    reduce_shape=reduce_shape,
    provider_backends={NOSHUFFLE: "triton", NOSHUFFLE_CUDA: "cuda", PERGROUP: "triton"},
    provider_context=provider_context,
    explain_failures=False,
)

if __name__ == "__main__":
    sys.exit(D.main(SPEC))
