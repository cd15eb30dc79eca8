#!/usr/bin/env python
"""Whole-model throughput: cnnkern's bundled models against the same torchvision models, eager and under
torch.compile, in images/s, for inference (batch 1, 32, 256) and a training step (batch 64, 256).

Every model is built from cnnkern (random weights; BatchNorm statistics calibrated on random images so
half-precision activations stay finite), and the torchvision twin loads the same state_dict, so both run
the same weights. Models without a torchvision twin (mobilenet_v1, shufflenet_v1) are compared with the
cnnkern model itself on its `reference` backend (ATen / cuDNN convolutions), and have no compile baseline.

Precision: the model and the input are converted to the dtype (fp16 / bf16, "pure" half precision, the
same for every provider); a training step is forward, cross-entropy in fp32, backward and an SGD step.
Layout: channels_last by default (model and input). GPU: median of CUDA-event times after warm-up (compile
time is never timed). Before timing, each provider's inference output is compared with eager's.

    python bench/bench_models.py                    # GPU: every model; CPU: a quick labelled smoke run
    python bench/bench_models.py --quick            # the issue's targets only (MobileNetV2, ShuffleNetV2)
    python bench/bench_models.py --models resnet50 --mode infer --batch 32 --dtype bf16
    python bench/bench_models.py --quick --providers cnnkern,graph,cnnkern-graph   # host time vs kernel time

Graph replay (`graph`, `cnnkern-graph`, GPU only): the whole call (inference forward, or the training step
with its SGD update) is captured once in a torch.cuda.CUDAGraph after a warm-up on a side stream (cuDNN
benchmarking, Triton compilation and autotuning happen there), then every timed call is one replay: no
Python, no dispatch, only the kernels. `host_ms` = the eager provider's time minus its replay's time, i.e.
what the host adds on top of the kernels (0 when the GPU, not the host, is the bottleneck).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import signal
import sys
import time

import _common as C
import torch
import torch.nn.functional as F
from _driver import import_cnnkern, short_exc

MODES = ("infer", "train")
PROVIDERS = {
    "eager": "the torchvision model in eager mode, cudnn.benchmark=True (no twin: the cnnkern model on "
             "its reference backend)",
    "compile": "torch.compile(torchvision model) (--compile-mode); compile time not timed",
    "cnnkern": "the cnnkern model, automatic backend choice (cuda -> triton -> reference)",
    "cnnkern-triton": "the cnnkern model inside cnnkern.use_backend('triton')",
    "cnnkern-compile": "torch.compile(cnnkern model)",
    "graph": "the eager provider's model captured in a CUDA graph, timed by replay (GPU only)",
    "cnnkern-graph": "the cnnkern model captured in a CUDA graph, timed by replay (GPU only)",
}
# A graph provider's eager twin: host time = ms(twin) - ms(graph replay).
GRAPH_OF = {"graph": "eager", "cnnkern-graph": "cnnkern"}
# Issue 6, on an H100: training >= 1.25x eager, inference >= 1.0x torch.compile.
TARGET_MODELS = ("mobilenet_v2", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
                 "shufflenet_v2_x2_0")
TARGETS = (("train", "eager", 1.25), ("infer", "compile", 1.0))
QUICK_MODELS = ["mobilenet_v2", "shufflenet_v2_x1_0"]
CPU_MODELS = ["mobilenet_v2", "shufflenet_v2_x0_5"]
MISMATCH_TOL = {"fp16": 5e-2, "bf16": 1e-1, "fp32": 1e-3}  # whole network, max|d| / max|ref| of the logits
CPU_NOTICE = ("No CUDA GPU: CPU smoke run (image size {s}, batch {b}, models {m}); cnnkern runs its reference "
              "backend (ATen). These are NOT GPU numbers and say nothing about the kernels' speed.")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", action="append", help="comma-separated names (default: all on GPU)")
    p.add_argument("--mode", action="append", help="infer, train (default both)")
    p.add_argument("--batch", action="append", help="batch sizes for every mode (default 1,32,256 infer; "
                                                    "64,256 train)")
    p.add_argument("--dtype", action="append", help="fp16, bf16, fp32 (default fp16,bf16; CPU fp32)")
    p.add_argument("--layout", default="channels_last", help="channels_last or nchw")
    p.add_argument("--providers", action="append", help=", ".join(PROVIDERS) + " (eager always runs)")
    p.add_argument("--image-size", type=int, help="default 224 on GPU, 32 on CPU")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--compile-mode", default="default", help="torch.compile mode for the compile providers")
    p.add_argument("--quick", action="store_true",
                   help=f"only {', '.join(QUICK_MODELS)}, bf16, batch 256: the issue's targets")
    p.add_argument("--cpu", action="store_true", help="force the CPU smoke run")
    p.add_argument("--warmup-ms", type=float, default=50)
    p.add_argument("--rep-ms", type=float, default=300)
    p.add_argument("--threads", type=int, default=1, help="CPU threads on CPU runs")
    p.add_argument("--json", help="default bench/results/models-<device>.json; 'none' to skip")
    p.add_argument("--csv")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def calibrate_bn(model: torch.nn.Module, image_size: int, device, steps: int = 3) -> None:
    """Replace the initial running statistics (mean 0, var 1) by ones measured on random images: deep
    random-weight nets otherwise grow activations past the fp16 range in eval mode."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(8, 3, image_size, image_size, device=device))
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1


