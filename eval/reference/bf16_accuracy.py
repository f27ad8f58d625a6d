"""How far bf16 moves the logits of full-size SN ResNets: `snzoo classify --dtype bf16` (bf16
convolutions, f32 sums, the rest f32) and PyTorch in bf16 (CPU autocast, and the whole model cast
with `.bfloat16()`), each against PyTorch f32, on the bundled photos.

    /usr/bin/python3 eval/reference/bf16_accuracy.py --snzoo target/release/snzoo \\
        --out eval/results/bf16_accuracy.json
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from sn_reference import build, randomize  # noqa: E402
from make_fixtures import EVAL, NORMALIZE, pil_loader, prefixed  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
PHOTOS = ['chelsea_420.jpg', 'coffee_444.jpg', 'hubble_odd.jpg']


def compare(got, ref):
    top5 = lambda v: np.argsort(-v, axis=1, kind='stable')[:, :5]  # noqa: E731
    return {'rel_error': float(np.abs(got - ref).max() / np.abs(ref).max()),
            'top1_equal': int((top5(got)[:, 0] == top5(ref)[:, 0]).sum()),
            'top5_equal': int((top5(got) == top5(ref)).all(axis=1).sum())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--snzoo', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--archs', default='resnet50v1,resnet50v2,resnet101v1')
    a = ap.parse_args()
    photos = [os.path.join(ROOT, 'fixtures', 'images', p) for p in PHOTOS]
    x = torch.stack([NORMALIZE(EVAL(pil_loader(p))) for p in photos])
    work = tempfile.mkdtemp(prefix='snzoo-bf16-')
    results = []
    for arch in a.archs.split(','):
        depth, version = int(arch[6:-2]), arch[-2:]
        model = randomize(build(version, depth), 1).eval()
        pth, logits = os.path.join(work, 'm.pth'), os.path.join(work, 'y.npy')
        torch.save({'state_dict': prefixed(model.state_dict())}, pth)
        with torch.no_grad():
            ref = model(x).numpy()
            with torch.autocast('cpu', dtype=torch.bfloat16):
                autocast = model(x).float().numpy()
            cast = model.bfloat16()(x.bfloat16()).float().numpy()
        subprocess.run([a.snzoo, 'classify', '--dtype', 'bf16', '--weights', pth, '--save-logits', logits] + photos,
                       check=True, stdout=subprocess.DEVNULL)
        r = {'arch': arch + '-sn', 'images': len(photos), 'max_abs_logit': float(np.abs(ref).max()),
             'snzoo_bf16': compare(np.load(logits), ref),
             'torch_autocast_bf16': compare(autocast, ref),
             'torch_bfloat16': compare(cast, ref)}
        print(json.dumps(r), flush=True)
        results.append(r)
    with open(a.out, 'w') as f:
        json.dump({'torch': torch.__version__, 'photos': PHOTOS, 'results': results}, f, indent=1)


if __name__ == '__main__':
    main()
