#!/usr/bin/env python
"""Benchmark cnnkern.conv2d (CUDA and Triton backends) against cuDNN and torch.compile on the distinct
convolutions of ResNet-50 (see bench/shapes.py).

For every (layer, batch, dtype, layout, mode) and provider the output (and, in fwdbwd mode, grad_input
and grad_weight) is first checked against F.conv2d computed in higher precision; a provider that fails
the check is reported as "mismatch" and not timed for that problem. Then the median time is measured
(GPU: CUDA events with the L2 cache flushed between runs; CPU: time.perf_counter).

Without a CUDA GPU the script still runs, on reduced shapes, timing only the CPU paths; those numbers
say nothing about GPU kernel performance. See bench/README.md.

    python bench/bench_conv2d.py                       # full grid on GPU; quick reduced run on CPU
    python bench/bench_conv2d.py --quick --layers 3x3  # headline configuration only
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import sys
import time
import traceback

import _common as C
import torch
import torch.nn.functional as F
from shapes import RESNET50, ConvShape, select

PROVIDERS = {
    "cudnn": "torch.nn.functional.conv2d eager on the GPU (cuDNN), cudnn.benchmark=True",
    "cnnkern-cuda": "cnnkern.conv2d inside cnnkern.use_backend('cuda')",
    "cnnkern-triton": "cnnkern.conv2d inside cnnkern.use_backend('triton')",
    "compile": "torch.compile(F.conv2d, mode='max-autotune', dynamic=False); slow to compile, opt-in",
    "cnnkern-auto": "cnnkern.conv2d with its automatic backend choice",
    "cnnkern-reference": "cnnkern.conv2d inside cnnkern.use_backend('reference')",
    "aten-cpu": "torch.nn.functional.conv2d eager on the CPU (ATen / oneDNN)",
}
DEFAULT_PROVIDERS = {"cuda": ["cudnn", "cnnkern-cuda", "cnnkern-triton"],
                     "cpu": ["aten-cpu", "cnnkern-reference", "cnnkern-triton", "cnnkern-cuda"]}
BASELINE = {"cuda": "cudnn", "cpu": "aten-cpu"}
MODES = ("fwd", "fwdbwd")
# The reported target: ResNet-50 3x3 layers, fp16, channels_last, batch 256, geomean speedup vs cuDNN.
TARGETS = {"cnnkern-triton": 0.85, "cnnkern-cuda": 0.90}
TARGET_CONFIG = {"dtype": "fp16", "layout": "channels_last", "batch": 256, "group": "3x3"}

# Reduced problems for CPU runs: batch 1, channels / 8 (at least 4; the 3-channel stem input stays 3),
# spatial size capped at 16.
CPU_BATCH = 1
CPU_CHANNEL_DIV = 8
CPU_MAX_HW = 16

# The Triton interpreter needs seconds per call even on the reduced shapes: on CPU runs that include it,
# only these representative layers are run unless --layers is given.
INTERPRETER_LAYERS = ("r50.conv1", "r50.layer1.0.conv2", "r50.layer2.0.conv2", "r50.layer1.0.conv3",
                      "r50.layer2.0.downsample.0")

CPU_NOTICE = ("No CUDA GPU: timing the CPU paths (reference = ATen CPU; triton = Triton interpreter, only "
              "if TRITON_INTERPRET=1) on reduced shapes (batch {b}, channels/{c}, spatial capped at {hw}) -- "
              "these are not performance numbers for the GPU kernels.")


# --------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark cnnkern.conv2d vs cuDNN / torch.compile on ResNet-50 convolutions.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="providers:\n" + "\n".join(f"  {k:18} {v}" for k, v in PROVIDERS.items()),
    )
    p.add_argument("--batch", action="append", metavar="N[,N]",
                   help="batch sizes (default 32,256 on GPU; 1 on CPU)")
    p.add_argument("--dtype", action="append", metavar="D[,D]", help="fp16, bf16, fp32 (default fp16,bf16)")
    p.add_argument("--layout", action="append", metavar="L[,L]",
                   help="channels_last (alias cl, nhwc), nchw (default both)")
    p.add_argument("--mode", action="append", metavar="M[,M]", help="fwd, fwdbwd (default both)")
    p.add_argument("--layers", action="append", metavar="PAT[,PAT]",
                   help="keep layers whose name contains PAT or matches it as a regex, or whose kernel "
                        "class is PAT (3x3, 1x1, 7x7/stem)")
    p.add_argument("--providers", action="append", metavar="P[,P]",
                   help="providers to run, or 'all' (default: cudnn,cnnkern-cuda,cnnkern-triton on GPU; "
                        "aten-cpu,cnnkern-reference,cnnkern-triton on CPU). The baseline (cudnn on GPU, "
                        "aten-cpu on CPU) is always run: speedups are relative to it.")
    p.add_argument("--quick", action=argparse.BooleanOptionalAction, default=None,
                   help="headline configuration only (fp16, channels_last, batch 256 on GPU) unless those "
                        "flags are given, and shorter timing. Implied on CPU.")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="JSON output (default bench/results/conv2d-<device>.json; 'none' to skip)")
    p.add_argument("--csv", metavar="PATH", default=None, help="also write the records as CSV")
    p.add_argument("--warmup-ms", type=float, default=25.0, help="GPU warm-up time per measurement")
    p.add_argument("--rep-ms", type=float, default=100.0, help="GPU timed repetitions per measurement (ms)")
    p.add_argument("--ref-dtype", choices=("fp32", "fp64"), default=None,
                   help="reference precision for the accuracy check (default fp32 without TF32 on GPU, "
                        "fp64 on CPU)")
    p.add_argument("--cpu", action="store_true", help="use the CPU path even if a GPU is present")
    p.add_argument("--full-shapes", action="store_true",
                   help="on CPU, use the real ResNet-50 shapes instead of the reduced ones (slow)")
    p.add_argument("--triton-interpret", action="store_true",
                   help="set TRITON_INTERPRET=1 before importing cnnkern/triton (CPU runs of the Triton "
                        "kernels; very slow)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU runs: torch.set_num_threads (default 1; steadier timings on small machines)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--list", action="store_true", help="print the selected problems and exit")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------------
# Helpers


def reduce_for_cpu(s: ConvShape) -> ConvShape:
    def ch(c: int) -> int:
        return c if c <= 4 else max(4, c // CPU_CHANNEL_DIV)

    return ConvShape(s.name, ch(s.cin), ch(s.cout), min(s.hw, CPU_MAX_HW), s.k, s.stride, s.padding,
                     s.dilation, s.groups, s.count, s.aliases)


def cudnn_fp32_is_tf32() -> bool:
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return conv.fp32_precision == "tf32"
    return bool(torch.backends.cudnn.allow_tf32)


@contextlib.contextmanager
def strict_fp32():
    """No TF32 in cuDNN convolutions inside the block (for the fp32 reference)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        old = conv.fp32_precision
        conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision = old
    else:
        old = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = old


