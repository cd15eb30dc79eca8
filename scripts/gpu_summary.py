"""Compact summary of a GPU check run (scripts/gpu_check.sh), also rerunnable on the files it returned.

    python scripts/gpu_summary.py RUN [--compare latest|PATH] [--write-tests-json DIR] [--max-failures N]

RUN is the run's folder (``$OUT`` / ``./gpu-logs``, or the read-only copy the device tool hands back), a
tar from it, or single files. Printed, in this order and kept short (the device tool returns only the last
12,000 characters of a command's output):

  env      GPU, versions and backend status (logs/info.txt from python -m cnnkern.info)
  stages   each stage's time, exit status and cap (logs/stages.tsv)
  tests    per test file: passed / failed / error / timeout / skipped (and crashed, when an xdist worker
           died), whether the run finished or was cut off, the tests running at the cut, the first failures
  benches  per benchmark JSON: measurements, whether it was capped, each target with value and verdict;
           with --compare, per provider the geomean time ratio against the baseline and the regressions

The test summary (counts per file and in total, every failing test id with the first line of its failure)
is built from the outcome log of tests/_outcome_log.py (``*outcomes.jsonl``) and, with --write-tests-json,
written as ``<prefix>summary.json`` (tests-outcomes.jsonl -> tests-summary.json).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import _baseline as B

# not_run: the test an xdist worker was about to start when it exited on a dead CUDA context
# (tests/_outcome_log.py --restart-on-cuda-error); xdist reports it as crashed.
OUTCOMES = ("passed", "failed", "error", "timeout", "crashed", "not_run", "skipped", "xfailed", "xpassed")
FAILING = ("failed", "error", "timeout", "crashed")
SHOWN = ("passed", "failed", "error", "timeout", "skipped")  # columns always printed; the rest when non-zero


# --------------------------------------------------------------------------------------------------
# Tests


def read_outcomes(data: bytes) -> list[dict]:
    """The events of an outcome log; a last line cut in half by a kill is skipped."""
    events = []
    for line in io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace"):
        line = line.strip()
        if not line:
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def summarize_outcomes(events: list[dict], source: str = "") -> dict:
    """The tests-summary document: counts per file and in total, failures, unfinished tests."""
    session = next((e for e in events if e.get("event") == "session"), {})
    finish = next((e for e in events if e.get("event") == "finish"), None)
    collected = max((e.get("n", 0) for e in events if e.get("event") == "collected"), default=None)
    restarts = [e for e in events if e.get("event") == "worker_restart"]
    not_run = {e.get("not_run") for e in restarts}
    results = []
    for e in events:
        if e.get("event") != "result":
            continue
        if e.get("outcome") == "crashed" and e["nodeid"] in not_run:
            e = dict(e, outcome="not_run", message="not run: its worker exited on a dead CUDA context")
        results.append(e)
    files: dict[str, dict[str, int]] = {}
    total = dict.fromkeys(OUTCOMES, 0)
    for r in results:
        f = r["nodeid"].split("::")[0]
        counts = files.setdefault(f, dict.fromkeys(OUTCOMES, 0))
        out = r["outcome"] if r["outcome"] in OUTCOMES else "error"
        counts[out] += 1
        total[out] += 1
    done = {r["nodeid"] for r in results}
    started = [e["nodeid"] for e in events if e.get("event") == "start"]
    unfinished = list(dict.fromkeys(n for n in started if n not in done))
    return {
        "source": source,
        "started_at": session.get("time"),
        "argv": session.get("argv"),
        "workers": session.get("workers"),
        "per_test_timeout": session.get("per_test_timeout"),
        "complete": finish is not None,
        "exitstatus": finish.get("exitstatus") if finish else None,
        "collected": collected,
        "finished": len(done),
        "elapsed_s": max((e.get("t", 0) for e in events), default=0),
        "total": total,
        "files": dict(sorted(files.items())),
        "failures": [{"nodeid": r["nodeid"], "outcome": r["outcome"], "when": r.get("when"),
                      "message": r.get("message", "")} for r in results if r["outcome"] in FAILING],
        "unfinished": unfinished,
        "worker_restarts": [{k: e.get(k) for k in ("worker", "after", "not_run", "message")} for e in restarts],
    }


def failure_kinds(fails: list[dict]) -> list[tuple[str, int]]:
    """Failure messages with their numbers masked, most frequent first: hundreds of failures are often a
    handful of causes."""
    counts: dict[str, int] = {}
    for f in fails:
        key = f"{f['outcome']}: " + re.sub(r"\d+", "#", f.get("message") or "(no message)")
        counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])


def spread_over_files(fails: list[dict]) -> list[dict]:
    """Round robin over test files (in log order), so a capped list shows every failing file."""
    by_file: dict[str, list[dict]] = {}
    for f in fails:
        by_file.setdefault(f["nodeid"].split("::")[0], []).append(f)
    out, queues = [], list(by_file.values())
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def format_tests(s: dict, max_failures: int) -> list[str]:
    state = (f"complete (exit status {s['exitstatus']})" if s["complete"]
             else "CUT OFF (no finish line: the cap or a kill ended pytest)")
    of = f" of {s['collected']}" if s.get("collected") else ""
    extra = [f"{s['workers']} workers" if s.get("workers") else "no xdist",
             f"per-test timeout {s['per_test_timeout']:g} s" if s.get("per_test_timeout") else
             "no per-test timeout"]
    head = (f"== tests ({Path(s['source']).name or 'outcome log'}): {s['finished']}{of} finished in "
            f"{s['elapsed_s']:.0f} s, {state}; {', '.join(extra)}")
    lines = [head]
    cols = [c for c in OUTCOMES if c in SHOWN or s["total"].get(c)]
    fw = max([30] + [len(f) for f in s["files"]])
    lines.append(f"  {'file':{fw}} " + " ".join(f"{c:>7}" for c in cols))
    for f, counts in s["files"].items():
        lines.append(f"  {f:{fw}} " + " ".join(f"{counts.get(c, 0):>7}" for c in cols))
    lines.append(f"  {'total':{fw}} " + " ".join(f"{s['total'].get(c, 0):>7}" for c in cols))
    if s["unfinished"]:
        shown = s["unfinished"][:3]
        lines.append(f"  running when the log ended ({len(s['unfinished'])}): " + ", ".join(shown)
                     + (" ..." if len(s["unfinished"]) > 3 else ""))
    restarts = s.get("worker_restarts") or []
    if restarts:
        r = restarts[0]
        lines.append(f"  workers restarted on a dead CUDA context: {len(restarts)}; first after {r['after']}: "
                     f"{r['message']}"[:300])
    fails = s["failures"]
    if fails:
        kinds = failure_kinds(fails)
        lines.append(f"  most common failure messages (digits as #), of {len(kinds)} kinds:")
        lines += [f"    {n:4}x {msg}"[:170] for msg, n in kinds[:5]]
        lines.append(f"  failures: {min(len(fails), max_failures)} of {len(fails)}, each file's first ones first "
                     "(all of them in the tests summary JSON):")
        for f in spread_over_files(fails)[:max_failures]:
            msg = f["message"] or ""
            line = f"    {f['outcome'][0].upper()} {f['nodeid']}  {msg}"
            lines.append(line if len(line) <= 170 else line[:167] + "...")
    return lines


# --------------------------------------------------------------------------------------------------
# Benchmarks


def _num(v, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt) if isinstance(v, (int, float)) else str(v)


def target_line(t: dict) -> str:
    """One target of any bench's ``targets`` list (their fields differ a little between scripts)."""
    who = t.get("provider") or t.get("model") or ""
    label = t["target"] if isinstance(t.get("target"), str) else t.get("mode", "")
    goal = t.get("goal", t.get("target") if isinstance(t.get("target"), (int, float)) else None)
    value = t["value"] if "value" in t else t.get("geomean")
    what = t.get("what") or f"{t.get('mode', '')} geomean x {t.get('baseline', 'cudnn')}"
    return f"  {label!s:7} {who:20} {_num(value):>7}  goal {_num(goal):5} {t.get('verdict')!s:13} {what[:60]}"


