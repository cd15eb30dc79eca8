#!/usr/bin/env bash
# GPU verification of cnnkern in ONE device call (at most 9 minutes on a bare 16-core H100/H200), or stage by
# stage. GPU time comes in short slots that end in a hard kill, so every stage runs under a cap and every
# result is on disk the moment it exists.
#
#   bash scripts/gpu_check.sh                 # default: build tests bench-dw bench-pw bench-conv bench-tconv
#                                             #          bench-dilated bench-models
#   bash scripts/gpu_check.sh build tests     # chosen stages, in the order given (a bare machine: build first)
#   bash scripts/gpu_check.sh --dry-run       # the plumbing on a CPU machine (also CNNKERN_GPU_CHECK_DRY=1):
#                                             #   no build, a CPU test subset, benches in CPU mode, small budget
# stages:
#   build          pip install -e . with MAX_JOBS = cores and TORCH_CUDA_ARCH_LIST = the visible GPU's arch,
#                  then python -m cnnkern.info
#   tests          the GPU suite in parallel (xdist, cores - 1 workers) with a per-test timeout: the tests
#                  marked `gpu` (which carry every cuda-* parametrization) plus any with "cuda" in their name
#                  (-m gpu or -k cuda; tests/_outcome_log.py --gpu-suite). Each start and outcome is one line
#                  of tests-outcomes.jsonl, flushed as it happens, so a cut-off run still names its results;
#                  a worker whose CUDA context a kernel fault killed is replaced (--restart-on-cuda-error).
#   tests-all      the whole suite the same way (tests-all-outcomes.jsonl); not in the default run
#   bench-dw bench-pw bench-conv bench-tconv bench-dilated bench-models
#   (bench-convbn bench-overhead bench-graphs bench-conv-sm90 bench-slab: not in the default run)
#                  the quick benchmarks with the commands of the committed baseline (bench/baselines/), so
#                  they compare like with like (torch.compile left out: it took most of a capped bench's time);
#                  each under `timeout -s TERM`, on which the bench writes its JSON with the results so far
#
# Output: $OUT when set (the device tool returns at most 8 files from it), else ./gpu-logs:
#   summary.txt                 the compact summary, also printed last (scripts/gpu_summary.py)
#   tests-outcomes.jsonl        one line per test start / outcome (tests-all-outcomes.jsonl for tests-all)
#   tests-summary.json          counts per file and in total, failing ids with their first error line
#   bench.tar.gz                bench/<bench id>.json, bench/roofline-<bench id>.png, bench/models.csv
#   logs.tar.gz                 logs/: nvidia-smi, build, info, pytest and bench console logs, stages.tsv
# (without $OUT the bench/ and logs/ folders stay unpacked). The tars are refreshed after every stage, so a
# kill of the whole call still leaves the finished stages' files.
#   Save a returned run as a baseline:  python scripts/save_baseline.py <returned OUT folder>
#   Summarize / compare it again here:  python scripts/gpu_summary.py <folder> --compare latest
#
# Time budget of the default run, in seconds. Estimates are from the 2026-11-30 H200 run (build 37 s;
# `pytest -m gpu -n 15` ran 1063 of ~1600 tests in 125 s, so the suite needs ~190 s plus worker start).
#   preflight (nvidia-smi, arch)          ~5
#   build + info                          ~50   (own caps 240 + 60: a build must finish to be any use)
#   tests                                 weight 240
#   bench-dw 30, bench-pw 25, bench-conv 25, bench-tconv 25, bench-dilated 30 (2 x 15), bench-models 55
#                                         weights, 190 in all
#   plots, summary, packing               ~15   (after the budget)
# Stages start only while the budget (GPU_CHECK_BUDGET, 500 s from the start) lasts, and each capped
# stage gets the time left in proportion to its weight among the stages still to run: after a 55 s
# start, tests get (500 - 55) * 240 / 430 = 248 s and the benches share what tests leave (about their
# weights if tests use all of theirs, more if they finish early). Worst case: 500 s + 10 s kill grace of
# the last stage + 15 s = 525 s, under the 540 s (9 min) aim and the 600 s limit of a device call.
# A stage picked alone gets the whole budget (e.g. `build tests`: tests ~445 s). Override: GPU_CHECK_BUDGET,
# GPU_CHECK_TEST_TIMEOUT (per test, default 90 s), GPU_CHECK_WORKERS, PYTHON.
set -uo pipefail
cd "$(dirname "$0")/.."

