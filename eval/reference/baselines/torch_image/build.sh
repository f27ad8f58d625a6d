#!/bin/sh
# Builds the original torch/image scale code (torch_image_scale.c + driver.c) with gcc.
#
#   eval/reference/baselines/torch_image/build.sh [OUTDIR]    (default: <this dir>/build)
#
# Flags: -O2 -std=c99 (Torch used -O3 -std=c99, see torch/image CMakeLists.txt + CMake Release;
# build.sh -O3 gives bit-identical results, checked by torch_image.py --selftest),
# -ffp-contract=off and no -march: x86-64's baseline ISA has no FMA, so no a*b+c is fused, as in
# Torch's build; no -ffast-math. torch_image_scale.c refuses to compile with FMA or fast-math and
# requires FLT_EVAL_METHOD == 0 (float arithmetic in float, i.e. SSE, not x87).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/build}
OPT=${OPT:--O2}
mkdir -p "$OUT"

# The verbatim block must still be the upstream bytes (sha256 of generic/image.c lines 5-338 at
# torch/image 5aa18819b6a7b44751f8a858bd232d1c07b67985, each line with its newline,
# = git show 5aa18819:generic/image.c | sed -n 5,338p | sha256sum).
EXPECTED=0e252e994b46ce3f17a518456a7398e0e4e8806ae58467c794a6344e07b81f9c
GOT=$(sed -n '/^\/\* ======== BEGIN VERBATIM/,/^\/\* ======== END VERBATIM/p' "$HERE/torch_image_scale.c" \
      | sed '1d;$d' | sha256sum | cut -d' ' -f1)
if [ "$GOT" != "$EXPECTED" ]; then
  echo "verbatim block of torch_image_scale.c was modified (sha256 $GOT)" >&2
  exit 1
fi

gcc $OPT -std=c99 -ffp-contract=off -fno-fast-math -Wall -Wno-unused-function \
    -o "$OUT/torch_image_scale" "$HERE/driver.c" -lm
echo "$OUT/torch_image_scale"