def format_bench(name: str, doc: dict) -> list[str]:
    meta, recs = doc.get("metadata", {}), doc.get("records", [])
    status: dict[str, int] = {}
    for r in recs:
        status[r.get("status", "?")] = status.get(r.get("status", "?"), 0) + 1
    capped = "CAPPED (results so far)" if meta.get("interrupted") else "complete"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(status.items()))
    head = (f"== {B.bench_id(doc)} ({Path(name.split(':')[-1]).name}): {meta.get('device', '?')}, "
            f"{len(recs)} measurements ({counts}), {_num(meta.get('elapsed_s'), '.0f')} s, {capped}")
    lines = [head]
    targets = doc.get("targets") or []
    lines += [target_line(t) for t in targets] or ["  (no targets in this JSON)"]
    return lines


def format_compare(doc: dict, spec: str, threshold: float) -> list[str]:
    """One line: per provider the geomean time ratio new/baseline and how many measurements regressed
    (bench/compare.py prints them layer by layer)."""
    base, source, note = B.resolve_baseline(spec, doc)
    if base is None:
        return [f"  vs baseline: {note}"]
    rows = B.compare_docs(doc, base, threshold)
    per = " | ".join(f"{p['provider']} {B._f(p['geomean'], '.2f')} ({p['regressions']} reg)"
                     for p in B.per_provider(rows))
    where = f"{Path(source).parent.name}" + (f" [{note}]" if note else "")
    return [f"  vs {where}, ms new/base, {len(rows)} common, reg = >+{100 * threshold:.0f}% or not ok: "
            + (per or "nothing in common")]


