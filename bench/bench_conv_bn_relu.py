#!/usr/bin/env python
"""Benchmark cnnkern.conv_bn_relu (conv + BatchNorm + activation as one op) against eager conv -> BN -> act
and torch.compile of the same three ops, on every conv-BN(-act) chain of ResNet-50 and MobileNetV2
(bench/shapes_conv_bn.py: real shapes, checked against torchvision).

Two modes (the driver's names): ``fwd`` = **eval** forward (running statistics, no gradient: BatchNorm folds
into the conv's epilogue) and ``fwdbwd`` = **training** forward + backward (batch statistics and the
running-statistics update, then the gradients of x and the weight; the BatchNorm affine parameters require
grad, so the backward computes their sums too). Every provider is first checked against the unfused ops
in higher precision (output, dx, dw), then timed (bench/_driver.py). After the timings a memory section
measures what each provider saves for backward in training (``torch.autograd.graph.saved_tensors_hooks``:
unique storages, the weight and BatchNorm parameters excluded) and, on a GPU, the peak memory of the
training forward. Targets (issue 12, on an H100/H200): training fwd+bwd >= 1.3x eager and >= 1.1x
torch.compile, eval >= 1.2x eager (geomeans over the measured problems), saved activation memory at least
25% below eager's (count-weighted total over the networks' chains).

Without a CUDA GPU the script runs its CPU mode: reduced shapes (batch 4, channels / 8, spatial <= 16),
a few representative problems unless ``--layers`` is given, fp32, ATen eager against the fused op's python
route with the reference kernels (its own statistics / normalise / BatchNorm-backward plumbing); those
times say nothing about the GPU kernels, the saved-memory comparison does hold.

    python bench/bench_conv_bn_relu.py                     # GPU: bf16+fp16, channels_last, batch 64 and 256
    python bench/bench_conv_bn_relu.py --quick             # GPU: bf16, batch 256, representative problems
"""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass

import _common as C
import _driver as D
import torch
import torch.nn.functional as F
from shapes_conv_bn import CONV_BN, REPRESENTATIVE, ConvBNShape

PROVIDERS = {
    "cudnn": "eager F.conv2d (cuDNN, cudnn.benchmark=True) -> F.batch_norm -> in-place activation",
    "compile": "torch.compile of the same three ops (dynamic=False), mode from --compile-mode",
    "cnnkern-cuda": "cnnkern.conv_bn_relu inside use_backend('cuda')",
    "cnnkern-triton": "cnnkern.conv_bn_relu inside use_backend('triton')",
    "cnnkern-auto": "cnnkern.conv_bn_relu with the automatic backend choice",
    "cnnkern-reference": "cnnkern.conv_bn_relu inside use_backend('reference') (CPU: ATen's composition)",
    "cnnkern-python": "cnnkern.conv_bn_relu on its python route with the reference kernels (the fused op's "
                      "own plumbing; CPU)",
    "aten-cpu": "eager F.conv2d -> F.batch_norm -> in-place activation on the CPU (ATen)",
}
FUSED = ("cnnkern-cuda", "cnnkern-triton", "cnnkern-auto", "cnnkern-reference", "cnnkern-python")
MOMENTUM, EPS = 0.1, 1e-5

# The goals: (id, mode, baseline, goal, what)
SPEED_GOALS = (("a", "fwdbwd", "eager", 1.3, "training fwd+bwd, geomean x eager"),
               ("b", "fwdbwd", "compile", 1.1, "training fwd+bwd, geomean x torch.compile"),
               ("c", "fwd", "eager", 1.2, "eval forward, geomean x eager"))
MEMORY_GOAL = 25.0  # % less saved activation memory than eager (at least)


@dataclass
class BatchNormState:
    """A BatchNorm2d's tensors for one problem (fp32, as under AMP); ``training`` = the mode measured."""

    weight: torch.Tensor
    bias: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor
    training: bool

    def params(self) -> list[torch.Tensor]:
        return [self.weight, self.bias]


def _activate(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation == "relu":
        return F.relu(y, inplace=True)
    if activation == "relu6":
        return F.relu6(y, inplace=True)
    return y


def eager_call(s: ConvBNShape, bn: BatchNormState):
    """The unfused block as a network runs it (torchvision's ReLU/ReLU6 are in place)."""
    def f(x, w):
        y = F.conv2d(x, w, None, s.stride, s.padding, 1, s.groups)
        y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.training, MOMENTUM, EPS)
        return _activate(y, s.activation)
    return f


def cnnkern_call(ck, s: ConvBNShape, bn: BatchNormState):
    def f(x, w):
        return ck.conv_bn_relu(x, w, None, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.training,
                               MOMENTUM, EPS, s.stride, s.padding, 1, s.groups, s.activation)
    return f


