"""Shared helpers for the cnnkern benchmark scripts in bench/.

bench/ is not a package: a script such as ``python bench/bench_conv2d.py`` has bench/ on ``sys.path``
(Python puts the script's directory there) and simply does ``import _common``.

Contents: dtype/layout parsing, peak-throughput table and roofline, measured copy bandwidth and L2 size,
FLOP and minimal-traffic counts for conv2d, timers (GPU: median of CUDA-event times with L2 flushed; CPU:
median of perf_counter times), accuracy comparison, an aligned streaming table printer, run metadata, and
JSON/CSV writers. The benchmark loop itself (command line, providers, checks, summary) is in _driver.py.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

# --------------------------------------------------------------------------------------------------
# dtypes and layouts

DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
_DTYPE_ALIASES = {"half": "fp16", "float16": "fp16", "bfloat16": "bf16", "float": "fp32", "float32": "fp32"}
LAYOUTS = ("channels_last", "nchw")
_LAYOUT_ALIASES = {"cl": "channels_last", "nhwc": "channels_last", "channels-last": "channels_last",
                   "contiguous": "nchw", "contig": "nchw"}

# Accuracy tolerance, as max|out - ref| / max|ref| per tensor (output, grad_input, grad_weight).
# Inputs are rounded to the dtype first, so the reference sees the same inputs; what remains is output
# rounding (fp16 2^-11, bf16 2^-8 relative) plus accumulation-order noise. fp32 allows for TF32 math.
REL_TOL: dict[str, float] = {"fp16": 1e-2, "bf16": 3e-2, "fp32": 5e-3}


def parse_list(values: Iterable[str] | None) -> list[str]:
    """Flatten ``["a,b", "c"]`` into ``["a", "b", "c"]``."""
    out: list[str] = []
    for v in values or []:
        out += [p.strip() for p in str(v).split(",") if p.strip()]
    return out


def canon_dtype(name: str) -> str:
    name = _DTYPE_ALIASES.get(name.lower(), name.lower())
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
    return name


def canon_layout(name: str) -> str:
    name = _LAYOUT_ALIASES.get(name.lower(), name.lower())
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; choose from {', '.join(LAYOUTS)}")
    return name


def to_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last" and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    return t.contiguous()


def is_channels_last(t: torch.Tensor) -> bool:
    return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


# --------------------------------------------------------------------------------------------------
# Device peaks and roofline

@dataclass(frozen=True)
class Peak:
    tensor16: float  # dense fp16/bf16 tensor-core TFLOP/s (fp32 accumulate, no sparsity)
    tf32: float  # dense TF32 tensor-core TFLOP/s
    fp32: float  # non-tensor fp32 TFLOP/s
    hbm_gbps: float  # DRAM bandwidth, GB/s (1e9 bytes/s)


# Vendor datasheet numbers at boost clock. Matched against torch.cuda.get_device_name() by regex, in
# order (first match wins), so the more specific names come first.
PEAKS: list[tuple[str, str, Peak]] = [
    (r"H200 NVL", "H200 NVL", Peak(835, 418, 60, 4800)),
    (r"H200", "H200 SXM", Peak(989, 494, 67, 4800)),
    (r"H100 PCIe", "H100 PCIe", Peak(756, 378, 51, 2000)),
    (r"H100 NVL", "H100 NVL", Peak(835, 418, 60, 3900)),
    (r"H100", "H100 SXM", Peak(989, 494, 67, 3350)),
    (r"A100.*PCIE.*40GB|A100-PCIE-40GB", "A100 PCIe 40GB", Peak(312, 156, 19.5, 1555)),
    (r"A100.*80GB PCIe", "A100 PCIe 80GB", Peak(312, 156, 19.5, 1935)),
    (r"A100.*40GB", "A100 SXM 40GB", Peak(312, 156, 19.5, 1555)),
    (r"A100", "A100 SXM 80GB", Peak(312, 156, 19.5, 2039)),
    (r"L40S", "L40S", Peak(362, 183, 91.6, 864)),
    (r"\bL4\b", "L4", Peak(121, 60, 30.3, 300)),
    (r"A10\b", "A10", Peak(125, 62.5, 31.2, 600)),
    (r"RTX 4090", "RTX 4090", Peak(165, 82.6, 82.6, 1008)),
]


def lookup_peak(device_name: str) -> tuple[str, Peak] | None:
    for pattern, label, peak in PEAKS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return label, peak
    return None


def measure_peak(device: torch.device) -> Peak:
    """Fallback for GPUs missing from PEAKS: a big device-to-device copy and a big fp16 matmul.
    Measured numbers underestimate the true peak, so %-of-roofline reads high."""
    def matmul_tflops() -> float:
        a = torch.randn(8192, 8192, dtype=torch.float16, device=device)
        b = torch.randn(8192, 8192, dtype=torch.float16, device=device)
        ms = time_gpu(lambda: a @ b, warmup_ms=20, rep_ms=100, flush_l2=False)["ms"]
        return 2 * 8192**3 / (ms * 1e-3) / 1e12

    gbps = measure_copy_gbps(device)
    tflops = matmul_tflops()
    return Peak(tensor16=tflops, tf32=tflops / 2, fp32=tflops / 8, hbm_gbps=gbps)


def measure_copy_gbps(device: torch.device, nbytes: int = 1 << 30) -> float:
    """Achieved memory bandwidth of one big device-to-device copy, in GB/s, counting the bytes read and
    the bytes written (2 * nbytes per copy), like the minimal-traffic counts below. GPU: median of
    CUDA-event times (no L2 flush: the copy is far bigger than any L2); CPU: median of perf_counter times."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    src.fill_(1.0)
    dst = torch.empty_like(src)
    if device.type == "cuda":
        ms = time_gpu(lambda: dst.copy_(src), warmup_ms=20, rep_ms=100, flush_l2=False)["ms"]
    else:
        ms = time_cpu(lambda: dst.copy_(src), budget_s=0.2, min_reps=3, max_reps=10)["ms"]
    return 2 * src.numel() * src.element_size() / (ms * 1e-3) / 1e9