# --------------------------------------------------------------------------------------------------
# Environment and stages

INFO_KEYS = ("GPU", "torch", "triton", "extension built against torch", "extension archs")


def format_info(data: bytes) -> list[str]:
    """One line from logs/info.txt (python -m cnnkern.info): GPU, versions, each backend's status."""
    fields, backends, in_backends = [], [], False
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("backends"):
            in_backends = True
        elif in_backends and line.startswith("  ") and line.strip():
            name, _, status = line.strip().partition(" ")
            backends.append(f"{name} {status.strip()[:70]}")
        else:
            parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            if len(parts) == 2 and parts[0] in INFO_KEYS:
                fields.append(f"{parts[0]} {parts[1]}")
    if not fields and not backends:
        return []
    return ["== env: " + " | ".join(fields) + (" | backends: " + ", ".join(backends) if backends else "")]



def format_stages(data: bytes) -> list[str]:
    """logs/stages.tsv from gpu_check.sh: stage, exit status, seconds, cap, note."""
    parts = []
    for line in data.decode(errors="replace").splitlines():
        f = line.split("\t")
        if len(f) >= 3 and f[0] != "stage":
            rc, note = f[1], (f[4] if len(f) > 4 else "")
            cap = f" cap {f[3]}" if len(f) > 3 and f[3] else ""
            parts.append(f"{f[0]} {f[2]}s rc={rc}{cap}{' ' + note if note else ''}")
    return ["== stages: " + " | ".join(parts)] if parts else []


# --------------------------------------------------------------------------------------------------


def summarize_run(run: str, compare: str | None, threshold: float, max_failures: int,
                  write_tests_json: str | None) -> list[str]:
    lines: list[str] = []
    for _, data in B.iter_run_files(run, "info.txt"):
        lines += format_info(data)
    for _, data in B.iter_run_files(run, "stages.tsv"):
        lines += format_stages(data)
    outcome_files = list(B.iter_run_files(run, "outcomes.jsonl"))
    for name, data in outcome_files:
        s = summarize_outcomes(read_outcomes(data), name)
        lines += format_tests(s, max_failures)
        if write_tests_json:
            out = Path(write_tests_json) / Path(name.split(":")[-1]).name.replace("outcomes.jsonl", "summary.json")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(s, indent=1) + "\n")
            lines.append(f"  wrote {out}")
    if not outcome_files:  # e.g. a baseline folder: only the summary JSON is there
        for name, data in B.iter_run_files(run, "summary.json"):
            s = json.loads(data)
            if "files" in s and "total" in s:
                lines += format_tests(s, max_failures)
        if not any(ln.startswith("== tests") for ln in lines):
            lines.append("== tests: no outcome log or test summary in this run")
    docs = B.load_bench_docs(run)
    for name, doc in docs:
        lines += format_bench(name, doc)
        if compare:
            lines += format_compare(doc, compare, threshold)
    if not docs:
        lines.append("== benchmarks: no benchmark JSON in this run")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="+", help="the run's folder, a tar from it, or files")
    p.add_argument("--compare", metavar="latest|PATH", default=None,
                   help="compare each benchmark with a baseline ('latest' for this GPU, a folder or a JSON)")
    p.add_argument("--threshold", type=float, default=B.DEFAULT_THRESHOLD,
                   help="flag time ratios beyond 1 + this (default %(default)g)")
    p.add_argument("--max-failures", type=int, default=15, help="failing test ids printed (default 15)")
    p.add_argument("--write-tests-json", metavar="DIR", default=None,
                   help="write the test summary JSON(s) into DIR")
    args = p.parse_args(argv)
    for run in args.run:
        print("\n".join(summarize_run(run, args.compare, args.threshold, args.max_failures,
                                      args.write_tests_json)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
