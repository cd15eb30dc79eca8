#!/usr/bin/env bash
# GPU verification for a lent H100/H200, in stages that each fit one device call (10 min):
#
#   bash scripts/gpu_check.sh build tests        # build for the visible GPU, run the GPU tests (-m gpu)
#   bash scripts/gpu_check.sh build bench-conv   # (each device call starts from a fresh machine: build first)
#   stages: build tests tests-all bench-conv bench-dw bench-pw   (default: build tests bench-conv)
#
# Logs go to $OUT (or ./gpu-logs) so they can be brought back. The CPU-runnable tests are CI's job; `tests`
# runs only the GPU-marked ones, `tests-all` everything on the GPU machine.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-logs}"; mkdir -p "$out"
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-16}"
[ -x /usr/local/cuda/bin/nvcc ] && export CUDA_HOME=/usr/local/cuda
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
[ $# -eq 0 ] && set -- build tests bench-conv
for stage in "$@"; do
  echo "== $stage ($(date +%T))"
  case "$stage" in
    build)
      ( time pip install --no-build-isolation --no-deps -e . ) > "$out/build.log" 2>&1 \
        || { tail -50 "$out/build.log"; exit 1; }
      python -m cnnkern.info | tee "$out/info.txt" ;;
    tests) python -m pytest -q -ra -m gpu tests 2>&1 | tee "$out/tests-gpu.log" | tail -40 ;;
    tests-all) python -m pytest -q -ra tests 2>&1 | tee "$out/tests-all.log" | tail -40 ;;
    bench-conv)
      python bench/bench_conv2d.py --quick --layers 3x3 --json "$out/bench-conv2d-3x3.json" 2>&1 \
        | tee "$out/bench-conv2d.log" | tail -40 ;;
    bench-dw)
      python bench/bench_depthwise_conv2d.py --quick --mode fwd --json "$out/bench-depthwise-fwd.json" 2>&1 \
        | tee "$out/bench-depthwise.log" | tail -60 ;;
    bench-pw)
      python bench/bench_group_pointwise_conv2d.py --quick --json "$out/bench-group-pointwise.json" 2>&1 \
        | tee "$out/bench-group-pointwise.log" | tail -40 ;;
    *) echo "unknown stage '$stage' (build tests tests-all bench-conv bench-dw bench-pw)"; exit 2 ;;
  esac
done
