"""Roofline plot (PNG) of a benchmark JSON: every layer against the measured ceilings, cnnkern beside cuDNN.

    python bench/plot_roofline.py bench/baselines/h200-2026-11-30/depthwise_conv2d.json -o dw.png
    python bench/plot_roofline.py RUN_FOLDER_OR_JSONS... --out-dir plots/      # roofline-<bench id>.png each

One row per configuration (dtype, layout, batch, mode; the first --max-configs of them):

  left   the roofline: arithmetic intensity (FLOP per byte of minimal traffic) against achieved TFLOP/s,
         one point per layer and provider, under the ceilings: the memory roof at the bandwidth of the run's
         measured device copy (datasheet bandwidth dashed) and the compute peak of the dtype
  right  per layer, each provider's achieved rate as a % of the ceiling that bounds that layer: GB/s over
         the measured copy bandwidth where the layer is memory-bound, TFLOP/s over the peak where it is
         compute-bound (the x label is marked [C] then)

FLOP and byte counts, times, the peak table and the measured copy bandwidth all come from the JSON
(``records`` and ``metadata``). A JSON without a measured copy (conv2d, conv_transpose2d) borrows one
from another JSON of the same device given in the same call, else uses the datasheet bandwidth and says
so. JSONs without FLOP counts (bench_models) are skipped with a message, and so is everything when
matplotlib is not installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _baseline as B

COLORS = {"cudnn": "#444444", "cudnn-det": "#888888", "aten-cpu": "#444444", "compile": "#d62728",
          "cnnkern-cuda": "#2ca02c", "cnnkern-cuda-det": "#98df8a", "cnnkern-cuda-noshuffle": "#17becf",
          "cnnkern-triton": "#1f77b4", "cnnkern-triton-det": "#aec7e8", "cnnkern-triton-noshuffle": "#9edae5",
          "cnnkern-reference": "#ff7f0e", "cnnkern-auto": "#9467bd"}
MARKERS = {"cudnn": "s", "cudnn-det": "s", "aten-cpu": "s", "compile": "D"}


def provider_style(p: str, i: int) -> tuple[str, str]:
    fallback = ["#8c564b", "#e377c2", "#bcbd22", "#7f7f7f"]
    marker = MARKERS.get(p, "^" if "triton" in p else "o")
    return COLORS.get(p, fallback[i % len(fallback)]), marker


def compute_peak(meta: dict, dtype: str) -> float | None:
    """TFLOP/s ceiling of a dtype from the JSON's peak entry (fp32: TF32 when cuDNN ran it so)."""
    peak = meta.get("peak") or {}
    if dtype in ("fp16", "bf16"):
        return peak.get("tensor16")
    return peak.get("tf32") if meta.get("cudnn_fp32_tf32") else peak.get("fp32")


def bandwidths(meta: dict, borrowed: tuple[float, str] | None) -> tuple[float | None, str, float | None]:
    """(memory ceiling in GB/s, its label, datasheet GB/s)."""
    sheet = (meta.get("peak") or {}).get("hbm_gbps")
    measured = (meta.get("bandwidth") or {}).get("measured_copy_gbps")
    if measured:
        return measured, f"measured copy {measured:,.0f} GB/s", sheet
    if borrowed:
        return borrowed[0], f"measured copy {borrowed[0]:,.0f} GB/s (from {borrowed[1]})", sheet
    if sheet:
        return sheet, f"datasheet {sheet:,.0f} GB/s (no copy measured)", sheet
    return None, "no bandwidth ceiling (CPU run)", None


def config_of(r: dict) -> tuple:
    return r.get("dtype"), r.get("layout"), r.get("batch"), r.get("mode")


def configs_of(records: list[dict]) -> list[tuple]:
    return list(dict.fromkeys(config_of(r) for r in records))


