#!/usr/bin/env bash
# The benchmark runs whose results are reported (README, issue notes): `make bench` runs this.
# Each step writes a CSV (timm's column names, with the command that produced it) and a PNG chart
# into benchmarks/results/. Run on a quiet machine: every ratio is measured side by side in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # benchmarks/ is not installed: the repository provides it
BIN=${BIN:-.venv/bin}
OUT=${OUT:-benchmarks/results}  # another folder for another machine: OUT=benchmarks/results/<cpu> make bench
mkdir -p "$OUT"
KM="$BIN/keras-models benchmark --warmup 3 --iters 10"

# 1. This CPU's float32 FMA peak (all cores), the yardstick for TFLite's "% of peak".
gcc -O2 -mavx2 -mfma -pthread benchmarks/fma_peak.c -o "$OUT/fma_peak"
"$OUT/fma_peak" "$(nproc)" | tee "$OUT/fma_peak.json"
PEAK=$("$BIN/python" -c "import json; print(json.load(open('$OUT/fma_peak.json'))['gflops'])")
rm -f "$OUT/fma_peak"

# 2. EfficientNet-B0 against keras.applications (same process, same harness): inference batch 1
#    and 32, train step batch 32.
$KM --model tf_efficientnet_b0 --bench infer --batch-size 1,32 --compare keras.applications \
    --results-file "$OUT/b0_infer_vs_keras_applications.csv"
$KM --model tf_efficientnet_b0 --bench train --batch-size 32 --compare keras.applications \
    --results-file "$OUT/b0_train_vs_keras_applications.csv"

# 3. ReXNet 1.0x against timm's rexnet_100 in PyTorch (child process, same thread count).
$KM --model rexnet_100 --bench infer --batch-size 1,32 --compare timm --results-file "$OUT/rexnet_infer_vs_timm.csv"
$KM --model rexnet_100 --bench train --batch-size 32 --compare timm --results-file "$OUT/rexnet_train_vs_timm.csv"

# 4. TFLite (XNNPACK) float32 and int8 at batch 1, with % of the FMA peak.
$KM --model tf_efficientnet_b0,rexnet_100 --bench infer --batch-size 1 --runtime tflite,tflite-int8 \
    --warmup 10 --iters 50 --peak-gflops "$PEAK" --results-file "$OUT/tflite.csv"

# 5. How cost grows: images/s and peak memory vs batch size and resolution.
$KM --model rexnet_100 --bench infer --batch-size 1,8,32,64 --img-size 128,224,320 --iters 5 \
    --results-file "$OUT/rexnet_scaling.csv"
