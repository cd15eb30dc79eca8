"""Committed GPU baselines (bench/baselines/<gpu>-<yyyy-mm-dd>/) and comparing a run against one.

A baseline folder holds one benchmark JSON per benchmark, named by its bench id (``depthwise_conv2d.json``,
``conv2d_dilated.json``, ``models.json``, ...), the test summary (``tests-summary.json``) when the run had
one, and a README.md saying what was run. ``scripts/save_baseline.py`` writes one from a GPU run's files.

Comparison: the records of a new JSON and of the baseline's JSON for the same bench are matched on what
identifies a measurement (layer or model, problem, dtype, layout, batch, mode, provider); for each matched
pair ``ratio = ms(new) / ms(baseline)`` (> 1: slower now). A ratio above ``1 + threshold`` is flagged as a
regression, and so is a measurement that was ok in the baseline and is not now (mismatch, error). The
baseline provider (cuDNN) is compared like the others: when it moved too, the machine or the driver did.

bench/ is not a package: scripts import this as ``import _baseline`` with bench/ on sys.path.
"""

from __future__ import annotations

import io
import json
import math
import re
import shlex
import tarfile
from collections.abc import Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BASELINES_DIR = BENCH_DIR / "baselines"
TESTS_SUMMARY = "tests-summary.json"
DEFAULT_THRESHOLD = 0.10  # timing noise between two runs on one GPU model stays well under 10%

_NAME_RE = re.compile(r"^(?P<gpu>[a-z0-9-]+?)-(?P<date>\d{4}-\d{2}-\d{2})$")
# What identifies one measurement across runs (the fields each record has of these).
KEY_FIELDS = ("layer", "model", "problem", "dtype", "layout", "batch", "mode", "provider")


def gpu_slug(device: str | None) -> str:
    """'NVIDIA H200' -> 'h200', 'NVIDIA H100 80GB HBM3' -> 'h100', 'CPU (x86_64, 2 cores)' -> 'cpu'."""
    words = re.sub(r"^(nvidia|amd|intel)\s+", "", (device or "").strip(), flags=re.IGNORECASE).split()
    if not words:
        return "unknown"
    if words[0].lower().startswith("cpu"):
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", words[0].lower()).strip("-") or "unknown"


def bench_id(doc: dict) -> str:
    """Which benchmark a JSON came from: the driver's spec name (``depthwise_conv2d``,
    ``conv2d_dilated``...) or ``models``; for JSONs written before the driver recorded it, read off the
    command line (script name, and ``--layers dilated``)."""
    meta = doc.get("metadata", {})
    if meta.get("bench"):
        return str(meta["bench"])
    argv = shlex.split(meta.get("command") or "")
    script = next((Path(a).stem for a in argv if a.endswith(".py")), "")
    name = script.removeprefix("bench_") or "unknown"
    layers: list[str] = []
    for i, a in enumerate(argv):
        if a == "--layers" and i + 1 < len(argv):
            layers += argv[i + 1].split(",")
        elif a.startswith("--layers="):
            layers += a.split("=", 1)[1].split(",")
    if "dilated" in layers:
        name += "_dilated"
    return name


# --------------------------------------------------------------------------------------------------
# Finding files


def iter_run_files(path: str | Path, suffix: str = ".json") -> Iterator[tuple[str, bytes]]:
    """(name, content) of every file ending in ``suffix`` in a run: a file itself, or a folder's files at
    its top and one level down, and the members of any ``*.tar.gz`` there (gpu_check.sh packs what does
    not fit its 8 returned files into tars)."""
    path = Path(path)
    if path.is_file():
        if path.name.endswith(".tar.gz"):
            yield from _tar_members(path, suffix)
        elif path.name.endswith(suffix):
            yield str(path), path.read_bytes()
        return
    for p in sorted([*path.glob("*"), *path.glob("*/*")]):
        if p.is_file() and p.name.endswith(suffix):
            yield str(p), p.read_bytes()
        elif p.is_file() and p.name.endswith(".tar.gz"):
            yield from _tar_members(p, suffix)


def _tar_members(tar_path: Path, suffix: str) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(tar_path, "r:gz") as tf:
            for m in tf.getmembers():
                if m.isfile() and m.name.endswith(suffix):
                    f = tf.extractfile(m)
                    if f is not None:
                        yield f"{tar_path}:{m.name}", f.read()
    except (tarfile.TarError, EOFError, OSError) as e:  # a tar cut off by a kill: use what is readable
        print(f"note: {tar_path}: {type(e).__name__}: {e}")


def load_bench_docs(path: str | Path) -> list[tuple[str, dict]]:
    """The benchmark JSONs of a run (anything with ``metadata`` and ``records``), in name order."""
    docs = []
    for name, data in iter_run_files(path, ".json"):
        try:
            doc = json.load(io.BytesIO(data))
        except ValueError:
            continue
        if isinstance(doc, dict) and "records" in doc and "metadata" in doc:
            docs.append((name, doc))
    return docs


def baseline_dirs(root: Path = BASELINES_DIR) -> list[Path]:
    """Every baseline folder, oldest first (by the date in its name)."""
    found = [p for p in root.glob("*") if p.is_dir() and _NAME_RE.match(p.name)]
    return sorted(found, key=lambda p: (_NAME_RE.match(p.name)["date"], p.name))


def latest_baseline(gpu: str, root: Path = BASELINES_DIR) -> tuple[Path | None, str]:
    """The newest baseline for this GPU; for another GPU model the newest of any GPU, with a note. CPU runs
    get none (their reduced shapes and CPU times say nothing about a GPU baseline)."""
    if gpu == "cpu":
        return None, "a CPU run is not compared with GPU baselines"
    dirs = baseline_dirs(root)
    same = [p for p in dirs if _NAME_RE.match(p.name)["gpu"] == gpu]
    if same:
        return same[-1], ""
    if dirs:
        return dirs[-1], f"no baseline for {gpu}; comparing with {dirs[-1].name} (another GPU)"
    return None, f"no baselines in {root}"


