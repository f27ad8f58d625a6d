"""GroupNorm ResNet-50 parity: timm's own resnet50_gn (random, well-scaled weights, saved as the
Hub's model.safetensors is) against `snzoo classify`, and timm's evaluation transform against
snzoo's preprocessing for the timm-resnet50_gn.a1h_in1k card.

    /opt/timmvenv/bin/python eval/reference/gn_parity.py --snzoo target/release/snzoo \
        --photos fixtures/images --out eval/results/gn_parity.json

(/opt/timmvenv: `python3 -m venv --system-site-packages` over Debian's PyTorch 1.13, plus
`pip install timm safetensors`.) Logits are compared on snzoo's own input tensor (--save-input),
so the two checks are independent: max |Δlogit| / max |logit| and top-5; and the input tensors
themselves against timm's transform of the same files (bit-identical expected).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import safetensors.torch
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

sys.path.insert(0, os.path.dirname(__file__))
from make_fixtures import pil_loader  # noqa: E402
from sn_reference import randomize_bn  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--snzoo', required=True)
    ap.add_argument('--photos', required=True)
    ap.add_argument('--out', required=True)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix='snzoo-gn-')
    torch.manual_seed(0)
    model = timm.create_model('resnet50_gn.a1h_in1k', pretrained=False)
    randomize_bn(model, seed=7).eval()
    hub = os.path.join(work, 'model.safetensors')
    safetensors.torch.save_file(model.state_dict(), hub, metadata={'format': 'pt'})
    converted = os.path.join(work, 'gn.safetensors')
    convert = subprocess.run([a.snzoo, 'convert', hub, converted, '--protocol', 'timm-resnet50_gn.a1h_in1k', '--json'],
                             check=True, capture_output=True, text=True)
    info = json.loads(convert.stdout)
    files = sorted(os.path.join(a.photos, f) for f in os.listdir(a.photos)
                   if f.lower().endswith(('.jpg', '.jpeg', '.png')))
    x_path, y_path = os.path.join(work, 'x.npy'), os.path.join(work, 'y.npy')
    subprocess.run([a.snzoo, 'classify', '--weights', converted, '--save-input', x_path, '--save-logits', y_path] + files,
                   check=True, stdout=subprocess.DEVNULL)
    x, y = np.load(x_path), np.load(y_path)
    transform = create_transform(**resolve_data_config({}, model=model))
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    rows = []
    for i, f in enumerate(files):
        t = transform(pil_loader(f)).numpy()
        rel = float(np.abs(y[i] - ref[i]).max() / np.abs(ref[i]).max())
        rows.append({'image': os.path.basename(f), 'input_bit_identical': bool((t == x[i]).all()),
                     'input_max_abs_diff': float(np.abs(t - x[i]).max()), 'max_abs_logit': float(np.abs(ref[i]).max()),
                     'rel_logit_error': rel, 'top5_equal': list(np.argsort(-y[i])[:5]) == list(np.argsort(-ref[i])[:5])})
    out = {'model': 'timm resnet50_gn (resnet50_gn.a1h_in1k architecture), random weights', 'timm': timm.__version__,
           'torch': torch.__version__, 'pillow': Image.__version__, 'snzoo_arch': info['arch'],
           'transform': str(transform).replace('\n', ' '),
           'images': len(rows), 'inputs_bit_identical': sum(r['input_bit_identical'] for r in rows),
           'max_rel_logit_error': max(r['rel_logit_error'] for r in rows), 'top5_equal': sum(r['top5_equal'] for r in rows),
           'rows': rows}
    with open(a.out, 'w') as fh:
        json.dump(out, fh, indent=1)
    print(json.dumps({k: v for k, v in out.items() if k != 'rows'}, indent=1))


if __name__ == '__main__':
    main()
