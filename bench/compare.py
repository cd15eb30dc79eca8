"""Compare benchmark JSONs with a committed baseline, measurement by measurement.

    python bench/compare.py NEW.json [NEW.json ...] [--baseline latest|FOLDER|FILE] [--threshold 0.1]
    python bench/compare.py RUN_FOLDER_OR_TAR --baseline latest      # every benchmark JSON of a GPU run

For each new JSON: its baseline is the JSON of the same benchmark (bench id, see _baseline.py) in the
newest bench/baselines/<gpu>-<date>/ for the same GPU ('latest', the default), in a given folder, or a
given file. Prints a row per measurement both have (layer, config, provider, ms then and now, ratio
new/baseline, flag) and a geomean per provider; exit status 1 when any measurement regressed beyond the
threshold or stopped being ok, else 0. The benchmark scripts print the same after a run with --compare.
"""

from __future__ import annotations

import argparse
import sys

import _baseline as B


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("new", nargs="+", help="benchmark JSONs, or a run folder / tar holding them")
    p.add_argument("--baseline", default="latest", metavar="latest|PATH",
                   help="'latest' (default), a baseline folder, or a baseline JSON (with one new JSON)")
    p.add_argument("--threshold", type=float, default=B.DEFAULT_THRESHOLD,
                   help="flag ratios beyond 1 + this (default %(default)g)")
    p.add_argument("--flagged-only", action="store_true", help="print only flagged measurements per bench")
    args = p.parse_args(argv)

    docs = [d for path in args.new for d in B.load_bench_docs(path)]
    if not docs:
        print("error: no benchmark JSON in " + ", ".join(args.new), file=sys.stderr)
        return 2
    regressed = False
    for name, doc in docs:
        print(f"\n{B.bench_id(doc)}: {name} ({doc['metadata'].get('device')}, {doc['metadata'].get('date')})")
        base, source, note = B.resolve_baseline(args.baseline, doc)
        if note:
            print(f"  {note}")
        if base is None:
            continue
        rows = B.compare_docs(doc, base, args.threshold)
        regressed |= any(r["flag"] == "REGRESSION" or r["flag"].startswith("NOW ") for r in rows)
        print("\n".join(B.format_comparison(rows, source, args.threshold, flagged_only=args.flagged_only)))
    return 1 if regressed else 0


if __name__ == "__main__":
    sys.exit(main())