dry="${CNNKERN_GPU_CHECK_DRY:-0}"
stages=()
for a in "$@"; do
  case "$a" in
    --dry-run) dry=1 ;;
    *) stages+=("$a") ;;
  esac
done
default_stages=(build tests bench-dw bench-pw bench-conv bench-tconv bench-dilated bench-models)
[ ${#stages[@]} -eq 0 ] && stages=("${default_stages[@]}")

declare -A weight=([tests]=240 [tests-all]=240 [bench-dw]=30 [bench-pw]=25 [bench-conv]=25 [bench-tconv]=25
                   [bench-dilated]=30 [bench-models]=55 [bench-convbn]=60 [bench-overhead]=40 [bench-graphs]=60
                   [bench-conv-sm90]=90 [bench-slab]=120)
for s in "${stages[@]}"; do
  case "$s" in
    build) ;;
    tests|tests-all|bench-dw|bench-pw|bench-conv|bench-tconv|bench-dilated|bench-models) ;;
    bench-convbn|bench-overhead|bench-graphs|bench-conv-sm90|bench-slab) ;;
    *) echo "unknown stage '$s' (build tests tests-all bench-dw bench-pw bench-conv bench-tconv bench-dilated" \
            "bench-models bench-convbn bench-overhead bench-graphs bench-conv-sm90 bench-slab; --dry-run)"; exit 2 ;;
  esac
done

PY="${PYTHON:-python3}"
cores=$(nproc)
# A dry run on a small CPU machine gets less time, and stages as short as 10 s (enough to see a bench
# write its JSON on SIGTERM); on the GPU a stage with under 20 s (tests: 30 s) left is not started.
if [ "$dry" = 1 ]; then budget="${GPU_CHECK_BUDGET:-180}"; min_cap=10; else budget="${GPU_CHECK_BUDGET:-500}"; min_cap=20; fi
per_test="${GPU_CHECK_TEST_TIMEOUT:-90}"
t0=$SECONDS

# Where things are written: straight into ./gpu-logs, or into a scratch folder packed into $OUT.
if [ -n "${OUT:-}" ]; then
  out="$OUT"; work="$(mktemp -d)"
else
  out="gpu-logs"; work="$out"
fi
mkdir -p "$out" "$work/bench" "$work/logs"
export PYTHONUNBUFFERED=1
[ -x /usr/local/cuda/bin/nvcc ] && export CUDA_HOME=/usr/local/cuda
printf 'stage\trc\tseconds\tcap\tnote\n' > "$work/logs/stages.tsv"

record() {  # stage rc seconds cap note
  printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$work/logs/stages.tsv"
  echo "== $1: rc=$2 ${3}s${4:+ (cap ${4}s)}${5:+ $5} [t=$((SECONDS - t0))s]"
}

pack() {  # refresh the tars in $OUT (write then rename: a kill mid-tar leaves the previous one)
  [ "$work" = "$out" ] && return 0
  tar czf "$out/.bench.tar.gz" -C "$work" bench && mv "$out/.bench.tar.gz" "$out/bench.tar.gz"
  tar czf "$out/.logs.tar.gz" -C "$work" logs && mv "$out/.logs.tar.gz" "$out/logs.tar.gz"
}