def import_cnnkern():
    """Import the installed cnnkern; failing that, the one in this checkout (Python backends only,
    unless the CUDA extension was built in place)."""
    try:
        try:
            import cnnkern
        except ModuleNotFoundError as e:
            root = str(C.BENCH_DIR.parent)
            if e.name != "cnnkern" or not (C.BENCH_DIR.parent / "cnnkern" / "__init__.py").exists():
                raise
            sys.path.insert(0, root)
            import cnnkern
        cnnkern.conv2d  # noqa: B018 - fail early if the API is not there yet
        return cnnkern, None
    except Exception as e:  # noqa: BLE001
        return None, f"import cnnkern failed: {type(e).__name__}: {e}"


def provider_status(name: str, dev: str, ck, ck_err: str | None, backend_status: dict) -> str | None:
    """None if the provider can run here, else why not."""
    if name == "cudnn":
        if dev != "cuda":
            return "no CUDA GPU"
        return None if torch.backends.cudnn.is_available() else "cuDNN not available in this torch build"
    if name == "aten-cpu":
        return None if dev == "cpu" else "CPU provider; not run on GPU"
    if name == "compile":
        return None
    if ck is None:
        return ck_err
    if name == "cnnkern-auto":
        return None
    backend = name.split("-", 1)[1]
    if backend not in backend_status:
        return f"cnnkern.backend_status() does not list {backend!r}"
    why = backend_status[backend]
    return None if why is None else str(why)