def build_models(ck, name: str, args, device) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """(cnnkern model, torchvision twin with the same weights or None)."""
    model = ck.models.get_model(name, num_classes=args.num_classes).to(device)
    calibrate_bn(model, args.image_size, device)
    twin = None
    try:
        import torchvision
        ctor = getattr(torchvision.models, name, None)
    except ImportError:
        ctor = None
    if ctor is not None:
        twin = ctor(num_classes=args.num_classes).to(device)
        twin.load_state_dict(model.state_dict())
    return model, twin


class Case:
    """One provider's model for one (model, dtype, layout, mode): builds the timed callable."""

    def __init__(self, ck, provider: str, model, twin, mode: str, dtype, layout: str, compile_mode: str):
        self.ck, self.provider, self.mode = ck, provider, mode
        src = twin if provider in ("eager", "compile", "graph") and twin is not None else model
        self.backend = None
        if provider in ("eager", "graph") and twin is None:
            self.backend = "reference"
        elif provider == "cnnkern-triton":
            self.backend = "triton"
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        net = copy.deepcopy(src).to(dtype=dtype, memory_format=fmt)
        net.train(mode == "train")
        self.net = net
        self.opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9) if mode == "train" else None
        self.fn = torch.compile(net, mode=None if compile_mode == "default" else compile_mode) \
            if provider.endswith("compile") else net
        self.graph = None if provider in GRAPH_OF else False

    def _call(self, x, y):
        if self.mode == "infer":
            with torch.no_grad():
                return self.fn(x)
        logits = self.fn(x)
        loss = F.cross_entropy(logits.float(), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return logits

    def __call__(self, x, y):
        with self.ck.use_backend(self.backend):
            if self.graph is False:
                return self._call(x, y)
            if self.graph is None:
                self._capture(x, y)
            if x is not self.static_x:  # the timing loop passes the captured tensors themselves: no copy
                self.static_x.copy_(x)
                self.static_y.copy_(y)
            self.graph.replay()
            return self.static_out

    def _capture(self, x, y, warmup: int = 3) -> None:
        """Warm up on a side stream (every kernel runs once: cuDNN benchmarking, Triton autotuning and
        plans happen here, never during capture), then capture one call on static inputs. Training: the
        grads are set to None first, so backward allocates them from the graph's pool and every replay
        rewrites them (PyTorch's whole-network capture recipe)."""
        self.static_x, self.static_y = x, y
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self._call(self.static_x, self.static_y)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        if self.mode == "infer":
            with torch.no_grad(), torch.cuda.graph(graph):
                self.static_out = self.fn(self.static_x)
        else:
            self.opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                self.static_out = self.fn(self.static_x)
                F.cross_entropy(self.static_out.float(), self.static_y).backward()
                self.opt.step()
        self.graph = graph


def provider_skip(provider: str, twin, on_gpu: bool, backend_status: dict) -> str | None:
    if provider == "compile" and twin is None:
        return "no torchvision twin"
    if provider in GRAPH_OF and not on_gpu:
        return "CUDA graphs need a GPU"
    if provider == "cnnkern-triton" and backend_status.get("triton"):
        return backend_status["triton"]
    return None


def run_model(ck, name, args, run, table) -> None:
    dev, on_gpu = run["device"], run["on_gpu"]
    torch.manual_seed(args.seed)
    try:
        model, twin = build_models(ck, name, args, dev)
    except Exception as e:  # noqa: BLE001 - e.g. out of memory: record and go on
        rec = {"model": name, "provider": "(setup)", "status": "error", "note": short_exc(e)}
        run["records"].append(rec)
        table.row(rec)
        return
    for dt in run["dtypes"]:
        for mode in run["modes"]:
            for n in run["batches"][mode]:
                x = torch.randn(n, 3, args.image_size, args.image_size, device=dev).to(C.DTYPES[dt])
                x = C.to_layout(x, args.layout)
                y = torch.randint(0, args.num_classes, (n,), device=dev)
                base = {"model": name, "mode": mode, "batch": n, "dtype": dt, "layout": args.layout,
                        "image_size": args.image_size, "twin": "torchvision" if twin is not None else
                        "cnnkern-reference"}
                ref_out, times = None, {}
                for prov in run["providers"]:
                    rec = dict(base, provider=prov)
                    why = provider_skip(prov, twin, on_gpu, run["backend_status"])
                    if why:
                        rec.update(status="skipped", note=why)
                    else:
                        _measure(ck, prov, model, twin, mode, dt, args, x, y, rec, run, ref_out)
                        out = rec.pop("_out", None)
                        if prov == "eager":
                            ref_out = out
                    if rec.get("status") == "ok":
                        times[prov] = rec["ms"]
                        rec["images_per_s"] = n / (rec["ms"] * 1e-3)
                        for b in ("eager", "compile"):
                            if b in times and b != prov:
                                rec[f"speedup_vs_{b}"] = times[b] / rec["ms"]
                        if GRAPH_OF.get(prov) in times:
                            rec["host_ms"] = times[GRAPH_OF[prov]] - rec["ms"]
                    table.row(rec)
                    run["records"].append(rec)
                del x, y, ref_out
                if on_gpu:
                    torch.cuda.empty_cache()
    if on_gpu:
        torch._dynamo.reset()


def _measure(ck, prov, model, twin, mode, dt, args, x, y, rec, run, ref_out) -> None:
    case = None
    try:
        case = Case(ck, prov, model, twin, mode, C.DTYPES[dt], args.layout, args.compile_mode)
        out = case(x, y)  # warm-up (compiles, autotunes)
        if mode == "infer":
            out = case(x, y)
            if ref_out is not None:
                rec["err"] = C.rel_max_err(out.float(), ref_out)
                if not rec["err"] <= MISMATCH_TOL[dt]:
                    rec.update(status="mismatch", note=f"logits differ from eager: {rec['err']:.2e}")
                    return
            rec["_out"] = out.float()
        if run["on_gpu"]:
            t = C.time_gpu(lambda: case(x, y), warmup_ms=args.warmup_ms, rep_ms=args.rep_ms, flush_l2=False)
        else:
            t = C.time_cpu(lambda: case(x, y), budget_s=0.05, min_reps=2, max_reps=5)
        rec.update(status="ok", ms=t["ms"], ms_p20=t["ms_p20"], ms_p80=t["ms_p80"])
    except Exception as e:
        rec.update(status="error", note=short_exc(e))
        if os.environ.get("BENCH_TRACEBACK"):
            raise
    finally:
        case = None  # free the copy (and its compiled graph) before the next provider
        if prov.endswith("compile"):
            torch._dynamo.reset()


def evaluate_targets(records: list[dict], on_gpu: bool) -> list[dict]:
    out = []
    for name in sorted({r["model"] for r in records if r["model"] in TARGET_MODELS}):
        for mode, base, goal in TARGETS:
            vals = [r.get(f"speedup_vs_{base}") for r in records
                    if r["model"] == name and r.get("mode") == mode and r["provider"] == "cnnkern"]
            gm = C.geomean(v for v in vals if v)
            verdict = ("n/a (no GPU)" if not on_gpu else "not measured" if gm is None
                       else "PASS" if gm >= goal else "BELOW TARGET")
            out.append({"model": name, "mode": mode, "baseline": base, "target": goal, "geomean": gm,
                        "n": len([v for v in vals if v]), "verdict": verdict})
    return out


def _stop(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = parse_args(argv)
    on_gpu = torch.cuda.is_available() and not args.cpu
    dev = torch.device("cuda" if on_gpu else "cpu")
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(max(1, args.threads))
    ck, err = import_cnnkern("conv2d")
    try:
        importlib.import_module("cnnkern.models")
    except Exception as e:  # noqa: BLE001
        ck, err = None, err or f"import cnnkern.models failed: {short_exc(e)}"
    if ck is None:
        print(f"error: {err}", file=sys.stderr)
        return 2
    all_models = ck.models.list_models()
    models = C.parse_list(args.models) or (QUICK_MODELS if args.quick else all_models if on_gpu else CPU_MODELS)
    modes = C.parse_list(args.mode) or list(MODES)
    providers = C.parse_list(args.providers) or (["eager", "compile", "cnnkern"] if on_gpu else ["eager", "cnnkern"])
    bad = ([f"model {m!r} (available: {', '.join(all_models)})" for m in models if m not in all_models]
           + [f"mode {m!r} (infer, train)" for m in modes if m not in MODES]
           + [f"provider {p!r} ({', '.join(PROVIDERS)})" for p in providers if p not in PROVIDERS])
    try:
        dtypes = [C.canon_dtype(d) for d in C.parse_list(args.dtype)] or (
            ["bf16"] if args.quick else ["fp16", "bf16"] if on_gpu else ["fp32"])
        args.layout = C.canon_layout(args.layout)
    except ValueError as e:
        bad.append(str(e))
    if bad:
        print("error: unknown " + "; ".join(bad), file=sys.stderr)
        return 2
    # graph providers after their eager twins, so that host_ms can be computed as their rows print
    providers = ["eager"] + sorted((p for p in dict.fromkeys(providers) if p != "eager"), key=lambda p: p in GRAPH_OF)
    if args.batch:
        batches = {m: [int(b) for b in C.parse_list(args.batch)] for m in MODES}
    elif not on_gpu:
        batches = {"infer": [2], "train": [2]}
    elif args.quick:
        batches = {"infer": [256], "train": [256]}
    else:
        batches = {"infer": [1, 32, 256], "train": [64, 256]}
    args.image_size = args.image_size or (224 if on_gpu else 32)

    meta = C.run_metadata(dev)
    status = {k: (None if v is None else str(v)) for k, v in ck.backend_status().items()}
    meta.update(cnnkern=ck.__version__, cnnkern_backend_status=status, providers=PROVIDERS,
                image_size=args.image_size, precision="model and input in the dtype (pure half precision)",
                timing="median of CUDA-event times after warm-up" if on_gpu else "median of perf_counter times")
    print(f"bench_models: {meta['device']} | torch {meta['torch']} | cnnkern {ck.__version__} | "
          f"image {args.image_size}px | {args.layout}")
    if not on_gpu:
        notice = CPU_NOTICE.format(s=args.image_size, b=batches["infer"][0], m=", ".join(models))
        print(notice)
        meta["notice"] = notice
    print("providers: " + "; ".join(f"{p}: {PROVIDERS[p]}" for p in providers))
    run = {"device": dev, "on_gpu": on_gpu, "dtypes": dtypes, "modes": modes, "batches": batches,
           "providers": providers, "records": [], "backend_status": status}
    cols = [C.Col("model", "model", 20, align="<"), C.Col("mode", "mode", 5, align="<"),
            C.Col("batch", "batch", 5), C.Col("dtype", "dtype", 5, align="<"),
            C.Col("provider", "provider", 15, align="<"), C.Col("status", "status", 8, align="<"),
            C.Col("ms", "ms", 9, ".3f"), C.Col("images_per_s", "img/s", 9, ".1f"),
            C.Col("speedup_vs_eager", "xeager", 6, ".3f"), C.Col("speedup_vs_compile", "xcompile", 8, ".3f"),
            C.Col("host_ms", "host_ms", 8, ".3f"),
            C.Col("err", "rel.err", 8, ".1e"), C.Col("note", "note", 10, align="<")]
    table = C.Table(cols)
    table.header()
    t0 = time.perf_counter()
    interrupted = False
    old = signal.signal(signal.SIGTERM, _stop)  # e.g. `timeout`: keep the results so far
    try:
        for name in models:
            run_model(ck, name, args, run, table)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: writing the results so far", flush=True)
    finally:
        signal.signal(signal.SIGTERM, old)
    meta.update(elapsed_s=round(time.perf_counter() - t0, 1), interrupted=interrupted)

    records = run["records"]
    targets = evaluate_targets(records, on_gpu)
    print("\n== issue 6 targets (H100): cnnkern training >= 1.25x eager, inference >= 1.0x torch.compile "
          "(geomean over dtypes and batches) ==")
    for t in targets:
        gm = "-" if t["geomean"] is None else f"{t['geomean']:.3f}"
        print(f"  {t['model']:20} {t['mode']:5} vs {t['baseline']:7} {gm:>6} (target >= {t['target']:.2f}, "
              f"{t['n']} results)  {t['verdict']}")
    if not targets:
        print("  (no target model was run)")
    bad = [r for r in records if r.get("status") in ("error", "mismatch")]
    print(f"\n{len(records)} measurements in {meta['elapsed_s']} s; {len(bad)} errors/mismatches")
    for r in bad:
        print(f"  {r['status'].upper()}: {r['provider']} {r['model']} {r.get('mode')} {r.get('dtype')} "
              f"N{r.get('batch')}: {r.get('note')}")
    if not on_gpu:
        print("reminder: CPU smoke run; these numbers do not measure the GPU kernels.")
    json_path = args.json or C.RESULTS_DIR / f"models-{C.slug('cpu' if not on_gpu else meta['device'])}.json"
    if str(json_path).lower() != "none":
        print(f"wrote {C.write_json(json_path, meta, records, targets=targets)}")
    if args.csv:
        print(f"wrote {C.write_csv(args.csv, records)}")
    return 1 if bad or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
