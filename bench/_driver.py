"""The benchmark loop shared by bench_conv2d.py and bench_depthwise_conv2d.py.

A script describes its benchmark with a ``BenchSpec`` (shape table, providers and baselines, default
configurations, CPU reduction, how the cnnkern op is called, targets, optional extra sections) and calls
``main(spec)``. The driver then does the rest, the same way for every script:

  command line   ``parse_args``: the flags every script shares, plus the script's own (``add_arguments``)
  problems       the shape table filtered by ``--layers``, reduced on CPU; the (dtype, layout, batch, mode)
                 grid; ``make_problem`` builds the rounded inputs and a higher-precision reference
  providers      ``Provider``: cuDNN / ATen eager, torch.compile, cnnkern with a forced or automatic backend
  one result     ``measure``: accuracy check against the reference, then the median time; a failure is a
                 result (mismatch / unsupported / error), never a crash
  metrics        FLOPs and minimal traffic (``spec.counts``), TFLOP/s, GB/s, roofline, speedup over each
                 baseline that ran, and with ``measure_bandwidth`` the % of a measured copy bandwidth
  summary        geomean / min / max / count-weighted speedups per (dtype, layout, batch, mode, group,
                 provider); the script's targets; failures; JSON (and CSV) files

``Run`` holds everything about one invocation (arguments, device, cnnkern, providers, records) and is what
the script's hooks receive.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import _baseline as B
import _common as C
import torch
import torch.nn.functional as F
from shapes import ConvShape, select

MODES = ("fwd", "fwdbwd")
CPU_PROVIDERS = ("aten-cpu",)  # providers that run only on the CPU (the rest need or prefer a GPU)


def is_cudnn(name: str) -> bool:
    """The cuDNN eager baseline and its variants (``cudnn-det``: with deterministic algorithms)."""
    return name == "cudnn" or name.startswith("cudnn-")


CPU_NOTICE = ("No CUDA GPU: timing the CPU paths (reference = ATen CPU; triton = Triton interpreter, only "
              "if TRITON_INTERPRET=1) on reduced shapes (batch {b}, channels/{c}, spatial capped at {hw}) -- "
              "these are not performance numbers for the GPU kernels.")


def conv_counts(s: ConvShape, n: int, elem_size: int, backward: bool) -> tuple[int, int]:
    """FLOPs and compulsory DRAM bytes of one problem (see C.conv2d_flops and C.conv2d_min_bytes)."""
    flops = C.conv2d_flops(n, s.cin, s.cout, s.out_hw, s.out_hw, s.k, s.k, s.groups, backward)
    nbytes = C.conv2d_min_bytes(n, s.cin, s.cout, s.hw, s.hw, s.out_hw, s.out_hw, s.k, s.k, s.groups,
                                elem_size, backward)
    return flops, nbytes


def conv2d_call(ck, s: ConvShape) -> Callable:
    args = (s.stride, s.padding, s.dilation, s.groups)
    return lambda x, w: ck.conv2d(x, w, None, *args)


@dataclass
class BenchSpec:
    """What one benchmark script measures; everything else is the driver's."""

    name: str  # "conv2d": banner "bench_conv2d", default JSON bench/results/conv2d-<device>.json
    description: str  # argparse description
    shapes: Sequence[ConvShape]
    shapes_label: str  # "ResNet-50", for messages
    providers: dict[str, str]  # name -> description
    default_providers: dict[str, list[str]]  # device kind ("cuda", "cpu") -> providers run by default
    # Device kind -> baselines. The first is always run and is what "speedup" is relative to; the others
    # are used when they run (they are run right after it) and give "speedup_vs_<name>".
    baselines: dict[str, list[str]]
    layers_help: str
    quick_help: str
    dtypes: tuple[list[str], list[str]]  # defaults (full, --quick)
    layouts: tuple[list[str], list[str]]
    batches: tuple[list[int], list[int]]  # GPU defaults (full, --quick); CPU: cpu_batch
    evaluate_targets: Callable[[Run, list[dict]], list[dict]]  # (run, summary) -> target rows
    print_targets: Callable[[Run, list[dict]], None]
    summary_title: str  # formatted with baseline=
    group_header: str = "kernel"  # what ConvShape.group is, as a summary column header
    cnnkern_api: str = "conv2d"  # must exist in cnnkern for the cnnkern providers to run
    cnnkern_call: Callable[[object, ConvShape], Callable] = conv2d_call
    compile_mode: str = "max-autotune"
    counts: Callable[[ConvShape, int, int, bool], tuple[int, int]] = conv_counts
    cpu_batch: int = 1
    cpu_dtypes: list[str] | None = None  # default dtypes on CPU (None: the --quick ones)
    cpu_channel_div: int = 8
    cpu_max_hw: int = 16
    # With the Triton interpreter (seconds per call) only these layers run on CPU unless --layers is given.
    interpreter_layers: tuple[str, ...] = ()
    gpu_timing: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"full": (25.0, 100.0), "quick": (25.0, 100.0)})  # (warmup_ms, rep_ms)
    summary_all_groups: bool = False  # also summarize each config over all groups (group "all")
    measure_bandwidth: bool = False  # measure copy bandwidth once; report each result's % of it
    record_aten_backend: bool = False  # note which ATen kernel family the eager baselines ran
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    on_start: Callable[[Run], None] | None = None  # after the environment is known, before the loop
    # After the main loop: more measurements, returning {json key: records}; records whose status is
    # mismatch/error count as failures like the main ones.
    extra_sections: Callable[[Run], dict[str, list[dict]]] | None = None
    # Optional overrides for benchmarks of ops that are not a plain F.conv2d (None / empty: the defaults).
    # eager_call(s) -> f(x, w): what the eager baselines run and torch.compile compiles (default F.conv2d).
    # (Each call builder, eager_call / cnnkern_call / cnnkern_provider_call, also gets the problem's extra
    # inputs as keyword arguments: see Problem.)
    eager_call: Callable[[ConvShape], Callable] | None = None
    # make_problem(s, n, dtype, layout, backward, ref_dtype, dev, seed) -> (x, w, dy, ref) like make_problem
    # below, or a Problem when the op needs more inputs than x and w; ref may be a dict {provider name: ref,
    # None: default ref} for providers with other outputs.
    make_problem: Callable | None = None
    reduce_shape: Callable[[ConvShape], ConvShape] | None = None  # CPU reduction (default reduce_for_cpu)
    provider_backends: dict[str, str] = field(default_factory=dict)  # provider -> cnnkern backend it forces
    # cnnkern_provider_call(provider name, ck, s) -> f(x, w): replaces cnnkern_call when providers differ
    cnnkern_provider_call: Callable[[str, object, ConvShape], Callable] | None = None
    explain_failures: bool = True  # on a cnnkern failure, record cnnkern.explain_conv2d's report
    # provider_context(provider name) -> a context manager entered around that provider's check and timing
    # (e.g. deterministic-algorithm flags); None: none.
    provider_context: Callable[[str], contextlib.AbstractContextManager] | None = None


