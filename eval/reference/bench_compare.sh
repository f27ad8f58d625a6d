#!/usr/bin/env bash
# snzoo bench and the PyTorch reference model (eval/reference/sn_reference.py), back to back on the
# same machine and threads: eval-mode forward of full-size SN ResNets at 224x224, f32 and bf16,
# batch 1/16/64. One JSON line per measurement.
#
#   bash eval/reference/bench_compare.sh target/release/snzoo [SECONDS] [THREADS] > eval/results/bench_compare.jsonl
#
# TORCH2: a Python with PyTorch 2.x (python3 -m venv /tmp/torch2 && /tmp/torch2/bin/pip install torch)
# TORCH1: a Python with PyTorch 1.13 (Debian's python3-torch: /usr/bin/python3); also writes the models
# ARCHS, BATCHES: what to measure (default: all four, "1 16 64"); PLAIN_ARCHS: where to also measure
# snzoo's plain-candle-ops baseline (default resnet50v1).
set -euo pipefail
SNZOO=$1
SECS=${2:-10}
THREADS=${3:-2}
TORCH1=${TORCH1:-/usr/bin/python3}
TORCH2=${TORCH2:-/tmp/torch2/bin/python}
ARCHS=${ARCHS:-resnet50v1 resnet50v2 resnet101v1 resnet101v2}
BATCHES=${BATCHES:-1 16 64}
PLAIN_ARCHS=${PLAIN_ARCHS:-resnet50v1}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
line() { tr -d '\n' | sed 's/  */ /g'; echo; }
for arch in $ARCHS; do
  "$TORCH1" "$HERE/make_bench_model.py" "$arch" "$W/$arch.pth"
  "$SNZOO" convert "$W/$arch.pth" "$W/$arch.safetensors" >/dev/null
  for bs in $BATCHES; do
    "$SNZOO" bench -w "$W/$arch.safetensors" --batch-size "$bs" --seconds "$SECS" --threads "$THREADS" --json | line
    "$SNZOO" bench -w "$W/$arch.safetensors" --batch-size "$bs" --seconds "$SECS" --threads "$THREADS" --dtype bf16 --json | line
    if [[ " $PLAIN_ARCHS " == *" $arch "* ]]; then
      "$SNZOO" bench -w "$W/$arch.safetensors" --batch-size "$bs" --seconds "$SECS" --threads "$THREADS" --reference-sn --json | line
    fi
    "$TORCH2" "$HERE/bench_torch.py" --arch "$arch" --batch-size "$bs" --seconds "$SECS" --threads "$THREADS" 2>/dev/null
    "$TORCH2" "$HERE/bench_torch.py" --arch "$arch" --batch-size "$bs" --seconds "$SECS" --threads "$THREADS" --dtype bf16 2>/dev/null
    "$TORCH1" "$HERE/bench_torch.py" --arch "$arch" --batch-size "$bs" --seconds "$SECS" --threads "$THREADS"
  done
done