def resolve_baseline(spec: str, doc: dict, root: Path = BASELINES_DIR) -> tuple[dict | None, str, str]:
    """The baseline document for ``doc``: spec is 'latest', a baseline folder or a JSON file.
    Returns (baseline doc or None, where it came from, a note)."""
    bid = bench_id(doc)
    if spec == "latest":
        folder, note = latest_baseline(gpu_slug(doc.get("metadata", {}).get("device")), root)
        if folder is None:
            return None, "", note
        path = folder / f"{bid}.json"
    else:
        path, note = Path(spec), ""
        if path.is_dir():
            path = path / f"{bid}.json"
    if not path.is_file():
        return None, str(path), (note + "; " if note else "") + f"no {bid} baseline at {path}"
    return json.loads(path.read_text()), str(path), note


# --------------------------------------------------------------------------------------------------
# Comparing


def record_key(r: dict) -> tuple:
    return tuple((k, r[k]) for k in KEY_FIELDS if k in r)


def config_label(r: dict) -> str:
    return " ".join(str(r[k]) for k in ("dtype", "layout") if k in r) + \
        (f" N{r['batch']}" if "batch" in r else "") + (f" {r['mode']}" if "mode" in r else "")


def compare_docs(new: dict, base: dict, threshold: float = DEFAULT_THRESHOLD) -> list[dict]:
    """One row per measurement present in both: provider, layer/model, config, ms, ratio, flag
    ('REGRESSION', 'faster', 'NOW ' + status, or '')."""
    base_by_key = {record_key(r): r for r in base.get("records", [])}
    rows = []
    for r in new.get("records", []):
        b = base_by_key.get(record_key(r))
        if b is None:
            continue
        row = {"provider": r.get("provider"), "what": r.get("layer") or r.get("model"),
               "config": config_label(r), "base_ms": b.get("ms"), "new_ms": r.get("ms"),
               "base_status": b.get("status"), "new_status": r.get("status"), "ratio": None, "flag": ""}
        if b.get("status") == "ok" and r.get("status") == "ok" and b.get("ms") and r.get("ms"):
            row["ratio"] = r["ms"] / b["ms"]
            if row["ratio"] > 1 + threshold:
                row["flag"] = "REGRESSION"
            elif row["ratio"] < 1 / (1 + threshold):
                row["flag"] = "faster"
        elif b.get("status") == "ok" and r.get("status") in ("mismatch", "error"):
            row["flag"] = f"NOW {r['status'].upper()}"
        rows.append(row)
    return rows


def _geomean(vals: list[float]) -> float | None:
    vals = [v for v in vals if v and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def per_provider(rows: list[dict]) -> list[dict]:
    """Per provider: matched count, geomean / min / max ratio, regressions, 'faster' count."""
    out: dict[str, dict] = {}
    for r in rows:
        p = out.setdefault(r["provider"], {"provider": r["provider"], "n": 0, "ratios": [], "regressions": 0,
                                           "faster": 0})
        p["n"] += 1
        if r["ratio"] is not None:
            p["ratios"].append(r["ratio"])
        p["regressions"] += r["flag"] == "REGRESSION" or r["flag"].startswith("NOW ")
        p["faster"] += r["flag"] == "faster"
    for p in out.values():
        rs = p.pop("ratios")
        p.update(geomean=_geomean(rs), min=min(rs) if rs else None, max=max(rs) if rs else None, timed=len(rs))
    return list(out.values())


def _f(v, fmt=".3f") -> str:
    return "-" if v is None else format(v, fmt)


def format_comparison(rows: list[dict], source: str, threshold: float, per_layer: bool = True,
                      flagged_only: bool = False, max_rows: int | None = None) -> list[str]:
    """Text lines: the per-measurement table (all rows, or only the flagged ones, at most max_rows) and the
    per-provider geomeans."""
    head = (f"== vs baseline {source}: ratio = ms(new) / ms(baseline), > 1 slower; flagged beyond "
            f"+{100 * threshold:.0f}% ==")
    lines = [head]
    if not rows:
        return lines + ["  no measurement in common (different layers, configs or providers)"]
    if per_layer:
        chosen = [r for r in rows if r["flag"]] if flagged_only else rows
        shown = chosen if max_rows is None else chosen[:max_rows]
        w = max([10] + [len(str(r["what"])) for r in shown])
        if not shown:
            lines.append("  no flagged measurement")
        else:
            lines.append(f"  {'layer/model':{w}}  {'config':26}  {'provider':22} {'base ms':>9} "
                         f"{'new ms':>9} {'ratio':>6}  flag")
        for r in shown:
            lines.append(f"  {r['what']!s:{w}}  {r['config']:26}  {r['provider']!s:22} "
                         f"{_f(r['base_ms'], '.4f'):>9} {_f(r['new_ms'], '.4f'):>9} {_f(r['ratio']):>6}  "
                         f"{r['flag']}")
        if len(shown) < len(chosen):
            lines.append(f"  ... {len(chosen) - len(shown)} more")
    for p in per_provider(rows):
        lines.append(f"  {p['provider']!s:22} {p['timed']:3}/{p['n']:<3} timed  geomean {_f(p['geomean'])} "
                     f"(min {_f(p['min'])}, max {_f(p['max'])})  regressions {p['regressions']}  "
                     f"faster {p['faster']}")
    return lines