@dataclass
class Problem:
    """One problem's tensors, as a make_problem hook may return them.

    ``inputs`` are per-problem tensors the op takes besides x and w (e.g. the passthrough half of a
    concatenation): the driver hands them by keyword to the call builders when it builds the providers for
    this problem, so the timed calls capture them and nothing is looked up per call.
    """

    x: torch.Tensor
    w: torch.Tensor
    dy: torch.Tensor | None
    ref: object
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Run:
    """One invocation: settings, environment and results, shared with the script's hooks."""

    spec: BenchSpec
    args: argparse.Namespace
    on_gpu: bool
    dev: torch.device
    reduced: bool
    dtypes: list[str]
    layouts: list[str]
    batches: list[int]
    modes: list[str]
    shapes: list[ConvShape]
    providers: list[str]
    baselines: list[str]  # those that are among the providers; [0] is the primary one
    ref_dtype: torch.dtype
    meta: dict = field(default_factory=dict)
    ck: object = None
    ck_err: str | None = None
    prov_status: dict[str, str | None] = field(default_factory=dict)
    peak: C.Peak | None = None
    measured_gbps: float | None = None
    l2_bytes: int | None = None
    records: list[dict] = field(default_factory=list)

    @property
    def devkind(self) -> str:
        return self.dev.type

    @property
    def baseline(self) -> str:
        return self.baselines[0]

    @property
    def runnable(self) -> list[str]:
        return [p for p in self.providers if self.prov_status.get(p) is None]

    @property
    def interpreter(self) -> bool:
        return not self.on_gpu and "cnnkern-triton" in self.runnable

    def time(self, f: Callable[[], object]) -> dict:
        if self.on_gpu:
            return C.time_gpu(f, warmup_ms=self.args.warmup_ms, rep_ms=self.args.rep_ms)
        return C.time_cpu(f, budget_s=0.05 if self.args.quick else 0.2)


# --------------------------------------------------------------------------------------------------
# Command line