def l2_cache_bytes(device: torch.device, default: int = 50 << 20) -> int:
    """The GPU's L2 size from its properties (``L2_cache_size``), else ``default`` (H100's 50 MiB)."""
    size = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", None)
    return int(size) if size else default


def aten_conv_backend(x: torch.Tensor, w: torch.Tensor, stride: int, padding: int, dilation: int,
                      groups: int) -> str | None:
    """The kernel family ATen picks for F.conv2d on these tensors (e.g. ``Cudnn``, ``CudaDepthwise2d``),
    from the private ``torch._C._select_conv_backend``; None where this torch does not have it."""
    fn = getattr(torch._C, "_select_conv_backend", None)
    if fn is None:
        return None
    try:
        backend = fn(x, w, None, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0], groups)
    except Exception:  # noqa: BLE001 - a private API: any failure just means "unknown"
        return None
    return str(backend).rsplit(".", 1)[-1]


def peak_tflops(peak: Peak | None, dtype: str, allow_tf32: bool) -> float | None:
    if peak is None:
        return None
    if dtype in ("fp16", "bf16"):
        return peak.tensor16
    return peak.tf32 if allow_tf32 else peak.fp32


def roofline(flops: float, nbytes: float, ms: float, peak_tf: float | None, peak_gbps: float | None):
    """Achieved TFLOP/s and GB/s, and % of the roofline bound min(peak, intensity * bandwidth)."""
    sec = ms * 1e-3
    tflops = flops / sec / 1e12
    gbps = nbytes / sec / 1e9
    if not peak_tf or not peak_gbps:
        return tflops, gbps, None, None
    attainable = min(peak_tf, flops / nbytes * peak_gbps / 1e3)  # TFLOP/s
    bound = "compute" if attainable >= peak_tf else "memory"
    return tflops, gbps, 100.0 * tflops / attainable, bound


