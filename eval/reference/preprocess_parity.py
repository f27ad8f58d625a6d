"""Preprocessing parity on real photos: snzoo's input tensor against PIL + torchvision's.

    /usr/bin/python3 eval/reference/preprocess_parity.py --snzoo target/release/snzoo \
        --photos DIR --out eval/results/preprocess_parity.json

Every image in DIR (the scikit-image wheel's skimage/data/ photos) is used as it is and also
re-encoded by PIL as JPEG in several ways (4:2:0 q75, 4:2:2 q85, 4:4:4 q95, progressive q90,
grayscale q90, CMYK q90). For each file: the mean and max |difference| of the two
[3, 224, 224] tensors on the 0..255 scale (the normalized difference times std times 255), and the
share of identical values. snzoo reads the files through `snzoo classify --save-input`.

With `--protocol timm-resnet50_gn.a1h_in1k` (run with a Python that has timm, e.g. a venv made
with --system-site-packages and `pip install timm`), the reference is timm's own evaluation
transform for that model (`create_transform(**resolve_data_config(model=...))`: Resize(238,
bicubic), CenterCrop(224), ToTensor, Normalize) and snzoo reads the files with the protocol of
that card (`snzoo convert --protocol`).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from make_fixtures import EVAL, NORMALIZE, pil_loader  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)
VARIANTS = {
    '420q75': dict(quality=75, subsampling=2),
    '422q85': dict(quality=85, subsampling=1),
    '444q95': dict(quality=95, subsampling=0),
    'progq90': dict(quality=90, progressive=True),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--snzoo', required=True)
    ap.add_argument('--photos', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--protocol', help='a card whose protocol to check (timm-resnet50_gn.a1h_in1k)')
    a = ap.parse_args()
    reference = lambda f: NORMALIZE(EVAL(pil_loader(f))).numpy()  # noqa: E731
    if a.protocol == 'timm-resnet50_gn.a1h_in1k':
        import timm
        from timm.data import create_transform, resolve_data_config
        model = timm.create_model('resnet50_gn.a1h_in1k', pretrained=False)
        transform = create_transform(**resolve_data_config({}, model=model))
        reference = lambda f: transform(pil_loader(f)).numpy()  # noqa: E731
        print('reference transform:', transform)
    elif a.protocol:
        sys.exit('unknown --protocol ' + a.protocol)
    work = tempfile.mkdtemp(prefix='snzoo-prep-')
    files = []
    for name in sorted(os.listdir(a.photos)):
        if not name.lower().endswith(('.png', '.jpg', '.jpeg')):
            continue
        src = os.path.join(a.photos, name)
        try:
            img = Image.open(src)
            img.load()
        except Exception:
            continue
        if min(img.size) < 16:
            continue
        files.append(src)
        rgb = img.convert('RGB')
        stem = os.path.splitext(name)[0]
        for v, kw in VARIANTS.items():
            p = os.path.join(work, '%s_%s.jpg' % (stem, v))
            rgb.save(p, **kw)
            files.append(p)
        p = os.path.join(work, '%s_gray.jpg' % stem)
        rgb.convert('L').save(p, quality=90)
        files.append(p)
        p = os.path.join(work, '%s_cmyk.jpg' % stem)
        rgb.convert('CMYK').save(p, quality=90)
        files.append(p)
    weights = os.path.join(ROOT, 'fixtures', 'models', 'tiny-resnet50v1-sn.pth')
    if a.protocol:
        converted = os.path.join(work, 'tiny.safetensors')
        subprocess.run([a.snzoo, 'convert', weights, converted, '--protocol', a.protocol], check=True, stdout=subprocess.DEVNULL)
        weights = converted
    saved = os.path.join(work, 'input.npy')
    subprocess.run([a.snzoo, 'classify', '--weights', weights, '--save-input', saved] + files,
                   check=True, stdout=subprocess.DEVNULL)
    got = np.load(saved)
    rows = []
    for i, f in enumerate(files):
        ref = reference(f)
        d = np.abs(got[i] - ref) * STD * 255.0
        rows.append({'file': os.path.basename(f), 'mean_abs_diff_255': float(d.mean()),
                     'max_abs_diff_255': float(d.max()), 'identical_share': float((got[i] == ref).mean())})
    allmean = float(np.mean([r['mean_abs_diff_255'] for r in rows]))
    allmax = float(np.max([r['max_abs_diff_255'] for r in rows]))
    identical = sum(r['identical_share'] == 1.0 for r in rows)
    out = {'protocol': a.protocol or 'torchvision Resize(256) bilinear, CenterCrop(224)', 'files': len(rows),
           'bit_identical_files': identical, 'mean_abs_diff_255': allmean,
           'max_abs_diff_255': allmax, 'torch': torch.__version__, 'pillow': Image.__version__, 'rows': rows}
    with open(a.out, 'w') as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: v for k, v in out.items() if k != 'rows'}))


if __name__ == '__main__':
    main()