def parse_args(spec: BenchSpec, argv=None) -> argparse.Namespace:
    gpu_def, cpu_def = (",".join(spec.default_providers[k]) for k in ("cuda", "cpu"))
    full_t, quick_t = spec.gpu_timing["full"], spec.gpu_timing["quick"]

    def timing_default(i: int) -> str:
        quick = "" if quick_t[i] == full_t[i] else f"; {quick_t[i]:g} with --quick"
        return f"default {full_t[i]:g}{quick}"

    p = argparse.ArgumentParser(
        description=spec.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="providers:\n" + "\n".join(f"  {k:18} {v}" for k, v in spec.providers.items()),
    )
    p.add_argument("--batch", action="append", metavar="N[,N]",
                   help=f"batch sizes (default {','.join(map(str, spec.batches[0]))} on GPU; {spec.cpu_batch} "
                        "on CPU)")
    p.add_argument("--dtype", action="append", metavar="D[,D]",
                   help=f"fp16, bf16, fp32 (default {','.join(spec.dtypes[0])})")
    p.add_argument("--layout", action="append", metavar="L[,L]",
                   help="channels_last (alias cl, nhwc), nchw (default both)")
    p.add_argument("--mode", action="append", metavar="M[,M]", help="fwd, fwdbwd (default both)")
    p.add_argument("--layers", action="append", metavar="PAT[,PAT]", help=spec.layers_help)
    p.add_argument("--providers", action="append", metavar="P[,P]",
                   help=f"providers to run, or 'all' (default: {gpu_def} on GPU; {cpu_def} on CPU). The "
                        f"baseline ({spec.baselines['cuda'][0]} on GPU, {spec.baselines['cpu'][0]} on CPU) is "
                        "always run: speedups are relative to it.")
    p.add_argument("--quick", action=argparse.BooleanOptionalAction, default=None, help=spec.quick_help)
    p.add_argument("--json", metavar="PATH", default=None,
                   help=f"JSON output (default bench/results/{spec.name}-<device>.json; 'none' to skip)")
    p.add_argument("--csv", metavar="PATH", default=None, help="also write the records as CSV")
    p.add_argument("--warmup-ms", type=float, default=None,
                   help=f"GPU warm-up time per measurement ({timing_default(0)})")
    p.add_argument("--rep-ms", type=float, default=None,
                   help=f"GPU timed repetitions per measurement, ms ({timing_default(1)})")
    p.add_argument("--ref-dtype", choices=("fp32", "fp64"), default=None,
                   help="reference precision for the accuracy check (default fp32 without TF32 on GPU, "
                        "fp64 on CPU)")
    p.add_argument("--cpu", action="store_true", help="use the CPU path even if a GPU is present")
    p.add_argument("--full-shapes", action="store_true",
                   help=f"on CPU, use the real {spec.shapes_label} shapes instead of the reduced ones (slow)")
    p.add_argument("--triton-interpret", action="store_true",
                   help="set TRITON_INTERPRET=1 before importing cnnkern/triton (CPU runs of the Triton "
                        "kernels; very slow)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU runs: torch.set_num_threads (default 1; steadier timings on small machines)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--list", action="store_true", help="print the selected problems and exit")
    p.add_argument("--compare", metavar="latest|PATH", default=None,
                   help="after the run, compare each measurement with a baseline (ratio ms new / baseline): "
                        "'latest' = the newest bench/baselines/<gpu>-<date>/ for this GPU, or a folder or JSON")
    p.add_argument("--compare-threshold", type=float, default=B.DEFAULT_THRESHOLD, metavar="FRAC",
                   help="flag ratios beyond 1 + FRAC as regressions (default %(default)g)")
    if spec.add_arguments:
        spec.add_arguments(p)
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------------
# Helpers