def plot(doc: dict, out: Path, borrowed: tuple[float, str] | None = None, max_configs: int = 4) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = doc["metadata"]
    recs = [r for r in doc["records"] if r.get("status") == "ok" and r.get("flops") and r.get("bytes")
            and r.get("ms")]
    if not recs:
        return f"skipped {B.bench_id(doc)}: no timed record with FLOP and byte counts"
    bw, bw_label, sheet = bandwidths(meta, borrowed)
    providers = list(dict.fromkeys(r["provider"] for r in recs))
    configs = configs_of(recs)
    shown = configs[:max_configs]
    n_layers = max(len({r["layer"] for r in recs if config_of(r) == c}) for c in shown)
    bars_in = max(7.0, 0.16 * n_layers * (len(providers) + 1))  # inches: about 4 mm per bar
    fig, axes = plt.subplots(len(shown), 2, figsize=(6.5 + bars_in, 5.2 * len(shown)),
                             gridspec_kw={"width_ratios": [6.5, bars_in]}, squeeze=False)
    on_gpu = meta.get("device_type") == "cuda"
    for row, cfg in enumerate(shown):
        ax, bx = axes[row]
        rs = [r for r in recs if config_of(r) == cfg]
        peak = compute_peak(meta, cfg[0]) if on_gpu else None
        ai = [r["flops"] / r["bytes"] for r in rs]
        rate = [r["flops"] / (r["ms"] * 1e-3) / 1e12 for r in rs]
        lo_x, hi_x = min(ai) / 2, max(ai) * 2
        if peak and bw:
            hi_x = max(hi_x, 2 * peak * 1e3 / bw)
        xs = [lo_x * (hi_x / lo_x) ** (i / 200) for i in range(201)]
        if bw:
            ax.plot(xs, [min(peak or float("inf"), x * bw / 1e3) for x in xs], color="black", lw=1.5,
                    label=bw_label + (f", peak {peak:g} TFLOP/s" if peak else ""))
        if sheet and bw and abs(sheet - bw) > 1:
            ax.plot(xs, [min(peak or float("inf"), x * sheet / 1e3) for x in xs], color="black", lw=0.8, ls="--",
                    label=f"datasheet {sheet:,.0f} GB/s")
        for i, p in enumerate(providers):
            color, marker = provider_style(p, i)
            pts = [(a, t) for a, t, r in zip(ai, rate, rs, strict=True) if r["provider"] == p]
            if pts:
                ax.scatter(*zip(*pts, strict=True), color=color, marker=marker, s=28, label=p, alpha=0.85,
                           edgecolors="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (FLOP / byte of minimal traffic)")
        ax.set_ylabel("achieved TFLOP/s")
        ax.set_title(f"{cfg[0]} {cfg[1]} N{cfg[2]} {cfg[3]}", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="best", framealpha=0.7)

        # right: % of the ceiling that applies, per layer
        layers = list(dict.fromkeys(r["layer"] for r in rs))
        width = 0.8 / max(1, len(providers))
        ticks = []
        for li, layer in enumerate(layers):
            lr = [r for r in rs if r["layer"] == layer]
            a = lr[0]["flops"] / lr[0]["bytes"]
            compute_bound = bool(peak and bw and a * bw / 1e3 >= peak)
            ticks.append(layer + (" [C]" if compute_bound else ""))
            for pi, p in enumerate(providers):
                r = next((x for x in lr if x["provider"] == p), None)
                if r is None:
                    continue
                sec = r["ms"] * 1e-3
                if compute_bound:
                    pct = 100 * r["flops"] / sec / 1e12 / peak
                elif bw:
                    pct = 100 * r["bytes"] / sec / 1e9 / bw
                else:
                    pct = 0.0
                color, _ = provider_style(p, pi)
                bx.bar(li + (pi - (len(providers) - 1) / 2) * width, pct, width, color=color, label=p)
        bx.axhline(100, color="black", lw=0.8)
        bx.set_xticks(range(len(layers)))
        bx.set_xticklabels(ticks, rotation=60, ha="right", fontsize=7)
        bx.set_xlim(-0.6, len(layers) - 0.4)
        bx.set_ylabel("% of the bounding ceiling\n(GB/s / copy bw; [C]: TFLOP/s / peak)")
        bx.grid(True, axis="y", alpha=0.25)
        handles, labels = bx.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=True))
        bx.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper right")
    state = "partial: capped" if meta.get("interrupted") else "complete"
    more = f"; {len(configs) - len(shown)} more configs not drawn" if len(configs) > len(shown) else ""
    fig.suptitle(f"{B.bench_id(doc)} on {meta.get('device')} ({str(meta.get('date', ''))[:10]}, torch "
                 f"{meta.get('torch')}, {state}{more})\nceilings: {bw_label}"
                 + (f"; compute peak from {(meta.get('peak') or {}).get('source')}" if on_gpu else ""),
                 fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return f"wrote {out}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="benchmark JSONs, or a run folder / tar holding them")
    p.add_argument("-o", "--output", help="PNG path (one input JSON only)")
    p.add_argument("--out-dir", default=".", help="folder for roofline-<bench id>.png (default: here)")
    p.add_argument("--max-configs", type=int, default=4, help="configurations drawn per JSON (default 4)")
    args = p.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: no roofline plot (pip install matplotlib)")
        return 0
    docs = [d for path in args.inputs for d in B.load_bench_docs(path)]
    if args.output and len(docs) != 1:
        print(f"error: -o takes one JSON, got {len(docs)}; use --out-dir", file=sys.stderr)
        return 2
    measured = [(d["metadata"]["bandwidth"]["measured_copy_gbps"], B.bench_id(d), d["metadata"].get("device"))
                for _, d in docs if (d["metadata"].get("bandwidth") or {}).get("measured_copy_gbps")]
    for _, doc in docs:
        dev = doc["metadata"].get("device")
        borrowed = next(((g, b) for g, b, d in measured if d == dev), None)
        out = Path(args.output) if args.output else Path(args.out_dir) / f"roofline-{B.bench_id(doc)}.png"
        print(plot(doc, out, borrowed, args.max_configs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
