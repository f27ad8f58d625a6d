#!/usr/bin/env bash
# snzoo bench (fused SN kernel, and the plain-ops baseline) and the PyTorch reference model, back
# to back on the same machine and threads: eval-mode forward of full-size SN ResNets at 224x224.
#
#   bash eval/reference/bench_compare.sh target/release/snzoo [SECONDS] [THREADS]
set -euo pipefail
SNZOO=$1
SECS=${2:-10}
THREADS=${3:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d)
for arch in resnet50v1 resnet50v2 resnet101v1; do
  depth=${arch:6:-2}; version=${arch: -2}
  /usr/bin/python3 - "$W/$arch.pth" "$depth" "$version" <<PY
import sys, torch
sys.path.insert(0, "$HERE")
from sn_reference import build, randomize
from make_fixtures import prefixed
m = randomize(build(sys.argv[3], int(sys.argv[2])), 1)
torch.save({'state_dict': prefixed(m.state_dict())}, sys.argv[1], _use_new_zipfile_serialization=False)
PY
  "$SNZOO" convert "$W/$arch.pth" "$W/$arch.safetensors" >/dev/null
  for bs in 1 16; do
    "$SNZOO" bench -w "$W/$arch.safetensors" --batch-size $bs --seconds "$SECS" --threads "$THREADS" --json | tr -d '\n' | sed 's/  */ /g'; echo
    "$SNZOO" bench -w "$W/$arch.safetensors" --batch-size $bs --seconds "$SECS" --threads "$THREADS" --reference-sn --json | tr -d '\n' | sed 's/  */ /g'; echo
    /usr/bin/python3 "$HERE/bench_torch.py" --arch $arch --batch-size $bs --seconds "$SECS" --threads "$THREADS"
  done
done
rm -rf "$W"