def reduce_for_cpu(spec: BenchSpec, s: ConvShape) -> ConvShape:
    """Channels / cpu_channel_div (at least 4; 3-channel inputs stay), spatial size capped at cpu_max_hw.
    Depthwise problems (groups == cin) keep groups == cin."""
    def ch(c: int) -> int:
        return c if c <= 4 else max(4, c // spec.cpu_channel_div)

    groups = ch(s.groups) if s.groups == s.cin and s.groups > 1 else s.groups
    return dataclasses.replace(s, cin=ch(s.cin), cout=ch(s.cout), hw=min(s.hw, spec.cpu_max_hw), groups=groups)


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


def import_cnnkern(api: str = "conv2d"):
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
        getattr(cnnkern, api)  # fail early if the API is not there yet
        return cnnkern, None
    except Exception as e:  # noqa: BLE001
        return None, f"import cnnkern failed: {type(e).__name__}: {e}"


def provider_status(name: str, dev: str, ck, ck_err: str | None, backend_status: dict,
                    backend: str | None = None) -> str | None:
    """None if the provider can run here, else why not."""
    if is_cudnn(name):
        if dev != "cuda":
            return "no CUDA GPU"
        return None if torch.backends.cudnn.is_available() else "cuDNN not available in this torch build"
    if name in CPU_PROVIDERS:
        return None if dev == "cpu" else "CPU provider; not run on GPU"
    if name == "compile":
        return None
    if ck is None:
        return ck_err
    if name == "cnnkern-auto":
        return None
    backend = backend or name.split("-", 1)[1]
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

    def __init__(self, name: str, ck, s: ConvShape, spec: BenchSpec, inputs: dict | None = None):
        self.name = name
        inputs = inputs or {}  # the problem's extra inputs, for the call builders (see Problem)
        self.uses_cudagraphs = False
        eager = is_cudnn(name) or name in CPU_PROVIDERS
        if eager and spec.eager_call is not None:
            self.call = spec.eager_call(s, **inputs)
        elif name == "compile" and spec.eager_call is not None:
            self.call = torch.compile(spec.eager_call(s, **inputs), mode=spec.compile_mode, dynamic=False)
            self.uses_cudagraphs = spec.compile_mode in ("max-autotune", "reduce-overhead")
        elif eager:
            args = (s.stride, s.padding, s.dilation, s.groups)
            self.call = lambda x, w: F.conv2d(x, w, None, *args)
        elif name == "compile":
            args = (s.stride, s.padding, s.dilation, s.groups)

            def conv(x, w):
                return F.conv2d(x, w, None, *args)

            self.call = torch.compile(conv, mode=spec.compile_mode, dynamic=False)
            self.uses_cudagraphs = spec.compile_mode in ("max-autotune", "reduce-overhead")
        elif spec.cnnkern_provider_call is not None:
            self.call = spec.cnnkern_provider_call(name, ck, s, **inputs)
        else:
            self.call = spec.cnnkern_call(ck, s, **inputs)
        backend = name.split("-", 1)[1] if name.startswith("cnnkern-") else None
        backend = spec.provider_backends.get(name, backend)
        self._backend = None if backend in (None, "auto") else backend
        self._ck = ck
        self._extra = spec.provider_context

    @contextlib.contextmanager
    def context(self):
        """Force the backend (process-wide, so autograd's backward threads see it too), inside the spec's
        provider_context if it has one."""
        with contextlib.ExitStack() as stack:
            if self._extra is not None:
                stack.enter_context(self._extra(self.name))
            if self._backend is not None:
                stack.enter_context(self._ck.use_backend(self._backend))
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
                 dev: torch.device, seed: int, w_shape: Sequence[int] | None = None,
                 reference: Callable | None = None):
    """x (N, C_in, hw, hw), w (``w_shape``, conv2d's by default), dy (N, C_out, out_hw, out_hw), and
    ``reference(x, w)`` (F.conv2d by default) with its gradients, from the same rounded inputs in ref_dtype."""
    g = torch.Generator(device=dev).manual_seed(seed)
    oh = s.out_hw
    if w_shape is None:
        w_shape = (s.cout, s.cin // s.groups, s.k, s.k)
    if reference is None:
        def reference(x, w):
            return F.conv2d(x, w, None, s.stride, s.padding, s.dilation, s.groups)

    def randn(*shape, scale=1.0):
        t = torch.randn(*shape, generator=g, device=dev, dtype=torch.float32)
        return C.to_layout((t * scale if scale != 1.0 else t).to(dtype), layout)

    x = randn(n, s.cin, s.hw, s.hw)
    w = randn(*w_shape, scale=1 / math.sqrt(s.cin // s.groups * s.k * s.k))
    dy = randn(n, s.cout, oh, oh) if backward else None

    # Reference from the same (rounded) inputs, in higher precision.
    xr = x.detach().to(ref_dtype).requires_grad_(backward)
    wr = w.detach().to(ref_dtype).requires_grad_(backward)
    with strict_fp32() if dev.type == "cuda" else contextlib.nullcontext():
        yr = reference(xr, wr)
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


def check_outputs(rec: dict, names: Sequence[str], outs, ref, tol: float) -> bool:
    """Fill rec's max_rel_err / err; on a mismatch also status and note. True when all are within tol."""
    errs = {k: C.rel_max_err(o, r) for k, o, r in zip(names, outs, ref, strict=True)}
    rec["max_rel_err"] = errs
    rec["err"] = max(errs.values())
    if all(e <= tol for e in errs.values()):
        return True
    bad = ", ".join(f"{k}={v:.2e}" for k, v in errs.items() if not v <= tol)
    rec["status"] = "mismatch"
    rec["note"] = f"rel err {bad} > tol {tol:g}"
    return False


def record_failure(run: Run, rec: dict, e: BaseException, cnnkern_provider: bool) -> None:
    """A provider failure is a result: 'unsupported' when a forced cnnkern backend refuses the problem
    before any output was checked, else 'error'."""
    if run.on_gpu and isinstance(e, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
    unsupported = cnnkern_provider and "err" not in rec and looks_unsupported(e)
    rec["status"] = "unsupported" if unsupported else "error"
    rec["note"] = short_exc(e)
    if not unsupported and os.environ.get("BENCH_TRACEBACK"):
        traceback.print_exc()


# --------------------------------------------------------------------------------------------------
# One measurement


def measure(run: Run, prov: Provider, s: ConvShape, x, w, dy, ref, dtype_name: str, rec: dict) -> None:
    """Check then time one provider on one problem; fills rec in place."""
    tol = C.REL_TOL[dtype_name]
    rec["tol"] = tol
    if isinstance(ref, dict):
        ref = ref.get(prov.name, ref[None])
    try:
        with prov.context():
            f = prov.step(x, w, dy)
            outs = f()
            sync(run.dev)
            rec["out_channels_last"] = C.is_channels_last(outs[0])
            ok = check_outputs(rec, ("out", "dx", "dw")[: len(outs)], outs, ref, tol)
            del outs
            if not ok:
                return
            t = run.time(f)
    except Exception as e:  # noqa: BLE001 - any provider failure is a result, not a crash
        record_failure(run, rec, e, prov.name.startswith("cnnkern-"))
        why = explain(run.ck, x, w, s) if prov.name.startswith("cnnkern-") and run.spec.explain_failures else None
        if why:
            rec["explain"] = why
        return
    rec.update(status="ok", ms=t["ms"], ms_p20=t["ms_p20"], ms_p80=t["ms_p80"], timer=t["timer"])
    if prov.name == "cnnkern-auto":
        rec["backends"] = auto_choice(run.ck, x, w, s)
        rec["note"] = "chose " + "/".join(str(b) for b in rec["backends"].values())
    if "reps" in t:
        rec["reps"] = t["reps"]


# --------------------------------------------------------------------------------------------------
# Summary


def summarize(records: list[dict], providers: list[str], baselines: list[str], all_groups: bool = False):
    """Geomean speedup vs the baseline per provider and (dtype, layout, batch, mode, group); with
    all_groups also over every group of a config (group "all"). Secondary baselines add
    ``geomean_vs_<name>`` over the same records."""
    baseline = baselines[0]
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r["provider"] == baseline or r.get("speedup") is None:
            continue
        for g in ([r["group"], "all"] if all_groups else [r["group"]]):
            groups.setdefault((r["dtype"], r["layout"], r["batch"], r["mode"], g, r["provider"]), []).append(r)
    order = {p: i for i, p in enumerate(providers)}
    rows = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3], k[4] != "all", k[4], order.get(k[5], 99))):
        rs = groups[key]
        sp = [r["speedup"] for r in rs]
        # Whole-network view: sum over layers of count * time, baseline / provider.
        net = sum(r["count"] * r["baseline_ms"] for r in rs) / sum(r["count"] * r["ms"] for r in rs)
        row = dict(zip(("dtype", "layout", "batch", "mode", "group", "provider"), key, strict=True),
                   n=len(rs), geomean=C.geomean(sp), min=min(sp), max=max(sp), weighted=net)
        for b in baselines[1:]:
            row[f"geomean_vs_{b}"] = C.geomean(r.get(f"speedup_vs_{b}") for r in rs)
        rows.append(row)
    return rows


def print_summary(run: Run, summary: list[dict]) -> None:
    print("\n" + run.spec.summary_title.format(baseline=run.baseline))
    gw = max([6, len(run.spec.group_header)] + [len(r["group"]) for r in summary])
    cols = [C.Col("dtype", "dtype", 5, align="<"), C.Col("layout", "layout", 13, align="<"),
            C.Col("batch", "batch", 5), C.Col("mode", "mode", 6, align="<"),
            C.Col("group", run.spec.group_header, gw, align="<"), C.Col("provider", "provider", 17, align="<"),
            C.Col("n", "n", 3), C.Col("geomean", "geomean", 7, ".3f"),
            C.Col("min", "min", 7, ".3f"), C.Col("max", "max", 7, ".3f"),
            C.Col("weighted", "weighted", 8, ".3f")]
    cols += [C.Col(f"geomean_vs_{b}", f"gm x{b}", 10, ".3f") for b in run.baselines[1:]]
    C.Table(cols).print_all(summary)
    if not summary:
        print("(nothing to summarize: no provider besides the baseline was timed)")


# --------------------------------------------------------------------------------------------------
# Main


def _resolve_configs(spec: BenchSpec, args, on_gpu: bool):
    """(dtypes, layouts, modes, batches, providers in run order, baselines present); ValueError on bad
    arguments."""
    devkind = "cuda" if on_gpu else "cpu"
    default_dtypes = spec.cpu_dtypes if not on_gpu and spec.cpu_dtypes else spec.dtypes[bool(args.quick)]
    dtypes = [C.canon_dtype(d) for d in C.parse_list(args.dtype)] or list(default_dtypes)
    layouts = [C.canon_layout(v) for v in C.parse_list(args.layout)] or list(spec.layouts[bool(args.quick)])
    modes = C.parse_list(args.mode) or list(MODES)
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"unknown mode {bad[0]!r}; choose from {', '.join(MODES)}")
    batches = [int(b) for b in C.parse_list(args.batch)]
    requested = C.parse_list(args.providers) or spec.default_providers[devkind]
    if "all" in requested:
        requested = [p for p in spec.providers
                     if not (p in CPU_PROVIDERS if on_gpu else is_cudnn(p))]
    bad = [p for p in requested if p not in spec.providers]
    if bad:
        raise ValueError(f"unknown provider {bad[0]!r}; choose from {', '.join(spec.providers)}")
    base = spec.baselines[devkind]
    requested = list(dict.fromkeys(requested))
    baselines = [base[0]] + [b for b in base[1:] if b in requested]
    providers = baselines + [p for p in requested if p not in baselines]
    return dtypes, layouts, modes, batches, providers, baselines