def short_exc(e: BaseException, limit: int = 300) -> str:
    msg = f"{type(e).__name__}: {e}".replace("\n", " ")
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def looks_unsupported(e: BaseException) -> bool:
    """A forced backend refusing an input (as opposed to crashing on it)."""
    if isinstance(e, (NotImplementedError, ValueError, TypeError)):
        return True
    name = type(e).__name__.lower()
    msg = str(e).lower()
    return "unsupported" in name or any(w in msg for w in ("cannot run", "not support", "unsupported",
                                                            "cannot handle", "can't run"))


def explain(ck, x, w, s: ConvShape) -> str | None:
    if ck is None or not hasattr(ck, "explain_conv2d"):
        return None
    try:
        return str(ck.explain_conv2d(x, w, None, s.stride, s.padding, s.dilation, s.groups))
    except Exception as e:  # noqa: BLE001
        return f"explain_conv2d failed: {short_exc(e)}"


def auto_choice(ck, x, w, s: ConvShape) -> dict:
    """Backend picked by cnnkern's automatic choice for forward, grad_input and grad_weight."""
    try:
        report = ck.explain_conv2d(x, w, None, s.stride, s.padding, s.dilation, s.groups)
        return {op.replace("conv2d_", ""): getattr(c, "backend", c) for op, c in dict(report).items()}
    except Exception as e:  # noqa: BLE001
        return {"error": short_exc(e)}


class Provider:
    """How to call one provider on one problem."""

    def __init__(self, name: str, ck, s: ConvShape):
        self.name = name
        args = (s.stride, s.padding, s.dilation, s.groups)
        self.uses_cudagraphs = False
        if name in ("cudnn", "aten-cpu"):
            self.call = lambda x, w: F.conv2d(x, w, None, *args)
        elif name == "compile":
            def conv(x, w):
                return F.conv2d(x, w, None, *args)

            self.call = torch.compile(conv, mode="max-autotune", dynamic=False)
            self.uses_cudagraphs = True
        else:
            self.call = lambda x, w: ck.conv2d(x, w, None, *args)
        backend = name.split("-", 1)[1] if name.startswith("cnnkern-") else None
        self._backend = None if backend in (None, "auto") else backend
        self._ck = ck

    @contextlib.contextmanager
    def context(self):
        """Force the backend (process-wide, so autograd's backward threads see it too)."""
        if self._backend is None:
            yield
            return
        with self._ck.use_backend(self._backend):
            yield

    def step(self, x, w, dy):
        call, backward, mark = self.call, dy is not None, None
        if self.uses_cudagraphs and x.is_cuda and hasattr(torch.compiler, "cudagraph_mark_step_begin"):
            mark = torch.compiler.cudagraph_mark_step_begin
        if not backward:
            def f():
                if mark:
                    mark()
                return (call(x, w),)
        else:
            def f():
                if mark:
                    mark()
                y = call(x, w)
                dx, dw = torch.autograd.grad(y, (x, w), dy)
                return y, dx, dw
        return f


