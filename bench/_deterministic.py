"""Deterministic-algorithm providers, the ``--layers dilated`` layer sets and issue 5's dilated target,
shared by bench_conv2d.py, bench_depthwise_conv2d.py and bench_conv_transpose2d.py.

  cudnn-det            the eager baseline with ``torch.backends.cudnn.deterministic = True`` and
                       ``torch.use_deterministic_algorithms(True)`` (ATen then only picks deterministic
                       cuDNN algorithms, also for the backward)
  cnnkern-cuda-det     cnnkern with the backend forced, under the same two flags: cnnkern reads
  cnnkern-triton-det   ``torch.are_deterministic_algorithms_enabled()`` to choose its fixed-order weight
                       gradient (depthwise; the direct conv2d weight gradient is always deterministic)

The flags are process-wide, so the backward that autograd runs on its own thread sees them too; the
driver enters them around each "-det" provider's check and timing (``BenchSpec.provider_context``).

``--layers dilated`` swaps a script's default table for its dilated one (DeepLab layers, shapes.py and
shapes_depthwise.py); further ``--layers`` patterns then filter that table. Without the keyword the
scripts behave exactly as before.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os

import _common as C
import _driver as D
import torch

# torch.use_deterministic_algorithms(True) refuses cuBLAS calls unless this is set before the first one.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

DILATED_KEYWORD = "dilated"
DET_BACKENDS = {"cnnkern-cuda-det": "cuda", "cnnkern-triton-det": "triton"}
DILATED_GOAL = 3.0  # issue 5: deterministic dilated backward >= 3x cuDNN-deterministic
DILATED_TARGET_PROVIDERS = tuple(DET_BACKENDS)


def det_providers(op: str) -> dict[str, str]:
    return {
        "cudnn-det": "the cudnn provider with torch.backends.cudnn.deterministic=True and "
                     "torch.use_deterministic_algorithms(True)",
        "cnnkern-cuda-det": f"{op} inside cnnkern.use_backend('cuda'), deterministic algorithms on",
        "cnnkern-triton-det": f"{op} inside cnnkern.use_backend('triton'), deterministic algorithms on",
    }


@contextlib.contextmanager
def deterministic_flags():
    old = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.backends.cudnn.deterministic)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        torch.backends.cudnn.deterministic = old[2]


def provider_context(name: str):
    return deterministic_flags() if name.endswith("-det") else contextlib.nullcontext()


# --------------------------------------------------------------------------------------------------
# Targets


def verdict(run: D.Run, chosen: list[dict], value: float | None, passed: bool) -> str:
    """PASS / FAIL / not measured; n/a without a GPU or when the provider refused every problem."""
    not_ok = sum(r.get("status") != "ok" for r in chosen)
    if not run.on_gpu:
        return "n/a (no GPU)"
    if chosen and all(r.get("status") == "unsupported" for r in chosen):
        return "n/a (unsupported: " + (chosen[0].get("note") or "")[:60] + ")"
    if value is None:
        return "not measured"
    if not_ok:
        return f"FAIL ({not_ok} not ok)"  # a mismatch, error or refusal in the set cannot pass
    return "PASS" if passed else "FAIL"


def speedup_target(run: D.Run, tid: str, prov: str, what: str, goal: float, chosen: list[dict],
                   field: str = "speedup") -> dict:
    """Geomean of ``field`` (a speedup) over the chosen records against goal."""
    vals = [r[field] for r in chosen if r.get("status") == "ok" and r.get(field)]
    value = C.geomean(vals) if vals else None
    return {"target": tid, "provider": prov, "goal": goal, "value": value, "n": len(vals),
            "n_pass": sum(v >= goal for v in vals), "not_ok": sum(r.get("status") != "ok" for r in chosen),
            "min": min(vals) if vals else None, "what": what,
            "verdict": verdict(run, chosen, value, value is not None and value >= goal)}


def print_speedup_targets(title: str, targets: list[dict]) -> None:
    print(f"\n== {title} ==")
    for t in targets:
        val = "-" if t["value"] is None else f"{t['value']:.3f}x"
        worst = "" if t["min"] is None else f"  (worst {t['min']:.3f}x)"
        tid, goal = f"({t['target']})", f">= {t['goal']:g}x"
        print(f"  {tid:8} {t['provider']:18} {t['what']:48} {val:>8} {goal:>7}  pass {t['n_pass']}/{t['n']}  "
              f"{t['verdict']}{worst}")


def dilated_targets(run: D.Run, summary: list[dict]) -> list[dict]:
    """Geomean fwd+bwd speedup of each -det cnnkern provider vs cudnn-det over every dilated layer run."""
    out = []
    for prov in DILATED_TARGET_PROVIDERS:
        chosen = [r for r in run.records if r["provider"] == prov and r["mode"] == "fwdbwd"] if run.on_gpu else []
        out.append(speedup_target(run, "det", prov, "fwd+bwd geomean x cudnn-det, dilated layers", DILATED_GOAL,
                                  chosen, "speedup_vs_cudnn-det"))
    return out


def print_dilated_targets(run: D.Run, targets: list[dict]) -> None:
    print_speedup_targets("target: deterministic dilated backward >= 3x cuDNN-deterministic (fwd+bwd, both "
                          "sides under deterministic algorithms; pass = results that meet it on their own)", targets)


# --------------------------------------------------------------------------------------------------
# The dilated layer set


def split_dilated(argv: list[str]) -> tuple[bool, list[str]]:
    """(True, argv without the keyword) when a --layers value names the dilated set, else (False, argv)."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--layers", action="append")
    known, _ = pre.parse_known_args(argv)
    patterns = C.parse_list(known.layers)
    if DILATED_KEYWORD not in patterns:
        return False, argv
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--layers":
            skip = True
        elif not a.startswith("--layers="):
            out.append(a)
    rest = [p for p in patterns if p != DILATED_KEYWORD]
    return True, out + (["--layers", ",".join(rest)] if rest else [])


def dilated_spec(spec: D.BenchSpec, shapes, op: str, default_gpu_providers: list[str], **changes) -> D.BenchSpec:
    """The script's spec on the dilated table, with the deterministic providers and the dilated target."""
    base = spec.baselines["cuda"]
    return dataclasses.replace(
        spec, name=f"{spec.name}_dilated", shapes=shapes, shapes_label="DeepLab dilated",
        providers={**spec.providers, **det_providers(op)},
        default_providers={"cuda": default_gpu_providers, "cpu": spec.default_providers["cpu"]},
        baselines={"cuda": [base[0], "cudnn-det", *base[1:]], "cpu": spec.baselines["cpu"]},
        provider_backends={**spec.provider_backends, **DET_BACKENDS}, provider_context=provider_context,
        evaluate_targets=dilated_targets, print_targets=print_dilated_targets, group_header="network",
        summary_all_groups=True, **changes)