def _environment(run: Run) -> None:
    """cnnkern import, provider availability, peaks, bandwidth and metadata."""
    spec, args, on_gpu, dev = run.spec, run.args, run.on_gpu, run.dev
    meta = run.meta = C.run_metadata(dev)
    meta["bench"] = spec.name  # which benchmark wrote the JSON (baselines and comparisons key on it)
    ck, ck_err = import_cnnkern(spec.cnnkern_api)
    backend_status = {}
    if ck is not None:
        try:
            backend_status = {k: (None if v is None else str(v)) for k, v in ck.backend_status().items()}
        except Exception as e:  # noqa: BLE001
            ck_err = f"cnnkern.backend_status() failed: {short_exc(e)}"
            ck = None
    run.ck, run.ck_err = ck, ck_err
    meta["cnnkern"] = getattr(ck, "__version__", None) if ck else None
    meta["cnnkern_path"] = os.path.dirname(ck.__file__) if ck else None
    meta["cnnkern_backend_status"] = backend_status if ck else ck_err
    run.prov_status = {p: provider_status(p, run.devkind, ck, ck_err, backend_status,
                                          spec.provider_backends.get(p)) for p in run.providers}
    meta["providers"] = {p: {"description": spec.providers[p], "skipped": run.prov_status[p]}
                         for p in run.providers}
    if "compile" in run.providers and run.prov_status["compile"] is None:
        cfg = torch._dynamo.config
        for knob in ("recompile_limit", "cache_size_limit"):
            if hasattr(cfg, knob):
                setattr(cfg, knob, max(getattr(cfg, knob), 4096))
    peak_src = None
    if on_gpu:
        found = C.lookup_peak(meta["device"])
        if found:
            peak_src, run.peak = f"datasheet ({found[0]})", found[1]
        else:
            print(f"note: {meta['device']} not in the peak table; measuring copy bandwidth and fp16 matmul "
                  "throughput instead", flush=True)
            run.peak, peak_src = C.measure_peak(dev), "measured (copy + fp16 matmul)"
    meta.update(
        baseline=run.baseline, reduced_shapes=run.reduced, quick=args.quick, ref_dtype=str(run.ref_dtype),
        peak=None if run.peak is None else dict(run.peak.__dict__, source=peak_src),
        cudnn_fp32_tf32=cudnn_fp32_is_tf32() if on_gpu else None,
        timing=("median of CUDA-event times, L2 flushed before each run; "
                f"warmup {args.warmup_ms:g} ms, rep {args.rep_ms:g} ms") if on_gpu
        else "median of time.perf_counter wall times (after a warm-up call; calls over 1 s: one sample)",
        rel_tol=C.REL_TOL,
    )
    if len(run.baselines) > 1:
        meta["secondary_baselines"] = run.baselines[1:]
    if spec.measure_bandwidth:
        nbytes = (1 << 30) if on_gpu else (128 << 20)
        run.measured_gbps = C.measure_copy_gbps(dev, nbytes)
        run.l2_bytes = C.l2_cache_bytes(dev) if on_gpu else None
        meta["bandwidth"] = {
            "measured_copy_gbps": run.measured_gbps,
            "method": f"median time of one {nbytes >> 20} MiB {'device-to-device' if on_gpu else 'CPU'} copy "
                      "(Tensor.copy_), bytes read + written",
            "datasheet_gbps": run.peak.hbm_gbps if run.peak else None,
            "l2_bytes": run.l2_bytes,
        }


