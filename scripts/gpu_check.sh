#!/usr/bin/env bash
# GPU verification for a lent H100/H200, in stages that each fit one device call (10 min):
#
#   bash scripts/gpu_check.sh build tests        # build for the visible GPU, run the GPU tests (-m gpu)
#   bash scripts/gpu_check.sh build bench-conv   # (each device call starts from a fresh machine: build first)
#   stages: build tests tests-all bench-conv bench-dw bench-pw bench-models bench-tconv bench-dilated
#           (default: build tests bench-conv)
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
    bench-models)  # MobileNetV2 + ShuffleNetV2 x1.0, bf16, batch 256; SIGTERM keeps the results so far
      timeout -s TERM 480 python bench/bench_models.py --quick --json "$out/bench-models.json" \
        --csv "$out/bench-models.csv" 2>&1 | tee "$out/bench-models.log" | tail -40 ;;
    bench-tconv)  # DCGAN / U-Net / decoder transposed convs, fp16 channels_last, batch 64, fwd and fwd+bwd
      timeout -s TERM 360 python bench/bench_conv_transpose2d.py --quick --layout channels_last \
        --json "$out/bench-conv-transpose2d.json" 2>&1 | tee "$out/bench-conv-transpose2d.log" | tail -50 ;;
    bench-dilated)  # DeepLab dilated direct + depthwise convs, fwd+bwd vs deterministic cuDNN
      timeout -s TERM 180 python bench/bench_conv2d.py --quick --layers dilated --mode fwdbwd \
        --json "$out/bench-conv2d-dilated.json" 2>&1 | tee "$out/bench-conv2d-dilated.log" | tail -30
      timeout -s TERM 180 python bench/bench_depthwise_conv2d.py --quick --layers dilated --mode fwdbwd \
        --layout channels_last --no-deterministic --json "$out/bench-depthwise-dilated.json" 2>&1 \
        | tee "$out/bench-depthwise-dilated.log" | tail -30 ;;
    *) echo "unknown stage '$stage' (build tests tests-all bench-conv bench-dw bench-pw bench-models bench-tconv" \
            "bench-dilated)"; exit 2 ;;
  esac
done
