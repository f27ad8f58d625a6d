"""Whole-pipeline throughput (read + decode + preprocess + forward) of `snzoo eval` next to a
PyTorch DataLoader + model evaluation with the same number of threads, where the time goes, and
`snzoo eval`'s peak memory as the dataset grows.

    /usr/bin/python3 eval/reference/pipeline_bench.py --snzoo target/release/snzoo --photos DIR \
        --out eval/results/pipeline_bench.json

Model: a full-size ResNet-50 v1 + SN (random weights). Images: ImageNet-like JPEGs (500x375, q90)
cut from the photos in DIR. Memory: 1,000 and 10,000 generated JPEGs through the bundled tiny model
(GNU time's maximum RSS).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from sn_reference import build, randomize  # noqa: E402
from make_fixtures import EVAL, NORMALIZE, pil_loader, prefixed  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
TINY = os.path.join(ROOT, 'fixtures', 'models', 'tiny-resnet50v1-sn.pth')
WNIDS = ['n01440764', 'n02123045', 'n07920052', 'n04008634']


def make_images(photos, root, n, size, seed):
    rng = random.Random(seed)
    srcs = [Image.open(os.path.join(photos, f)).convert('RGB') for f in sorted(os.listdir(photos))
            if f.lower().endswith(('.png', '.jpg')) and min(Image.open(os.path.join(photos, f)).size) >= 200]
    for i in range(n):
        im = rng.choice(srcs)
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.5, 1)), int(h * rng.uniform(0.5, 1))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        d = os.path.join(root, WNIDS[i % len(WNIDS)])
        os.makedirs(d, exist_ok=True)
        im.crop((x, y, x + cw, y + ch)).resize(size, Image.BICUBIC).save(os.path.join(d, '%05d.JPEG' % i), quality=90)


def max_rss_kb(cmd):
    r = subprocess.run(['/usr/bin/time', '-f', '%M %e'] + cmd, capture_output=True, text=True, check=True)
    rss, secs = r.stderr.strip().splitlines()[-1].split()
    return int(rss), float(secs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--snzoo', required=True)
    ap.add_argument('--photos', required=True)
    ap.add_argument('--images', type=int, default=96)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--batch-size', type=int, default=16)
    ap.add_argument('--out', required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    work = tempfile.mkdtemp(prefix='snzoo-pipe-')
    data = os.path.join(work, 'data')
    make_images(a.photos, data, a.images, (500, 375), seed=3)
    files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(data) for f in fs)

    model = randomize(build('v1', 50), 5).eval()
    pth, st = os.path.join(work, 'r50.pth'), os.path.join(work, 'r50.safetensors')
    torch.save({'state_dict': prefixed(model.state_dict())}, pth, _use_new_zipfile_serialization=False)
    subprocess.run([a.snzoo, 'convert', pth, st], check=True, stdout=subprocess.DEVNULL)

    # PyTorch: DataLoader with the same number of worker processes as threads.
    ds = torch.utils.data.Dataset()

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            return NORMALIZE(EVAL(pil_loader(files[i])))

    loader = torch.utils.data.DataLoader(DS(), batch_size=a.batch_size, num_workers=a.threads)
    with torch.no_grad():
        model(torch.zeros(2, 3, 224, 224))  # warm-up
        t = time.time()
        for x in loader:
            model(x)
        torch_total = time.time() - t
    # PyTorch stage costs, one thread each stage (thread-seconds, like snzoo's report).
    t = time.time()
    imgs = [pil_loader(f) for f in files]
    t_decode = time.time() - t
    t = time.time()
    crops = [EVAL(im) for im in imgs]
    t_resize = time.time() - t
    t = time.time()
    xs = torch.stack([NORMALIZE(c) for c in crops])
    t_norm = time.time() - t
    with torch.no_grad():
        t = time.time()
        for i in range(0, len(xs), a.batch_size):
            model(xs[i:i + a.batch_size])
        t_fwd = time.time() - t

    r = subprocess.run([a.snzoo, 'eval', '--weights', st, '--data', data, '--threads', str(a.threads),
                        '--batch-size', str(a.batch_size), '--json', '--quiet'], check=True, capture_output=True, text=True)
    rep = json.loads(r.stdout)
    out = {
        'torch': torch.__version__, 'images': len(files), 'image_size': [500, 375], 'threads': a.threads,
        'batch_size': a.batch_size, 'model': 'resnet50v1-sn (random weights)',
        'pytorch_dataloader': {'images_per_second': len(files) / torch_total, 'wall_seconds': torch_total,
                               'stage_thread_seconds': {'decode': t_decode, 'resize_crop': t_resize,
                                                        'to_tensor_normalize': t_norm, 'forward': t_fwd}},
        'snzoo_eval': {'images_per_second': rep['images_per_second'], 'wall_seconds': rep['wall_seconds'],
                       'stage_thread_seconds': rep['stage_seconds']},
    }
    print(json.dumps(out, indent=1), flush=True)

    # Peak memory as the dataset grows (bundled tiny model, 320x240 JPEGs).
    mem = []
    for n in (1000, 10000):
        d = os.path.join(work, 'mem%d' % n)
        make_images(a.photos, d, n, (320, 240), seed=4)
        rss, secs = max_rss_kb([a.snzoo, 'eval', '--weights', TINY, '--data', d, '--batch-size', '32',
                                '--threads', str(a.threads), '--quiet'])
        mem.append({'images': n, 'max_rss_kb': rss, 'seconds': secs})
        print(json.dumps(mem[-1]), flush=True)
    out['memory'] = mem
    with open(a.out, 'w') as fh:
        json.dump(out, fh, indent=1)


if __name__ == '__main__':
    main()