def _banner(run: Run, n_configs: int) -> None:
    spec, meta = run.spec, run.meta
    print(f"bench_{spec.name}: {meta['device']} | torch {meta['torch']} | triton {meta['triton']} | "
          f"cuda {meta['cuda']} | cnnkern {meta['cnnkern'] or '-'}")
    if not run.on_gpu:
        notice = CPU_NOTICE.format(b=spec.cpu_batch, c=spec.cpu_channel_div, hw=spec.cpu_max_hw)
        if not run.reduced:
            notice = notice.split(" on reduced shapes")[0] + " on the real shapes (--full-shapes)."
        print(notice)
        meta["notice"] = notice
    elif os.environ.get("TRITON_INTERPRET") == "1":
        print("warning: TRITON_INTERPRET=1 on a GPU machine: Triton kernels run in the interpreter")
    if run.peak is not None:
        print(f"peaks: {run.peak.tensor16:g} TFLOP/s fp16/bf16, {run.peak.hbm_gbps:g} GB/s [{meta['peak']['source']}]")
    if run.measured_gbps is not None:
        sheet = f" = {100 * run.measured_gbps / run.peak.hbm_gbps:.0f}% of the datasheet" if run.peak else ""
        l2 = f"; L2 {run.l2_bytes / 2**20:g} MiB" if run.l2_bytes else ""
        print(f"bandwidth: {run.measured_gbps:.0f} GB/s measured ({meta['bandwidth']['method']}){sheet}{l2}; "
              "%bw = GB/s of the minimal traffic / measured")
    print(f"baseline: {run.baseline}"
          + "".join(f"; also speedup vs {b} (x{b})" for b in run.baselines[1:])
          + f"; accuracy check vs F.conv2d in {str(run.ref_dtype).replace('torch.', '')}, "
          f"rel. tolerance {', '.join(f'{d} {C.REL_TOL[d]:g}' for d in run.dtypes)}")
    for p in run.providers:
        st = run.prov_status[p]
        print(f"  provider {p:18} {'run' if st is None else 'SKIPPED: ' + st}")
    if run.interpreter and not run.args.layers and spec.interpreter_layers:
        run.shapes = [s for s in run.shapes if s.name in spec.interpreter_layers]
        print(f"Triton interpreter is slow (seconds per call): running only {len(run.shapes)} representative "
              "layers (pass --layers to choose)")
        meta["interpreter_layers"] = [s.name for s in run.shapes]
    print(f"{len(run.shapes)} layers x {n_configs} configs x {len(run.runnable)} providers", flush=True)


