#!/usr/bin/env bash
# One call's worth of GPU verification (for a lent H100/H200): build the extension for the visible GPU, run
# the GPU tests, then the headline benchmark. Logs go to $OUT (or ./gpu-logs) so they can be brought back.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-logs}"; mkdir -p "$out"
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-16}"
[ -x /usr/local/cuda/bin/nvcc ] && export CUDA_HOME=/usr/local/cuda
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
( time pip install --no-build-isolation --no-deps -e . ) > "$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
python -m cnnkern.info | tee "$out/info.txt"
python -m pytest -q -ra -x tests 2>&1 | tee "$out/tests.log" | tail -40
python bench/bench_conv2d.py --quick --layers 3x3 --json "$out/bench-3x3.json" 2>&1 | tee "$out/bench.log" | tail -40
python bench/bench_depthwise_conv2d.py --quick --mode fwd --json "$out/bench-depthwise-fwd.json" 2>&1 | tee "$out/bench-depthwise.log" | tail -60
python bench/bench_group_pointwise_conv2d.py --quick --json "$out/bench-group-pointwise.json" 2>&1 | tee "$out/bench-group-pointwise.log" | tail -40
