#!/usr/bin/env bash
# The GPU runs reported in benchmarks/results/<gpu>/: Keras 3 on JAX (every step XLA-compiled)
# against timm in PyTorch on the same GPU (channels-last, autocast for the mixed policies).
# Needs jax[cuda], torch, timm and this repository's requirements; no TensorFlow.
#   STEP=parity|float32|mixed_bfloat16|mixed_float16 OUT=<folder> benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
for step in ${STEP:-parity float32 mixed_bfloat16 mixed_float16}; do
  if [ "$step" = parity ]; then
    # numerics, not speed: XLA's kernel autotuning (minutes per model) is off for this step
    XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_autotune_level=0" "$PY" benchmarks/gpu_parity.py "$OUT"
  else
    "$PY" -m keras_models benchmark --model rexnet_100,tf_efficientnet_b0 --bench both --batch-size 32,256 \
      --precision "$step" --compare timm --warmup 5 --iters 20 --results-file "$OUT/gpu_$step.csv"
  fi
done