def _columns(run: Run) -> list[C.Col]:
    cols = [C.Col("layer", "layer", 26, align="<"), C.Col("problem", "problem", 22, align="<"),
            C.Col("provider", "provider", 17, align="<"), C.Col("status", "status", 11, align="<"),
            C.Col("ms", "ms", 9, ".4f"), C.Col("rate", "TFLOP/s" if run.on_gpu else "GFLOP/s", 8, ".2f"),
            C.Col("gbps", "GB/s", 8, ".1f")]
    if run.spec.measure_bandwidth:
        cols.append(C.Col("bw_pct", "%bw", 7, ".1f"))
    else:
        cols.append(C.Col("roofline_pct", "%roof", 6, ".1f"))
    cols.append(C.Col("speedup", f"x{run.baseline}", 7, ".3f"))
    cols += [C.Col(f"speedup_vs_{b}", f"x{b}", 8, ".3f") for b in run.baselines[1:]]
    return cols + [C.Col("err", "rel.err", 8, ".1e"), C.Col("note", "note", 10, align="<")]


def _run_problem(run: Run, s: ConvShape, n: int, dt: str, layout: str, mode: str, seed: int, table) -> None:
    """All providers on one (layer, batch, dtype, layout, mode)."""
    backward = mode == "fwdbwd"
    flops, nbytes = run.spec.counts(s, n, C.DTYPES[dt].itemsize, backward)
    base = {"layer": s.name, "group": s.group, "problem": f"N{n} {s.describe()}", "batch": n,
            "cin": s.cin, "cout": s.cout, "hw": s.hw, "out_hw": s.out_hw, "k": s.k,
            "stride": s.stride, "padding": s.padding, "dilation": s.dilation, "groups": s.groups,
            "count": s.count, "dtype": dt, "layout": layout, "mode": mode,
            "flops": flops, "bytes": nbytes, "reduced": run.reduced}
    try:
        made = (run.spec.make_problem or make_problem)(s, n, C.DTYPES[dt], layout, backward, run.ref_dtype,
                                                       run.dev, seed)
        problem = made if isinstance(made, Problem) else Problem(*made)
        x, w, dy, ref = problem.x, problem.w, problem.dy, problem.ref
    except Exception as e:  # noqa: BLE001 - e.g. out of memory for the reference
        if run.on_gpu:
            torch.cuda.empty_cache()
        rec = dict(base, provider="(setup)", status="error", note=f"could not build the problem: {short_exc(e)}")
        run.records.append(rec)
        table.row(rec)
        return
    peak_tf = C.peak_tflops(run.peak, dt, cudnn_fp32_is_tf32() if run.on_gpu else False)
    base_ms: dict[str, float] = {}
    for p in run.runnable:
        rec = dict(base, provider=p)
        prov = None
        try:
            prov = Provider(p, run.ck, s, run.spec, problem.inputs)
            measure(run, prov, s, x, w, dy, ref, dt, rec)
        finally:
            if p == "compile":
                del prov
                torch._dynamo.reset()
        if rec.get("status") == "ok":
            tf, gb, pct, bound = C.roofline(flops, nbytes, rec["ms"], peak_tf,
                                            run.peak.hbm_gbps if run.peak else None)
            rec.update(tflops=tf, gbps=gb, roofline_pct=pct, bound=bound)
            rec["rate"] = tf if run.on_gpu else tf * 1e3  # display only: GFLOP/s on CPU
            if run.measured_gbps:
                rec["bw_pct"] = 100.0 * gb / run.measured_gbps
                if run.peak:
                    rec["bw_pct_datasheet"] = 100.0 * gb / run.peak.hbm_gbps
            for b in run.baselines:
                if b == p or b not in base_ms:
                    continue
                if b == run.baseline:
                    rec.update(baseline_ms=base_ms[b], speedup=base_ms[b] / rec["ms"])
                else:
                    rec[f"speedup_vs_{b}"] = base_ms[b] / rec["ms"]
            if p in run.baselines:
                base_ms[p] = rec["ms"]
            if run.spec.record_aten_backend and (p == "cudnn" or p in CPU_PROVIDERS):
                rec["aten_backend"] = C.aten_conv_backend(x, w, s.stride, s.padding, s.dilation, s.groups)
                rec.setdefault("note", rec["aten_backend"])
        table.row(rec)
        rec.pop("rate", None)
        run.records.append(rec)
    del x, w, dy, ref, problem, made