cap_for() {  # stage index: its share of the budget left, by weight among the capped stages still to run
  local i=$1 left=$((budget - (SECONDS - t0))) sum=0 j
  for ((j = i; j < ${#stages[@]}; j++)); do sum=$((sum + ${weight[${stages[j]}]:-0})); done
  [ "$sum" -gt 0 ] || sum=1
  echo $((left * ${weight[${stages[i]}]} / sum))
}

gpu_arch() {
  local cc
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' ')
  [ -n "$cc" ] || cc=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null)
  echo "$cc"
}

stage_build() {
  local t=$SECONDS rc arch
  if [ "$dry" = 1 ]; then
    record build 0 0 "" "skipped (dry run)"
  else
    arch=$(gpu_arch)
    echo "== build: MAX_JOBS=${MAX_JOBS:-$cores} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$arch}"
    ( export MAX_JOBS="${MAX_JOBS:-$cores}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$arch}"
      time timeout -s TERM -k 10 240 "$PY" -m pip install --no-build-isolation --no-deps -e . ) \
      > "$work/logs/build.log" 2>&1
    rc=$?
    record build "$rc" $((SECONDS - t)) 240 "arch ${TORCH_CUDA_ARCH_LIST:-$arch}"
    if [ "$rc" -ne 0 ]; then
      tail -30 "$work/logs/build.log"
      return 1
    fi
  fi
  t=$SECONDS
  timeout -s TERM -k 5 60 "$PY" -m cnnkern.info > "$work/logs/info.txt" 2>&1
  rc=$?
  record info "$rc" $((SECONDS - t)) 60
  return 0
}

stage_tests() {  # name cap: run pytest on the GPU suite (tests) or everything (tests-all)
  local name=$1 cap=$2 t=$SECONDS rc workers sel=() par=() tmo=() note="" targets=(tests)
  [ "$name" = tests ] && sel=(--gpu-suite)
  if [ "$dry" = 1 ]; then
    read -r -a targets <<< "${GPU_CHECK_DRY_TESTS:-tests/test_channel_shuffle.py}"
    sel=()
  fi
  workers="${GPU_CHECK_WORKERS:-$((cores > 2 ? cores - 1 : cores))}"
  # A kernel fault kills the worker's CUDA context: --restart-on-cuda-error has xdist replace that worker
  # instead of failing every later test it would get (tests/_outcome_log.py).
  if "$PY" -c "import xdist" 2>/dev/null; then
    par=(-n "$workers" --dist load --restart-on-cuda-error)
  else
    note="no xdist: serial"
  fi
  if "$PY" -c "import pytest_timeout" 2>/dev/null; then
    tmo=(--timeout="$per_test")
  else
    note="${note:+$note; }no pytest-timeout: no per-test timeout"
  fi
  PYTHONPATH="tests${PYTHONPATH:+:$PYTHONPATH}" timeout -s TERM -k 10 "$cap" \
    "$PY" -m pytest -q -p _outcome_log --outcome-log "$out/$name-outcomes.jsonl" -p no:cacheprovider \
    --continue-on-collection-errors \
    "${sel[@]}" "${par[@]}" "${tmo[@]}" "${targets[@]}" > "$work/logs/$name.log" 2>&1
  rc=$?
  [ "$rc" -ge 124 ] && note="${note:+$note; }CAPPED"
  record "$name" "$rc" $((SECONDS - t)) "$cap" "$note"
  tail -1 "$work/logs/$name.log" | cut -c1-200
}

run_bench() {  # id cap script args...: one benchmark under its cap; its JSON is bench/<id>.json
  local id=$1 cap=$2 script=$3 t=$SECONDS rc note=""
  shift 3
  timeout -s TERM -k 10 "$cap" "$PY" "bench/$script" "$@" --json "$work/bench/$id.json" \
    > "$work/logs/bench-$id.log" 2>&1
  rc=$?
  [ "$rc" -ge 124 ] && note="CAPPED, killed"  # a bench that got SIGTERM in time exits 1 with its JSON written
  grep -q '"interrupted": true' "$work/bench/$id.json" 2>/dev/null && note="capped: results so far"
  [ -f "$work/bench/$id.json" ] || note="${note:+$note; }no JSON"
  record "bench:$id" "$rc" $((SECONDS - t)) "$cap" "$note"
}

stage_bench() {  # stage cap
  local s=$1 cap=$2 cmp=(--compare latest)
  case "$s" in
    bench-dw) run_bench depthwise_conv2d "$cap" bench_depthwise_conv2d.py --quick --mode fwd \
                --providers cnnkern-cuda,cnnkern-triton "${cmp[@]}" ;;
    bench-pw) run_bench group_pointwise_conv2d "$cap" bench_group_pointwise_conv2d.py --quick \
                --providers cnnkern-cuda,cnnkern-cuda-noshuffle,cnnkern-triton "${cmp[@]}" ;;
    bench-conv) run_bench conv2d "$cap" bench_conv2d.py --quick --layers 3x3 \
                  --providers cnnkern-cuda,cnnkern-triton "${cmp[@]}" ;;
    bench-tconv) run_bench conv_transpose2d "$cap" bench_conv_transpose2d.py --quick --layout channels_last \
                   --providers cnnkern-cuda,cnnkern-triton "${cmp[@]}" ;;
    bench-dilated)  # two benches share the stage's cap
      run_bench conv2d_dilated $((cap / 2)) bench_conv2d.py --quick --layers dilated --mode fwdbwd "${cmp[@]}"
      run_bench depthwise_conv2d_dilated $((cap - cap / 2)) bench_depthwise_conv2d.py --quick --layers dilated \
        --mode fwdbwd --layout channels_last --no-deterministic "${cmp[@]}" ;;
    bench-models) run_bench models "$cap" bench_models.py --quick --providers cnnkern --csv "$work/bench/models.csv" ;;
    # Not in the default run (its budget is spoken for); pick them in a second call:
    # fused conv-BN-act blocks (issue 12), host overhead per backend + the 1,000-call chain (issue 11), and
    # the bundled models under CUDA-graph replay against eager (host time = eager - replay; issue 11).
    bench-convbn) run_bench conv_bn_relu "$cap" bench_conv_bn_relu.py --quick \
                    --providers cnnkern-cuda,cnnkern-triton "${cmp[@]}" ;;
    bench-overhead) run_bench overhead "$cap" bench_overhead.py --short ;;
    bench-graphs) run_bench models_graphs "$cap" bench_models.py --quick --providers cnnkern,graph,cnnkern-graph ;;
    # The sm_90a wgmma/TMA forward (issue 14 step 2) is off unless CNNKERN_SM90_WGMMA=1: its first timing,
    # 3x3 and 1x1 ResNet-50 layers, forward only, against cuDNN in the same process.
    bench-conv-sm90) CNNKERN_SM90_WGMMA=1 run_bench conv2d_sm90 "$cap" bench_conv2d.py --quick --layers 3x3,1x1 \
                       --mode fwd,fwdbwd --providers cudnn,cnnkern-cuda ;;
    # The Triton grouped-pointwise slab kernels (issue 13) against the per-group ones they replaced, in one
    # process, forward and fwd+bwd, channels_last (their layout), with cuDNN and the CUDA kernels beside.
    bench-slab) run_bench group_pointwise_slab "$cap" bench_group_pointwise_conv2d.py --quick --layout channels_last \
                  --mode fwd,fwdbwd --providers cudnn,cnnkern-cuda,cnnkern-triton,cnnkern-triton-pergroup ;;
  esac
}

