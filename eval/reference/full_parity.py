"""Full-size parity: every architecture (v1/v2 x 18/34/50/101/152 x using_bn on/off) with random
weights, saved like the release (legacy torch.save, training dict, `module.` prefix), run by
PyTorch and by `snzoo` on the same real photos.

    /usr/bin/python3 eval/reference/full_parity.py --snzoo target/release/snzoo \
        --out eval/results/full_parity.json [--device cuda]

For each model: `snzoo convert` (the .pth -> safetensors), then `snzoo classify --save-logits` on
the photos, compared with the PyTorch logits of the torchvision-preprocessed photos:
max |dlogit| / max |logit|, and whether top-1/top-5 agree. The photos' preprocessing is checked
separately (eval/reference/preprocess_parity.py); here both sides also save their input tensors
and the script reports the largest input difference.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from sn_reference import build, build_torchvision_bn, randomize, randomize_bn  # noqa: E402
from make_fixtures import EVAL, NORMALIZE, pil_loader, prefixed  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
PHOTOS = ['chelsea_420.jpg', 'coffee_444.jpg', 'hubble_odd.jpg']


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--snzoo', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--depths', default='18,34,50,101,152')
    ap.add_argument('--device', default='cpu', help="snzoo's --device (cpu, cuda, cuda:N)")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    photos = [os.path.join(ROOT, 'fixtures', 'images', p) for p in PHOTOS]
    x = torch.stack([NORMALIZE(EVAL(pil_loader(p))) for p in photos])
    results = []
    work = tempfile.mkdtemp(prefix='snzoo-parity-')
    configs = [(d, v, bn) for d in [int(d) for d in a.depths.split(',')] for v in ('v1', 'v2') for bn in (True, False)]
    # The release's BN baseline: torchvision's own ResNet-50, saved as torchvision saves it.
    configs.append((50, 'torchvision', True))
    for depth, version, using_bn in configs:
                pth = os.path.join(work, 'model.pth')
                st = os.path.join(work, 'model.safetensors')
                if version == 'torchvision':
                    model = randomize_bn(build_torchvision_bn(), 50).eval()
                    torch.save(model.state_dict(), pth)
                    arch = 'resnet50v1-bn (torchvision)'
                else:
                    seed = depth * 10 + (version == 'v2') * 2 + using_bn
                    model = randomize(build(version, depth, using_bn=using_bn), seed).eval()
                    torch.save({'epoch': 120, 'model': 'resnet%d%s_sn' % (depth, version),
                                'state_dict': prefixed(model.state_dict()), 'best_prec1': torch.tensor(0.0)},
                               pth, _use_new_zipfile_serialization=False)
                    arch = 'resnet%d%s-sn' % (depth, version)
                with torch.no_grad():
                    ref = model(x).numpy()
                del model
                subprocess.run([a.snzoo, 'convert', pth, st], check=True, stdout=subprocess.DEVNULL)
                logits_path = os.path.join(work, 'logits.npy')
                input_path = os.path.join(work, 'input.npy')
                t0 = time.time()
                subprocess.run([a.snzoo, 'classify', '--device', a.device, '--weights', st, '--save-logits', logits_path,
                                '--save-input', input_path] + photos, check=True, stdout=subprocess.DEVNULL)
                t_rust = time.time() - t0
                got = np.load(logits_path)
                inp = np.load(input_path)
                rel = float(np.abs(got - ref).max() / np.abs(ref).max())
                top5_ref = np.argsort(-ref, axis=1, kind='stable')[:, :5]
                top5_got = np.argsort(-got, axis=1, kind='stable')[:, :5]
                r = {'arch': arch, 'using_bn': using_bn,
                     'max_abs_logit': float(np.abs(ref).max()), 'rel_error': rel,
                     'input_max_abs_diff': float(np.abs(inp - x.numpy()).max()),
                     'top1_equal': bool((top5_ref[:, 0] == top5_got[:, 0]).all()),
                     'top5_equal': bool((top5_ref == top5_got).all()),
                     'snzoo_seconds': round(t_rust, 2)}
                print(json.dumps(r), flush=True)
                results.append(r)
                os.remove(pth)
                os.remove(st)
    cpuinfo = open('/proc/cpuinfo').read()
    field = lambda name: cpuinfo.split(name)[1].split('\n')[0].split(':', 1)[1].strip() if name in cpuinfo else ''
    out = {'torch': torch.__version__, 'snzoo_device': a.device, 'cpu': field('model name'), 'cpu_family': field('cpu family'),
           'snzoo_commit': subprocess.run(['git', '-C', os.path.dirname(os.path.abspath(__file__)), 'rev-parse', '--short', 'HEAD'],
                                          capture_output=True, text=True).stdout.strip(),
           'photos': PHOTOS, 'results': results}
    with open(a.out, 'w') as f:
        json.dump(out, f, indent=1)


if __name__ == '__main__':
    main()
