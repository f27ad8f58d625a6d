#!/usr/bin/env bash
# Converting a full-size ResNet-50 v1 + SN legacy checkpoint (saved like the release: training
# dict with SGD momentum buffers, `module.` prefix): `snzoo convert` against
# `torch.load` + `safetensors.torch.save_file`, wall time and peak RSS (GNU time), 3 runs each.
#
#   bash eval/reference/convert_bench.sh target/release/snzoo PYTHONPATH_WITH_SAFETENSORS
set -euo pipefail
SNZOO=$1
export PYTHONPATH=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d)
/usr/bin/python3 - "$W/r50.pth" <<PY
import sys, torch
sys.path.insert(0, "$HERE")
from sn_reference import build, randomize
from make_fixtures import training_dict, prefixed
m = randomize(build('v1', 50), 1)
torch.save(training_dict(m, 'resnet50v1_sn', prefixed(m.state_dict())), sys.argv[1], _use_new_zipfile_serialization=False)
PY
ls -l "$W/r50.pth" | awk '{printf "checkpoint: %.1f MB\n", $5/1e6}'
for i in 1 2 3; do
  /usr/bin/time -f "snzoo convert: %e s, peak RSS %M KB" "$SNZOO" convert "$W/r50.pth" "$W/a.safetensors" >/dev/null
  /usr/bin/time -f "torch.load + save_file: %e s, peak RSS %M KB" /usr/bin/python3 -c "
import sys, torch
from safetensors.torch import save_file
ck = torch.load(sys.argv[1], map_location='cpu')
sd = {k[len('module.'):]: v.contiguous() for k, v in ck['state_dict'].items()}
save_file(sd, sys.argv[2], metadata={'format': 'pt'})" "$W/r50.pth" "$W/b.safetensors"
done
/usr/bin/time -f "(for reference: python3 -c 'import torch, safetensors.torch' alone: %e s, peak RSS %M KB)" /usr/bin/python3 -c "import torch, safetensors.torch"
rm -rf "$W"