finished=0
finish() {  # plots, summary, packing: also on SIGTERM/SIGINT of the script itself
  [ "$finished" = 1 ] && return 0
  finished=1
  local t=$SECONDS
  if compgen -G "$work/bench/*.json" > /dev/null; then
    timeout -s TERM -k 5 60 "$PY" bench/plot_roofline.py "$work/bench" --out-dir "$work/bench" \
      > "$work/logs/plots.log" 2>&1
    record plots $? $((SECONDS - t)) 60
  fi
  pack
  # The summary reads the run the way it will be read when returned ($OUT's files, tars included).
  timeout -s TERM -k 5 60 "$PY" scripts/gpu_summary.py "$out" --compare latest --write-tests-json "$out" \
    > "$out/summary.txt" 2>&1
  local n
  n=$(find "$out" -maxdepth 1 -type f | wc -l)
  if [ -n "${OUT:-}" ] && [ "$n" -gt 8 ]; then
    echo "warning: $n files in \$OUT (the device tool returns 8)" >> "$out/summary.txt"
  fi
  echo "== total $((SECONDS - t0)) s; $n files in $out: $(cd "$out" && find . -maxdepth 1 -type f -printf '%f ')" \
    >> "$out/summary.txt"
  echo
  cat "$out/summary.txt"
  [ "$work" = "$out" ] || rm -rf "$work"
}
trap 'finish; exit 143' TERM INT

echo "== gpu_check: stages ${stages[*]}; budget ${budget}s; $cores cores; dry run: $dry; writing to $out"
nvidia-smi > "$work/logs/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi / no GPU" >> "$work/logs/nvidia-smi.txt"
for ((i = 0; i < ${#stages[@]}; i++)); do
  s=${stages[i]}
  if [ "$s" = build ]; then
    stage_build || { pack; finish; exit 1; }
    pack
    continue
  fi
  cap=$(cap_for "$i")
  min=$min_cap
  [ "$dry" != 1 ] && { [ "$s" = tests ] || [ "$s" = tests-all ]; } && min=30
  if [ "$cap" -lt "$min" ]; then
    record "$s" - 0 "$cap" "skipped: budget spent"
    continue
  fi
  case "$s" in
    tests|tests-all) stage_tests "$s" "$cap" ;;
    bench-*) stage_bench "$s" "$cap" ;;
  esac
  pack
done
finish
