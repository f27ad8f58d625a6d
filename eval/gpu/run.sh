#!/usr/bin/env bash
# The `cuda` feature on a GPU machine: parity of `snzoo --device cuda` against PyTorch, and
# eval-mode forward speed of snzoo (fused SN kernel and plain candle ops) and PyTorch on the GPU.
#
# Build (where nvcc and cargo are; PTX for compute capability 8.0 runs on Ampere and newer):
#   CUDA_COMPUTE_CAP=80 cargo build --release -p snzoo --features cuda
#   mkdir -p .gpu && cp target/release/snzoo .gpu/     # .gpu is ignored by git: carry it
# Run (the GPU machine needs PyTorch and torchvision for the reference side):
#   bash eval/gpu/run.sh .gpu/snzoo OUT_DIR
# Writes OUT_DIR/{gpu.txt, gpu_parity.json, gpu_bench.jsonl}.
set -euo pipefail
SNZOO=$(realpath "$1")
OUT=$(mkdir -p "$2" && realpath "$2")
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

# candle loads cuBLAS, cuRAND and NVRTC by their unversioned names (libcublas.so, ...): point those
# at the versioned libraries of the machine's CUDA or of PyTorch's wheels.
LIBS=$(mktemp -d)
for lib in cublas cublasLt curand nvrtc; do
  found=$( (ldconfig -p | awk '{print $NF}' | grep -E "/lib${lib}\.so(\.[0-9]+)*$";
            find /usr/local/cuda*/ "$($PY -c 'import site; print(site.getsitepackages()[0])')/nvidia" \
                 -name "lib${lib}.so*" 2>/dev/null) | sort -V | tail -1 || true)
  if [ -n "$found" ]; then ln -sf "$found" "$LIBS/lib${lib}.so"; else echo "warning: lib${lib}.so not found" >&2; fi
done
export LD_LIBRARY_PATH="$LIBS:${LD_LIBRARY_PATH:-}"

# Parity: random full-size SN ResNet-50/101 (v1, v2, with and without BN) and torchvision's
# ResNet-50, PyTorch on the CPU against snzoo on the GPU, on the bundled photos.
"$PY" "$HERE/reference/full_parity.py" --snzoo "$SNZOO" --device cuda --depths 50,101 --out "$OUT/gpu_parity.json"

# Speed: the same reference model in PyTorch (on the GPU) and snzoo, back to back.
W=$(mktemp -d)
for arch in resnet50v1 resnet101v2; do
  "$PY" "$HERE/reference/make_bench_model.py" "$arch" "$W/$arch.pth"
  "$SNZOO" convert "$W/$arch.pth" "$W/$arch.safetensors" >/dev/null
  for bs in 1 16 64; do
    "$SNZOO" bench -w "$W/$arch.safetensors" --device cuda --batch-size $bs --seconds 5 --json | tr -d '\n' | sed 's/  */ /g'; echo
    "$SNZOO" bench -w "$W/$arch.safetensors" --device cuda --batch-size $bs --seconds 5 --reference-sn --json | tr -d '\n' | sed 's/  */ /g'; echo
    "$PY" "$HERE/reference/bench_torch.py" --arch $arch --device cuda --batch-size $bs --seconds 5
  done
done | tee "$OUT/gpu_bench.jsonl"
rm -rf "$W" "$LIBS"