def _stop(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(spec: BenchSpec, argv=None) -> int:
    args = parse_args(spec, argv)
    if args.triton_interpret:
        os.environ["TRITON_INTERPRET"] = "1"
    on_gpu = torch.cuda.is_available() and not args.cpu
    dev = torch.device("cuda") if on_gpu else torch.device("cpu")
    if args.quick is None:
        args.quick = not on_gpu
    warmup, rep = spec.gpu_timing["quick" if args.quick else "full"]
    args.warmup_ms = warmup if args.warmup_ms is None else args.warmup_ms
    args.rep_ms = rep if args.rep_ms is None else args.rep_ms
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    elif args.threads > 0:
        torch.set_num_threads(args.threads)

    # ---- what to run
    try:
        dtypes, layouts, modes, batches, providers, baselines = _resolve_configs(spec, args, on_gpu)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    reduced = not on_gpu and not args.full_shapes
    if not batches:
        batches = [spec.cpu_batch] if reduced else list(spec.batches[bool(args.quick)])

    shapes = select(spec.shapes, C.parse_list(args.layers))
    if not shapes:
        print(f"error: --layers matched no layer (see python bench/bench_{spec.name}.py --list)", file=sys.stderr)
        return 2
    if reduced:
        shapes = [spec.reduce_shape(s) if spec.reduce_shape else reduce_for_cpu(spec, s) for s in shapes]
    if args.list:
        gw = max(5, *(len(s.group) for s in shapes))
        for s in shapes:
            print(f"{s.name:28} {s.group:{gw}} {s.describe()}  x{s.count}")
        return 0
    ref_name = args.ref_dtype or ("fp32" if on_gpu else "fp64")
    run = Run(spec=spec, args=args, on_gpu=on_gpu, dev=dev, reduced=reduced, dtypes=dtypes, layouts=layouts,
              batches=batches, modes=modes, shapes=shapes, providers=providers, baselines=baselines,
              ref_dtype={"fp32": torch.float32, "fp64": torch.float64}[ref_name])

    # ---- environment, banner
    _environment(run)
    configs = list(itertools.product(dtypes, layouts, batches, modes))
    _banner(run, len(configs))
    if spec.on_start:
        spec.on_start(run)
    table = C.Table(_columns(run))

    # ---- run
    t_start = time.perf_counter()
    interrupted = False
    extras: dict[str, list[dict]] = {}
    old_term = signal.signal(signal.SIGTERM, _stop)  # e.g. `timeout`: keep the results so far
    try:
        for ci, (dt, layout, n, mode) in enumerate(configs):
            print(f"\n== {dt} {layout} batch={n} {mode} ==")
            table.header()
            for si, s in enumerate(run.shapes):
                _run_problem(run, s, n, dt, layout, mode, args.seed * 1_000_003 + ci * 1000 + si, table)
        if spec.extra_sections:
            extras = spec.extra_sections(run)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: writing the results so far", flush=True)
    finally:
        signal.signal(signal.SIGTERM, old_term)
    meta = run.meta
    meta["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    meta["interrupted"] = interrupted

    # ---- summary
    summary = summarize(run.records, providers, run.baselines, spec.summary_all_groups)
    print_summary(run, summary)
    targets = spec.evaluate_targets(run, summary)
    spec.print_targets(run, targets)

    all_records = run.records + [r for recs in extras.values() for r in recs]
    bad = [r for r in all_records if r.get("status") in ("mismatch", "error")]
    counts: dict[str, int] = {}
    for r in run.records:
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    print(f"\n{len(run.records)} measurements in {meta['elapsed_s']} s: "
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
        json_path = C.RESULTS_DIR / f"{spec.name}-{C.slug('cpu' if not on_gpu else meta['device'])}.json"
    if str(json_path).lower() != "none":
        print(f"wrote {C.write_json(json_path, meta, run.records, summary=summary, targets=targets, **extras)}")
    if args.csv:
        print(f"wrote {C.write_csv(args.csv, run.records)}")
    if args.compare:
        _compare(run, args.compare, args.compare_threshold)
    return 1 if bad or interrupted else 0


def _compare(run: Run, spec: str, threshold: float) -> None:
    """Print this run's measurements against a committed baseline (bench/_baseline.py)."""
    doc = {"metadata": run.meta, "records": run.records}
    base, source, note = B.resolve_baseline(spec, doc)
    print()
    if base is None:
        print(f"compare: {note}")
        return
    if note:
        print(f"compare: {note}")
    print("\n".join(B.format_comparison(B.compare_docs(doc, base, threshold), source, threshold)))