def make_problem(s: ConvShape, n: int, dtype: torch.dtype, layout: str, backward: bool, ref_dtype,
                 dev: torch.device, seed: int):
    g = torch.Generator(device=dev).manual_seed(seed)
    oh = s.out_hw

    def randn(*shape, scale=1.0):
        t = torch.randn(*shape, generator=g, device=dev, dtype=torch.float32)
        return C.to_layout((t * scale if scale != 1.0 else t).to(dtype), layout)

    x = randn(n, s.cin, s.hw, s.hw)
    w = randn(s.cout, s.cin // s.groups, s.k, s.k, scale=1 / math.sqrt(s.cin // s.groups * s.k * s.k))
    dy = randn(n, s.cout, oh, oh) if backward else None

    # Reference from the same (rounded) inputs, in higher precision.
    xr = x.detach().to(ref_dtype).requires_grad_(backward)
    wr = w.detach().to(ref_dtype).requires_grad_(backward)
    with strict_fp32() if dev.type == "cuda" else contextlib.nullcontext():
        yr = F.conv2d(xr, wr, None, s.stride, s.padding, s.dilation, s.groups)
        ref = [yr.detach()]
        if backward:
            ref += [t.detach() for t in torch.autograd.grad(yr, (xr, wr), dy.to(ref_dtype))]
    if backward:
        x.requires_grad_(True)
        w.requires_grad_(True)
    return x, w, dy, ref


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------------
# One measurement


def measure(prov: Provider, ck, s: ConvShape, x, w, dy, ref, dtype_name: str, dev: torch.device,
            args, rec: dict) -> None:
    """Check then time one provider on one problem; fills rec in place."""
    tol = C.REL_TOL[dtype_name]
    rec["tol"] = tol
    try:
        with prov.context():
            f = prov.step(x, w, dy)
            outs = f()
            sync(dev)
            names = ("out", "dx", "dw")[: len(outs)]
            errs = {k: C.rel_max_err(o, r) for k, o, r in zip(names, outs, ref, strict=True)}
            rec["out_channels_last"] = C.is_channels_last(outs[0])
            del outs
            rec["max_rel_err"] = errs
            rec["err"] = max(errs.values())
            if not all(e <= tol for e in errs.values()):
                bad = ", ".join(f"{k}={v:.2e}" for k, v in errs.items() if not v <= tol)
                rec["status"] = "mismatch"
                rec["note"] = f"rel err {bad} > tol {tol:g}"
                return
            if dev.type == "cuda":
                t = C.time_gpu(f, warmup_ms=args.warmup_ms, rep_ms=args.rep_ms)
            else:
                t = C.time_cpu(f, budget_s=0.05 if args.quick else 0.2)
    except Exception as e:  # noqa: BLE001 - any provider failure is a result, not a crash
        if dev.type == "cuda" and isinstance(e, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        unsupported = prov.name.startswith("cnnkern-") and "err" not in rec and looks_unsupported(e)
        rec["status"] = "unsupported" if unsupported else "error"
        rec["note"] = short_exc(e)
        why = explain(ck, x, w, s) if prov.name.startswith("cnnkern-") else None
        if why:
            rec["explain"] = why
        if not unsupported and os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exc()
        return
    rec.update(status="ok", ms=t["ms"], ms_p20=t["ms_p20"], ms_p80=t["ms_p80"], timer=t["timer"])
    if prov.name == "cnnkern-auto":
        rec["backends"] = auto_choice(ck, x, w, s)
        rec["note"] = "chose " + "/".join(str(b) for b in rec["backends"].values())
    if "reps" in t:
        rec["reps"] = t["reps"]


# --------------------------------------------------------------------------------------------------
# Summary


def summarize(records: list[dict], providers: list[str], baseline: str) -> list[dict]:
    """Geomean speedup vs the baseline per provider and (dtype, layout, batch, mode, kernel class)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r["provider"] == baseline or r.get("speedup") is None:
            continue
        key = (r["dtype"], r["layout"], r["batch"], r["mode"], r["group"], r["provider"])
        groups.setdefault(key, []).append(r)
    order = {p: i for i, p in enumerate(providers)}
    rows = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3], k[4], order.get(k[5], 99))):
        rs = groups[key]
        sp = [r["speedup"] for r in rs]
        # Whole-network view: sum over layers of count * time, baseline / provider.
        net = sum(r["count"] * r["baseline_ms"] for r in rs) / sum(r["count"] * r["ms"] for r in rs)
        rows.append(dict(zip(("dtype", "layout", "batch", "mode", "group", "provider"), key, strict=True),
                         n=len(rs), geomean=C.geomean(sp), min=min(sp), max=max(sp), weighted=net))
    return rows


def target_report(summary: list[dict], on_gpu: bool) -> list[dict]:
    out = []
    for prov, goal in TARGETS.items():
        for mode in MODES:
            hit = [r for r in summary if r["provider"] == prov and r["mode"] == mode
                   and all(r[k] == v for k, v in TARGET_CONFIG.items())]
            gm = hit[0]["geomean"] if hit else None
            if not on_gpu:
                verdict = "n/a (no GPU)"
            elif gm is None:
                verdict = "not measured"
            else:
                verdict = "PASS" if gm >= goal else "BELOW TARGET"
            out.append({"provider": prov, "mode": mode, "target": goal, "geomean": gm, "verdict": verdict})
    return out


# --------------------------------------------------------------------------------------------------
# Main


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.triton_interpret:
        os.environ["TRITON_INTERPRET"] = "1"
    on_gpu = torch.cuda.is_available() and not args.cpu
    dev = torch.device("cuda") if on_gpu else torch.device("cpu")
    devkind = dev.type
    if args.quick is None:
        args.quick = not on_gpu
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    elif args.threads > 0:
        torch.set_num_threads(args.threads)

    # ---- what to run
    try:
        dtypes = [C.canon_dtype(d) for d in C.parse_list(args.dtype)] or (
            ["fp16"] if args.quick else ["fp16", "bf16"])
        layouts = [C.canon_layout(v) for v in C.parse_list(args.layout)] or (
            ["channels_last"] if args.quick else list(C.LAYOUTS))
        modes = C.parse_list(args.mode) or list(MODES)
        bad = [m for m in modes if m not in MODES]
        if bad:
            raise ValueError(f"unknown mode {bad[0]!r}; choose from {', '.join(MODES)}")
        batches = [int(b) for b in C.parse_list(args.batch)]
        requested = C.parse_list(args.providers) or DEFAULT_PROVIDERS[devkind]
        if "all" in requested:
            requested = [p for p in PROVIDERS if p != ("aten-cpu" if on_gpu else "cudnn")]
        bad = [p for p in requested if p not in PROVIDERS]
        if bad:
            raise ValueError(f"unknown provider {bad[0]!r}; choose from {', '.join(PROVIDERS)}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    reduced = not on_gpu and not args.full_shapes
    if not batches:
        batches = [CPU_BATCH] if reduced else ([256] if args.quick else [32, 256])
    baseline = BASELINE[devkind]
    providers = [baseline] + [p for p in dict.fromkeys(requested) if p != baseline]

    shapes = select(RESNET50, C.parse_list(args.layers))
    if not shapes:
        print("error: --layers matched no layer (see python bench/shapes.py)", file=sys.stderr)
        return 2
    if reduced:
        shapes = [reduce_for_cpu(s) for s in shapes]
    if args.list:
        for s in shapes:
            print(f"{s.name:28} {s.group:5} {s.describe()}  x{s.count}")
        return 0
    ref_name = args.ref_dtype or ("fp32" if on_gpu else "fp64")
    ref_dtype = {"fp32": torch.float32, "fp64": torch.float64}[ref_name]

    # ---- environment
    meta = C.run_metadata(dev)
    ck, ck_err = import_cnnkern()
    backend_status = {}
    if ck is not None:
        try:
            backend_status = {k: (None if v is None else str(v)) for k, v in ck.backend_status().items()}
        except Exception as e:  # noqa: BLE001
            ck_err = f"cnnkern.backend_status() failed: {short_exc(e)}"
            ck = None
    meta["cnnkern"] = getattr(ck, "__version__", None) if ck else None
    meta["cnnkern_path"] = os.path.dirname(ck.__file__) if ck else None
    meta["cnnkern_backend_status"] = backend_status if ck else ck_err
    prov_status = {p: provider_status(p, devkind, ck, ck_err, backend_status) for p in providers}
    meta["providers"] = {p: {"description": PROVIDERS[p], "skipped": prov_status[p]} for p in providers}
    if "compile" in providers and prov_status["compile"] is None:
        cfg = torch._dynamo.config
        for knob in ("recompile_limit", "cache_size_limit"):
            if hasattr(cfg, knob):
                setattr(cfg, knob, max(getattr(cfg, knob), 4096))
    peak, peak_src = None, None
    if on_gpu:
        found = C.lookup_peak(meta["device"])
        if found:
            peak_src, peak = f"datasheet ({found[0]})", found[1]
        else:
            print(f"note: {meta['device']} not in the peak table; measuring copy bandwidth and fp16 matmul "
                  "throughput instead", flush=True)
            peak, peak_src = C.measure_peak(dev), "measured (copy + fp16 matmul)"
    meta.update(
        baseline=baseline, reduced_shapes=reduced, quick=args.quick, ref_dtype=str(ref_dtype),
        peak=None if peak is None else dict(peak.__dict__, source=peak_src),
        cudnn_fp32_tf32=cudnn_fp32_is_tf32() if on_gpu else None,
        timing=("median of CUDA-event times, L2 flushed before each run; "
                f"warmup {args.warmup_ms:g} ms, rep {args.rep_ms:g} ms") if on_gpu
        else "median of time.perf_counter wall times (after a warm-up call; calls over 1 s: one sample)",
        rel_tol=C.REL_TOL,
    )

    # ---- banner
    print(f"bench_conv2d: {meta['device']} | torch {meta['torch']} | triton {meta['triton']} | "
          f"cuda {meta['cuda']} | cnnkern {meta['cnnkern'] or '-'}")
    if not on_gpu:
        notice = CPU_NOTICE.format(b=CPU_BATCH, c=CPU_CHANNEL_DIV, hw=CPU_MAX_HW)
        if not reduced:
            notice = notice.split(" on reduced shapes")[0] + " on the real shapes (--full-shapes)."
        print(notice)
        meta["notice"] = notice
    elif os.environ.get("TRITON_INTERPRET") == "1":
        print("warning: TRITON_INTERPRET=1 on a GPU machine: Triton kernels run in the interpreter")
    if peak is not None:
        print(f"peaks: {peak.tensor16:g} TFLOP/s fp16/bf16, {peak.hbm_gbps:g} GB/s [{peak_src}]")
    print(f"baseline: {baseline}; accuracy check vs F.conv2d in {str(ref_dtype).replace('torch.', '')}, "
          f"rel. tolerance {', '.join(f'{d} {C.REL_TOL[d]:g}' for d in dtypes)}")
    for p in providers:
        st = prov_status[p]
        print(f"  provider {p:18} {'run' if st is None else 'SKIPPED: ' + st}")
    runnable = [p for p in providers if prov_status[p] is None]
    if not on_gpu and "cnnkern-triton" in runnable and not args.layers:
        shapes = [s for s in shapes if s.name in INTERPRETER_LAYERS]
        print(f"Triton interpreter is slow (seconds per call): running only {len(shapes)} representative "
              "layers (pass --layers to choose)")
        meta["interpreter_layers"] = [s.name for s in shapes]
    configs = list(itertools.product(dtypes, layouts, batches, modes))
    print(f"{len(shapes)} layers x {len(configs)} configs x {len(runnable)} providers", flush=True)

    cols = [C.Col("layer", "layer", 26, align="<"), C.Col("problem", "problem", 22, align="<"),
            C.Col("provider", "provider", 17, align="<"), C.Col("status", "status", 11, align="<"),
            C.Col("ms", "ms", 9, ".4f"), C.Col("rate", "TFLOP/s" if on_gpu else "GFLOP/s", 8, ".2f"),
            C.Col("gbps", "GB/s", 8, ".1f"),
            C.Col("roofline_pct", "%roof", 6, ".1f"), C.Col("speedup", f"x{baseline}", 7, ".3f"),
            C.Col("err", "rel.err", 8, ".1e"), C.Col("note", "note", 10, align="<")]
    table = C.Table(cols)

    # ---- run
    records: list[dict] = []
    t_start = time.perf_counter()
    interrupted = False
    allow_tf32 = cudnn_fp32_is_tf32() if on_gpu else False
    try:
        for ci, (dt, layout, n, mode) in enumerate(configs):
            backward = mode == "fwdbwd"
            print(f"\n== {dt} {layout} batch={n} {mode} ==")
            table.header()
            for si, s in enumerate(shapes):
                seed = args.seed * 1_000_003 + ci * 1000 + si
                flops = C.conv2d_flops(n, s.cin, s.cout, s.out_hw, s.out_hw, s.k, s.k, s.groups, backward)
                nbytes = C.conv2d_min_bytes(n, s.cin, s.cout, s.hw, s.hw, s.out_hw, s.out_hw, s.k, s.k,
                                            s.groups, C.DTYPES[dt].itemsize, backward)
                base = {"layer": s.name, "group": s.group, "problem": f"N{n} {s.describe()}", "batch": n,
                        "cin": s.cin, "cout": s.cout, "hw": s.hw, "out_hw": s.out_hw, "k": s.k,
                        "stride": s.stride, "padding": s.padding, "dilation": s.dilation, "groups": s.groups,
                        "count": s.count, "dtype": dt, "layout": layout, "mode": mode,
                        "flops": flops, "bytes": nbytes, "reduced": reduced}
                try:
                    x, w, dy, ref = make_problem(s, n, C.DTYPES[dt], layout, backward, ref_dtype, dev, seed)
                except Exception as e:  # noqa: BLE001 - e.g. out of memory for the reference
                    if on_gpu:
                        torch.cuda.empty_cache()
                    rec = dict(base, provider="(setup)", status="error",
                               note=f"could not build the problem: {short_exc(e)}")
                    records.append(rec)
                    table.row(rec)
                    continue
                base_ms = None
                for p in runnable:
                    rec = dict(base, provider=p)
                    prov = None
                    try:
                        prov = Provider(p, ck, s)
                        measure(prov, ck, s, x, w, dy, ref, dt, dev, args, rec)
                    finally:
                        if p == "compile":
                            del prov
                            torch._dynamo.reset()
                    if rec.get("status") == "ok":
                        tf, gb, pct, bound = C.roofline(flops, nbytes, rec["ms"],
                                                        C.peak_tflops(peak, dt, allow_tf32),
                                                        peak.hbm_gbps if peak else None)
                        rec.update(tflops=tf, gbps=gb, roofline_pct=pct, bound=bound)
                        rate = tf if on_gpu else tf * 1e3  # display only: GFLOP/s on CPU
                        if p == baseline:
                            base_ms = rec["ms"]
                        elif base_ms:
                            rec.update(baseline_ms=base_ms, speedup=base_ms / rec["ms"])
                    records.append(rec)
                    table.row(dict(rec, rate=rate) if rec.get("status") == "ok" else rec)
                del x, w, dy, ref
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: writing the results so far", flush=True)
    meta["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    meta["interrupted"] = interrupted

    # ---- summary
    summary = summarize(records, providers, baseline)
    targets = target_report(summary, on_gpu)
    print(f"\n== geomean speedup vs {baseline} (>1 = faster); 'weighted' = ResNet-50 total time ratio, "
          "layers weighted by count ==")
    C.Table([C.Col("dtype", "dtype", 5, align="<"), C.Col("layout", "layout", 13, align="<"),
             C.Col("batch", "batch", 5), C.Col("mode", "mode", 6, align="<"),
             C.Col("group", "kernel", 6, align="<"), C.Col("provider", "provider", 17, align="<"),
             C.Col("n", "n", 3), C.Col("geomean", "geomean", 7, ".3f"),
             C.Col("min", "min", 7, ".3f"), C.Col("max", "max", 7, ".3f"),
             C.Col("weighted", "weighted", 8, ".3f")]).print_all(summary)
    if not summary:
        print("(nothing to summarize: no provider besides the baseline was timed)")
    print(f"\n== target: ResNet-50 3x3, fp16 channels_last, batch 256, geomean vs {BASELINE['cuda']} ==")
    for t in targets:
        gm = "-" if t["geomean"] is None else f"{t['geomean']:.3f}"
        print(f"  {t['provider']:15} {t['mode']:7} {gm:>6}  (target >= {t['target']:.2f})  {t['verdict']}")

    bad = [r for r in records if r.get("status") in ("mismatch", "error")]
    counts = {}
    for r in records:
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    print(f"\n{len(records)} measurements in {meta['elapsed_s']} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for r in bad:
        print(f"  {r['status'].upper()}: {r['provider']} {r['layer']} {r['dtype']} {r['layout']} "
              f"N{r['batch']} {r['mode']}: {r.get('note', '')}")
    if not on_gpu:
        print("reminder: CPU run on " + ("reduced shapes; " if reduced else "")
              + "these numbers do not measure the GPU kernels.")

    # ---- files
    json_path = args.json
    if json_path is None:
        json_path = C.RESULTS_DIR / f"conv2d-{C.slug('cpu' if not on_gpu else meta['device'])}.json"
    if str(json_path).lower() != "none":
        print(f"wrote {C.write_json(json_path, meta, records, summary=summary, targets=targets)}")
    if args.csv:
        print(f"wrote {C.write_csv(args.csv, records)}")
    return 1 if bad or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
