"""Copy a GPU run's benchmark JSONs and test summary into bench/baselines/<gpu>-<yyyy-mm-dd>/.

    python scripts/save_baseline.py RUN [--name h200-2026-12-01] [--note TEXT] [--force] [--dry-run]

RUN is what scripts/gpu_check.sh left (``$OUT`` as the device tool returned it, or ``./gpu-logs``), a tar
from it, or single JSON files. Each benchmark JSON is stored as ``<bench id>.json`` (bench/_baseline.py:
``depthwise_conv2d``, ``conv2d_dilated``, ``models``, ...); the test summary as tests-summary.json (built
from the outcome log when the run has no summary JSON). The folder name comes from the JSONs' device and
date unless --name is given. A README.md lists what each file holds (command, measurements, whether the
benchmark was capped), the environment, and --note. CPU runs are refused: baselines are GPU numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import _baseline as B
import gpu_summary as S


def collect(runs: list[str]) -> tuple[dict[str, tuple[str, dict]], dict | None]:
    """{bench id: (source name, doc)} and the test summary (or None)."""
    benches: dict[str, tuple[str, dict]] = {}
    tests = None
    for run in runs:
        for name, doc in B.load_bench_docs(run):
            bid = B.bench_id(doc)
            if bid in benches:
                print(f"note: two {bid} JSONs ({benches[bid][0]}, {name}); keeping the second")
            benches[bid] = (name, doc)
        for name, data in B.iter_run_files(run, "outcomes.jsonl"):
            if Path(name.split(":")[-1]).name == "tests-outcomes.jsonl":
                tests = S.summarize_outcomes(S.read_outcomes(data), Path(name.split(":")[-1]).name)
        if tests is None:
            for name, data in B.iter_run_files(run, B.TESTS_SUMMARY):
                tests = json.loads(data)
    return benches, tests


def readme(name: str, benches: dict[str, tuple[str, dict]], tests: dict | None, note: str | None) -> str:
    metas = [doc["metadata"] for _, doc in benches.values()]
    m = metas[0] if metas else {}
    bw = next((x["bandwidth"]["measured_copy_gbps"] for x in metas if x.get("bandwidth")), None)
    out = [f"# Baseline {name}", "",
           f"{m.get('device', '?')}; python {m.get('python', '?')}, torch {m.get('torch', '?')}, triton "
           f"{m.get('triton', '?')}, CUDA {m.get('cuda', '?')}, cuDNN {m.get('cudnn', '?')}; cnnkern commit "
           f"{m.get('git_commit', '?')}." + (f" Measured device copy {bw:,.0f} GB/s (bytes read + written)."
                                             if bw else ""), "",
           "| file | command | measurements | capped |", "|---|---|---|---|"]
    for bid, (src, doc) in sorted(benches.items()):
        meta, recs = doc["metadata"], doc["records"]
        ok = sum(r.get("status") == "ok" for r in recs)
        cmd = (meta.get("command") or "").replace("|", "\\|")
        out.append(f"| {bid}.json | `{cmd}` | {len(recs)} ({ok} ok) | "
                   f"{'yes, ' + str(meta.get('elapsed_s')) + ' s' if meta.get('interrupted') else 'no'} |")
    out.append("")
    if tests is not None:
        t = tests["total"]
        out.append(f"{B.TESTS_SUMMARY}: {tests['finished']} tests finished"
                   + (f" of {tests['collected']}" if tests.get("collected") else "")
                   + f" ({'complete' if tests.get('complete') else 'cut off'}): "
                   + ", ".join(f"{k} {v}" for k, v in t.items() if v) + ".")
    else:
        out.append("No test summary for this run.")
    if note:
        out += ["", note]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="+", help="the run's folder, a tar from it, or JSON files")
    p.add_argument("--name", help="baseline folder name (default <gpu>-<yyyy-mm-dd> from the JSONs)")
    p.add_argument("--note", help="a paragraph appended to the README (what was special about this run)")
    p.add_argument("--root", default=str(B.BASELINES_DIR), help="baselines folder (default %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite an existing baseline folder's files")
    p.add_argument("--allow-cpu", action="store_true", help="accept CPU runs (for testing this script)")
    p.add_argument("--dry-run", action="store_true", help="print what would be written")
    args = p.parse_args(argv)

    benches, tests = collect(args.run)
    if not benches and tests is None:
        print("error: no benchmark JSON and no test outcomes in " + ", ".join(args.run), file=sys.stderr)
        return 1
    metas = [doc["metadata"] for _, doc in benches.values()]
    if not args.allow_cpu and any(m.get("device_type") != "cuda" for m in metas):
        print("error: CPU benchmark JSONs in the run; baselines hold GPU numbers (--allow-cpu to override)",
              file=sys.stderr)
        return 1
    gpus = {B.gpu_slug(m.get("device")) for m in metas}
    if len(gpus) > 1:
        print(f"error: JSONs from several devices {sorted(gpus)}", file=sys.stderr)
        return 1
    name = args.name
    if name is None:
        if not metas:
            print("error: no benchmark JSON to take the GPU and date from: pass --name", file=sys.stderr)
            return 1
        name = f"{gpus.pop()}-{min(str(m.get('date', ''))[:10] for m in metas)}"
    folder = Path(args.root) / name
    files = {f"{bid}.json": doc for bid, (_, doc) in benches.items()}
    if tests is not None:
        files[B.TESTS_SUMMARY] = tests
    clash = [f for f in files if (folder / f).exists()]
    if clash and not args.force:
        print(f"error: {folder} already has {', '.join(clash)} (--force to overwrite)", file=sys.stderr)
        return 1
    text = readme(name, benches, tests, args.note)
    if args.dry_run:
        print(f"would write {folder}/: {', '.join(sorted(files))}, README.md\n\n{text}")
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    for fname, doc in files.items():
        (folder / fname).write_text(json.dumps(doc, indent=1) + "\n")
    (folder / "README.md").write_text(text)
    print(f"wrote {folder}/: {', '.join(sorted(files))}, README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