def provider_context(name: str):
    if name == "cnnkern-python":
        from cnnkern.ops import _route

        return _route.forced_route("python")
    return contextlib.nullcontext()


def _bn_state(s: ConvBNShape, dev, training: bool, gen) -> BatchNormState:
    def vec(scale, shift):
        return (torch.rand(s.cout, generator=gen, device=dev) * scale + shift).requires_grad_(training)
    stats = (torch.randn(s.cout, generator=gen, device=dev) * 0.1,
             torch.rand(s.cout, generator=gen, device=dev) + 0.5)
    return BatchNormState(vec(1.0, 0.5), vec(1.0, -0.5), *stats, training)


def _tensors(s: ConvBNShape, n: int, dtype: torch.dtype, layout: str, backward: bool, dev, seed: int):
    """x, w, dy (training only) and the BatchNorm state (training = backward)."""
    gen = torch.Generator(device=dev).manual_seed(seed)
    bn = _bn_state(s, dev, backward, gen)

    def randn(*shape, scale=1.0):
        t = torch.randn(*shape, generator=gen, device=dev, dtype=torch.float32)
        return C.to_layout((t * scale).to(dtype), layout)

    x = randn(n, s.cin, s.hw, s.hw)
    w = randn(s.cout, s.cin // s.groups, s.k, s.k, scale=1 / math.sqrt(s.cin // s.groups * s.k * s.k))
    dy = randn(n, s.cout, s.out_hw, s.out_hw) if backward else None
    return x, w, dy, bn


def make_problem(s: ConvBNShape, n: int, dtype: torch.dtype, layout: str, backward: bool, ref_dtype,
                 dev: torch.device, seed: int):
    """The problem's tensors and the unfused reference in ``ref_dtype`` from the same rounded inputs (its
    running statistics are copies: the providers update the real ones)."""
    x, w, dy, bn = _tensors(s, n, dtype, layout, backward, dev, seed)
    xr, wr = (t.detach().to(ref_dtype).requires_grad_(backward) for t in (x, w))
    ref_bn = BatchNormState(*(t.detach().to(ref_dtype).requires_grad_(backward) for t in bn.params()),
                            bn.running_mean.to(ref_dtype), bn.running_var.to(ref_dtype), backward)
    with D.strict_fp32() if dev.type == "cuda" else contextlib.nullcontext():
        y = eager_call(s, ref_bn)(xr, wr)
        ref = [y.detach()]
        if backward:
            ref += [t.detach() for t in torch.autograd.grad(y, (xr, wr), dy.to(ref_dtype))]
    if backward:
        x.requires_grad_(True)
        w.requires_grad_(True)
    return D.Problem(x, w, dy, ref, {"bn": bn})


def counts(s: ConvBNShape, n: int, elem_size: int, backward: bool) -> tuple[int, int]:
    """FLOPs of the conv (BatchNorm and the activation add O(output) work) and the compulsory traffic of the
    fused design: the conv's (eval: read x, w, write out) and, in training, the conv output saved for the
    backward, written once and read once."""
    flops, nbytes = D.conv_counts(s, n, elem_size, backward)
    if backward:
        nbytes += 2 * n * s.cout * s.out_hw * s.out_hw * elem_size
    return flops, nbytes


CPU_BATCH = 4


def add_arguments(p) -> None:
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode of the compile provider (default 'default'; 'max-autotune-no-"
                        "cudagraphs' also tries inductor's conv templates, minutes per problem)")
    p.add_argument("--no-memory", action="store_true", help="skip the saved-memory section")


def on_start(run: D.Run) -> None:
    run.spec.compile_mode = run.args.compile_mode
    run.meta["compile_mode"] = run.args.compile_mode
    run.meta["modes"] = {"fwd": "eval forward (running statistics, no gradient)",
                         "fwdbwd": "training forward + backward (batch statistics, running-stat update)"}
    if not run.args.layers and (run.args.quick or not run.on_gpu):
        run.shapes = [s for s in run.shapes if s.name in REPRESENTATIVE]
        print(f"{'CPU run' if not run.on_gpu else '--quick'}: {len(run.shapes)} representative problems "
              "(pass --layers to choose, e.g. --layers r50,mnv2 for all)")
    run.meta["shapes"] = [s.as_dict() for s in run.shapes]
    print("modes: fwd = eval forward (BatchNorm folded, no gradient); fwdbwd = training forward + backward "
          "(batch statistics, running-stat update, dx and dw checked)")
    if "compile" in run.runnable:
        print(f"compile: torch.compile(conv -> batch_norm -> act, mode={run.args.compile_mode!r}, "
              "dynamic=False); compile time is not timed")


# --------------------------------------------------------------------------------------------------
# Saved-for-backward memory


def saved_activation_bytes(f, x, w, params) -> tuple[int, int]:
    """(bytes, bytes excluding x's) of the distinct storages ``f(x, w)`` saves for backward; parameters
    (the weight, BatchNorm's) are not activation memory and are left out."""
    skip = {p.untyped_storage().data_ptr() for p in (w, *params)}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = f(x, w)
    total = sum(seen.values())
    del y
    return total, total - seen.get(x.untyped_storage().data_ptr(), 0)


def _peak_forward_bytes(f, x, w, dev) -> int | None:
    if dev.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    y = f(x, w)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del y
    return peak


def memory_section(run: D.Run) -> dict[str, list[dict]]:
    """Training-mode saved activation bytes of every runnable provider on every problem and config."""
    if run.args.no_memory or "fwdbwd" not in run.modes:
        return {}
    print("\n== saved for backward (training forward; distinct storages, parameters excluded) ==")
    cols = [C.Col("layer", "layer", 26, align="<"), C.Col("problem", "problem", 30, align="<"),
            C.Col("provider", "provider", 17, align="<"), C.Col("saved_mib", "saved MiB", 10, ".3f"),
            C.Col("saved_new_mib", "excl. x", 9, ".3f"), C.Col("vs_eager_pct", "vs eager", 9, "+.1f"),
            C.Col("peak_fwd_mib", "peak fwd", 9, ".2f"), C.Col("note", "note", 10, align="<")]
    table = C.Table(cols)
    records: list[dict] = []
    for dt in run.dtypes:
        for layout in run.layouts:
            for n in run.batches:
                print(f"\n-- {dt} {layout} batch={n} --")
                table.header()
                for i, s in enumerate(run.shapes):
                    records += _memory_rows(run, s, n, dt, layout, i, table)
    _MEMORY[:] = records
    networks = _network_rows(run)
    _NETWORK[:] = networks
    return {"memory": records, "network_memory": networks}


_MEMORY: list[dict] = []
_NETWORK: list[dict] = []
NETWORKS = {"r50": "resnet50", "mnv2": "mobilenet_v2"}  # network (shape group) -> torchvision model


def _model_saved_bytes(model, x) -> int:
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = model(x)
    del y
    return sum(seen.values())


def _network_rows(run: D.Run) -> list[dict]:
    """Whole torchvision networks in training: eager against the same model after cnnkern.convert(model,
    fuse=True). A block's input is usually saved by the layer before it too (a ReLU saves its output, which
    the next conv saves as its input): this is the saving a network sees."""
    nets = [net for net in NETWORKS if any(s.group == net for s in run.shapes)]
    try:
        import torchvision
    except Exception as e:  # noqa: BLE001 - optional
        print(f"\nnetwork memory: skipped ({D.short_exc(e, 100)})")
        return []
    dt, layout = run.dtypes[0], run.layouts[0]
    n, hw = (run.batches[0], 224) if run.on_gpu else (2, 64)
    print(f"\n== saved for backward, whole networks (torchvision, training forward, {dt} {layout} N{n} "
          f"{hw}x{hw}): eager vs cnnkern.convert(model, fuse=True) ==")
    table = C.Table([C.Col("layer", "network", 14, align="<"), C.Col("provider", "provider", 17, align="<"),
                     C.Col("saved_mib", "saved MiB", 10, ".1f"), C.Col("vs_eager_pct", "vs eager", 9, "+.1f"),
                     C.Col("note", "note", 10, align="<")])
    table.header()
    rows = []
    for net in nets:
        torch.manual_seed(0)
        model = getattr(torchvision.models, NETWORKS[net])().to(run.dev, C.DTYPES[dt]).train()
        if layout == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        x = C.to_layout(torch.randn(n, 3, hw, hw, device=run.dev, dtype=C.DTYPES[dt]), layout)
        eager = None
        for p in run.runnable:
            rec = {"section": "network", "layer": net, "group": net, "provider": p, "batch": n, "hw": hw,
                   "dtype": dt, "layout": layout, "reduced": not run.on_gpu}
            if p == "compile":  # (whole networks under torch.compile: bench_models.py)
                continue
            try:
                fused = not (D.is_cudnn(p) or p in D.CPU_PROVIDERS)
                m = model
                if fused:
                    import copy

                    m = copy.deepcopy(model)
                    run.ck.convert(m, fuse=True)
                backend = run.spec.provider_backends.get(p, p.split("-", 1)[1] if fused else None)
                with contextlib.ExitStack() as stack:
                    stack.enter_context(provider_context(p))
                    if fused and backend not in (None, "auto"):
                        stack.enter_context(run.ck.use_backend(backend))
                    saved = _model_saved_bytes(m, x)
                rec.update(status="ok", saved_bytes=saved, saved_mib=saved / 2**20)
                if not fused:
                    eager = saved
                elif eager:
                    rec["vs_eager_pct"] = 100.0 * (saved / eager - 1)
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                rec.update(status="n/a", note=D.short_exc(e, 100))
            table.row(rec)
            rows.append(rec)
    return rows


def _memory_rows(run: D.Run, s: ConvBNShape, n: int, dt: str, layout: str, seed: int, table) -> list[dict]:
    rows, eager = [], None
    for p in run.runnable:
        rec = {"section": "memory", "layer": s.name, "group": s.group, "problem": f"N{n} {s.describe()}",
               "batch": n, "dtype": dt, "layout": layout, "mode": "fwdbwd", "provider": p, "count": s.count,
               "reduced": run.reduced}
        try:
            x, w, _dy, bn = _tensors(s, n, C.DTYPES[dt], layout, True, run.dev, seed)
            x.requires_grad_(True)
            w.requires_grad_(True)
            prov = D.Provider(p, run.ck, s, run.spec, {"bn": bn})
            with prov.context():
                saved, saved_new = saved_activation_bytes(prov.call, x, w, bn.params())
                peak = _peak_forward_bytes(prov.call, x, w, run.dev)
            rec.update(status="ok", saved_bytes=saved, saved_new_bytes=saved_new, saved_mib=saved / 2**20,
                       saved_new_mib=saved_new / 2**20)
            if peak is not None:
                rec.update(peak_fwd_bytes=peak, peak_fwd_mib=peak / 2**20)
            if D.is_cudnn(p) or p in D.CPU_PROVIDERS:
                eager = saved
            elif eager:
                rec["vs_eager_pct"] = 100.0 * (saved / eager - 1)
        except Exception as e:  # noqa: BLE001 - e.g. saved-tensor hooks refused under torch.compile
            rec.update(status="n/a", note=D.short_exc(e, 120))
        finally:
            if p == "compile":
                torch._dynamo.reset()
        table.row(rec)
        rows.append(rec)
    return rows


# --------------------------------------------------------------------------------------------------
# Targets


def _verdict(run: D.Run, value, goal_met, not_ok: int, measured_on_cpu_ok: bool = False) -> str:
    if not run.on_gpu and not measured_on_cpu_ok:
        return "n/a (no GPU)"
    if value is None:
        return "not measured"
    if not_ok:
        return f"FAIL ({not_ok} not ok)"
    verdict = "PASS" if goal_met else "FAIL"
    return verdict + (" (CPU, reduced shapes)" if not run.on_gpu else "")


def evaluate_targets(run: D.Run, summary: list[dict]) -> list[dict]:
    out = []
    fused = [p for p in run.providers if p in FUSED]
    for prov in fused:
        for tid, mode, base, goal, what in SPEED_GOALS:
            recs = [r for r in run.records if r["provider"] == prov and r["mode"] == mode]
            field = "speedup" if base == "eager" else f"speedup_vs_{base}"
            vals = [r[field] for r in recs if r.get("status") == "ok" and r.get(field)]
            value = C.geomean(vals) if vals else None
            not_ok = sum(r.get("status") != "ok" for r in recs)
            out.append({"target": tid, "provider": prov, "what": what, "goal": goal, "value": value,
                        "n": len(vals), "n_pass": sum(v >= goal for v in vals), "not_ok": not_ok,
                        "verdict": _verdict(run, value, value is not None and value >= goal, not_ok)})
        mem = [r for r in _MEMORY if r["provider"] == prov]
        eager = {(r["layer"], r["dtype"], r["layout"], r["batch"]): r for r in _MEMORY
                 if (D.is_cudnn(r["provider"]) or r["provider"] in D.CPU_PROVIDERS) and r["status"] == "ok"}
        pairs = [(r, eager[k]) for r in mem if r["status"] == "ok"
                 and (k := (r["layer"], r["dtype"], r["layout"], r["batch"])) in eager]
        value = None
        if pairs:
            ours = sum(r["count"] * r["saved_bytes"] for r, _ in pairs)
            theirs = sum(e["count"] * e["saved_bytes"] for _, e in pairs)
            value = 100.0 * (1 - ours / theirs)
        per = [100.0 * (1 - r["saved_bytes"] / e["saved_bytes"]) for r, e in pairs]
        not_ok = sum(r["status"] != "ok" for r in mem)
        out.append({"target": "d", "provider": prov, "what": "block saved activations, % below eager "
                    "(count-weighted)", "goal": MEMORY_GOAL, "value": value, "n": len(per),
                    "n_pass": sum(v >= MEMORY_GOAL for v in per), "not_ok": not_ok,
                    "verdict": _verdict(run, value, value is not None and value >= MEMORY_GOAL, not_ok,
                                        measured_on_cpu_ok=True)})
        for net in NETWORKS:
            rows = {r["provider"]: r for r in _NETWORK if r["layer"] == net}
            ours, theirs = rows.get(prov), next((r for p, r in rows.items() if D.is_cudnn(p)
                                                 or p in D.CPU_PROVIDERS), None)
            if ours is None or theirs is None:
                continue
            ok = ours["status"] == theirs["status"] == "ok"
            value = 100.0 * (1 - ours["saved_bytes"] / theirs["saved_bytes"]) if ok else None
            out.append({"target": f"d.{net}", "provider": prov, "goal": MEMORY_GOAL, "value": value,
                        "what": f"{net} network saved activations, % below eager (info)", "n": int(ok),
                        "n_pass": int(ok and value >= MEMORY_GOAL), "not_ok": int(not ok),
                        "verdict": _verdict(run, value, value is not None and value >= MEMORY_GOAL,
                                            int(not ok), measured_on_cpu_ok=True)})
    return out


def print_targets(run: D.Run, targets: list[dict]) -> None:
    print("\n== targets (issue 12; speed goals on an H100/H200; eager = cuDNN conv -> BN -> act; pass = "
          "problems that meet the goal on their own) ==")
    for t in targets:
        if t["target"].startswith("d"):
            val = "-" if t["value"] is None else f"{-t['value']:+.1f}%"
            goal = f"<= -{t['goal']:g}%"
        else:
            val = "-" if t["value"] is None else f"{t['value']:.3f}x"
            goal = f">= {t['goal']:g}x"
        print(f"  ({t['target']:6}) {t['provider']:17} {t['what']:58} {val:>8} {goal:>9}  "
              f"pass {t['n_pass']}/{t['n']}  {t['verdict']}")


SPEC = D.BenchSpec(
    name="conv_bn_relu",
    description="Benchmark cnnkern.conv_bn_relu (fused conv + BatchNorm + activation) vs eager conv -> BN -> "
                "act and torch.compile on the conv-BN(-act) chains of ResNet-50 and MobileNetV2: eval "
                "forward and training forward+backward, time, traffic, saved activation memory.",
    shapes=CONV_BN,
    shapes_label="ResNet-50 / MobileNetV2",
    providers=PROVIDERS,
    default_providers={"cuda": ["cudnn", "compile", "cnnkern-cuda", "cnnkern-triton"],
                       "cpu": ["aten-cpu", "cnnkern-python"]},
    baselines={"cuda": ["cudnn", "compile"], "cpu": ["aten-cpu", "compile"]},
    layers_help="keep problems whose name contains PAT or matches it as a regex, whose network is PAT (r50, "
                "mnv2), or whose kernel is PAT (1x1, 3x3, 7x7)",
    quick_help="bf16, channels_last, batch 256 and the representative problems unless those flags are given; "
               "shorter timing. Implied on CPU.",
    dtypes=(["bf16", "fp16"], ["bf16"]),
    layouts=(["channels_last"], ["channels_last"]),
    batches=([64, 256], [256]),
    evaluate_targets=evaluate_targets,
    print_targets=print_targets,
    summary_title="== geomean speedup vs {baseline} (>1 = faster) per config and network; fwd = eval, "
                  "fwdbwd = training; 'weighted' = the network's total conv-BN time ratio (problems weighted "
                  "by count); 'gm xcompile' = geomean speedup vs torch.compile ==",
    group_header="network",
    cnnkern_api="conv_bn_relu",
    cnnkern_call=lambda ck, s, **inputs: cnnkern_call(ck, s, **inputs),
    compile_mode="default",
    counts=counts,
    cpu_batch=CPU_BATCH,
    cpu_dtypes=["fp32"],
    gpu_timing={"full": (25.0, 100.0), "quick": (10.0, 50.0)},
    summary_all_groups=True,
    add_arguments=add_arguments,
    on_start=on_start,
    extra_sections=memory_section,
    eager_call=eager_call,
    make_problem=make_problem,
    provider_backends={"cnnkern-python": "reference"},
    explain_failures=False,
    provider_context=provider_context,
)

if __name__ == "__main__":
    sys.exit(D.main(SPEC))