# --------------------------------------------------------------------------------------------------
# Convolution FLOPs and traffic


def conv_out_size(size: int, k: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def conv2d_flops(n, cin, cout, oh, ow, kh, kw, groups=1, backward=False) -> int:
    """2*N*OH*OW*Cout*(Cin/groups)*KH*KW for one forward conv; x3 with backward (dgrad + wgrad)."""
    fwd = 2 * n * oh * ow * cout * (cin // groups) * kh * kw
    return 3 * fwd if backward else fwd


def conv2d_min_bytes(n, cin, cout, h, w, oh, ow, kh, kw, groups, elem_size, backward=False) -> int:
    """Compulsory DRAM traffic, each tensor touched once per pass.
    fwd: read x, w; write y.  fwd+bwd adds: read dy, x, w; write dx, dw."""
    x = n * cin * h * w
    wt = cout * (cin // groups) * kh * kw
    y = n * cout * oh * ow
    elems = x + wt + y
    if backward:
        elems += y + x + wt + x + wt
    return elems * elem_size


# --------------------------------------------------------------------------------------------------
# Timing


def time_gpu(fn: Callable[[], object], warmup_ms: float = 25, rep_ms: float = 100,
             flush_l2: bool = True) -> dict:
    """Median GPU time of ``fn`` in ms (CUDA events, L2 flushed before each run when flush_l2).
    Uses triton.testing.do_bench when it works, else an equivalent loop here."""
    if flush_l2:
        try:
            from triton.testing import do_bench

            q = do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=[0.5, 0.2, 0.8])
            return {"ms": float(q[0]), "ms_p20": float(q[1]), "ms_p80": float(q[2]),
                    "timer": "triton.testing.do_bench"}
        except Exception:  # noqa: BLE001, S110 - no usable triton driver: use the local loop below
            pass
    flush = torch.empty(256 << 20, dtype=torch.int8, device="cuda") if flush_l2 else None
    fn()
    torch.cuda.synchronize()
    t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0.record()
    for _ in range(5):
        fn()
    t1.record()
    torch.cuda.synchronize()
    est = max(t0.elapsed_time(t1) / 5, 1e-3)
    for _ in range(max(1, int(warmup_ms / est))):
        fn()
    n = max(5, min(10000, int(rep_ms / est)))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        if flush is not None:
            flush.zero_()
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in zip(starts, ends, strict=True))
    return {"ms": statistics.median(times), "ms_p20": _quantile(times, 0.2), "ms_p80": _quantile(times, 0.8),
            "timer": "cuda-events", "reps": n}


def time_cpu(fn: Callable[[], object], budget_s: float = 0.05, min_reps: int = 3, max_reps: int = 50) -> dict:
    """Median wall time of ``fn`` in ms, by time.perf_counter. The first call is a warm-up, except when it
    takes over a second (e.g. the Triton interpreter): then it is the only sample, so the caller should
    have called ``fn`` once already (the accuracy check does)."""
    t = time.perf_counter()
    fn()
    est = time.perf_counter() - t
    if est > 1.0:
        return {"ms": est * 1e3, "ms_p20": est * 1e3, "ms_p80": est * 1e3, "timer": "perf_counter", "reps": 1}
    n = max(min_reps, min(max_reps, int(budget_s / max(est, 1e-6))))
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return {"ms": statistics.median(times), "ms_p20": _quantile(times, 0.2), "ms_p80": _quantile(times, 0.8),
            "timer": "perf_counter", "reps": n}


def _quantile(sorted_vals: Sequence[float], q: float) -> float:
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    pos = q * (len(sorted_vals) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


# --------------------------------------------------------------------------------------------------
# Accuracy


def rel_max_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max|out - ref| / max|ref| (inf if shapes differ or out has NaN/Inf)."""
    if tuple(out.shape) != tuple(ref.shape):
        return math.inf
    o = out.detach().to(ref.dtype)
    if not bool(torch.isfinite(o).all()):
        return math.inf
    scale = ref.detach().abs().max().item()
    err = (o - ref.detach()).abs().max().item()
    return err / scale if scale > 0 else err


# --------------------------------------------------------------------------------------------------
# Statistics


def geomean(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


# --------------------------------------------------------------------------------------------------
# Tables


def _fmt_num(v: float, fmt: str, width: int) -> str:
    """format(v, fmt), but tiny non-zero values in e-notation and big ones with fewer decimals to fit."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    s = format(v, fmt)
    m = re.fullmatch(r"\.(\d+)f", fmt)
    if not m:
        return s
    if v != 0 and abs(v) < 0.5 * 10 ** -int(m.group(1)):
        return f"{v:.1e}"
    decimals = int(m.group(1))
    while len(s) > width and decimals > 0:
        decimals -= 1
        s = f"{v:.{decimals}f}"
    return s


@dataclass
class Col:
    key: str
    header: str
    width: int
    fmt: str = ""  # format spec for numbers, e.g. ".3f"; "" = str()
    align: str = ">"


class Table:
    """Fixed-width table that prints rows as they arrive (long benchmarks show progress)."""

    def __init__(self, cols: Sequence[Col], out=None, sep: str = "  "):
        self.cols = [Col(c.key, c.header, max(c.width, len(c.header)), c.fmt, c.align) for c in cols]
        self.out = out or sys.stdout
        self.sep = sep

    def _cell(self, col: Col, value) -> str:
        if value is None or value == "":
            s = "-"
        elif col.fmt and isinstance(value, (int, float)) and not isinstance(value, bool):
            s = _fmt_num(value, col.fmt, col.width)
        else:
            s = str(value)
        if len(s) > col.width and col is not self.cols[-1]:
            s = s[: col.width - 1] + "~"
        return f"{s:{col.align}{col.width}}"

    def header(self) -> None:
        line = self.sep.join(f"{c.header:{c.align}{c.width}}" for c in self.cols).rstrip()
        print(line, file=self.out)
        print("-" * len(line), file=self.out, flush=True)

    def row(self, rec: dict) -> None:
        line = self.sep.join(self._cell(c, rec.get(c.key)) for c in self.cols)
        print(line.rstrip(), file=self.out, flush=True)

    def print_all(self, rows: Iterable[dict]) -> None:
        self.header()
        for r in rows:
            self.row(r)


# --------------------------------------------------------------------------------------------------
# Metadata and output files


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def run_metadata(device: torch.device) -> dict:
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "device": device_name(device),
        "device_type": device.type,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton": _version_of("triton"),
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET"),
        "git_commit": _git_commit(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta["gpu"] = {"sm_count": props.multi_processor_count, "capability": f"{props.major}.{props.minor}",
                       "memory_gib": round(props.total_memory / 2**30, 1)}
    return meta


def _version_of(module: str) -> str | None:
    try:
        mod = __import__(module)
        return getattr(mod, "__version__", "unknown")
    except Exception:  # noqa: BLE001
        return None


def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True,
                           text=True, timeout=5, check=False)
        return r.stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def write_json(path: str | os.PathLike, metadata: dict, records: list[dict], **extra) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"metadata": metadata, "records": records, **extra}
    path.write_text(json.dumps(_jsonable(doc), indent=1) + "\n")
    return path


def write_csv(path: str | os.PathLike, records: list[dict]) -> Path:
    """One row per record; nested dicts are flattened as ``key.sub``; lists are joined with ';'."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = []
    for r in records:
        f = {}
        for k, v in r.items():
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    f[f"{k}.{k2}"] = v2
            elif isinstance(v, (list, tuple)):
                f[k] = ";".join(map(str, v))
            else:
                f[k] = v
        flat.append(f)
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(flat)
    return path
