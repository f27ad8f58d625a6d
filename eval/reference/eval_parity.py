"""`snzoo eval` against the reference PyTorch evaluation, in each dataset layout, plus kill -9/resume.

    /usr/bin/python3 eval/reference/eval_parity.py --snzoo target/release/snzoo \
        --photos DIR --imagenet-classes DIR --out eval/results/eval_parity.json

A labelled set of N real-photo JPEGs/PNGs is generated from the photos in DIR (random crops, sizes,
JPEG qualities and subsamplings, some grayscale, some PNG). Labels are chosen against the reference
model's own ranking (a share its top-1, a share ranks 2-5, the rest other classes) so that top-1
and top-5 are far from 0 and 100 and near-ties matter. The same images are laid out three ways:
ImageFolder (wnid folders), a `path label` list file, and a flat ILSVRC2012_val_*.JPEG folder whose
file numbers are picked so that the bundled ground truth gives the same labels.

Reference: PIL loader + torchvision Resize(256)/CenterCrop(224)/ToTensor/Normalize, a DataLoader, the
reference SN model (eval/reference/sn_reference.py) loaded from the bundled checkpoint, torch.topk.
ImageFolder labels use the canonical sorted-wnid index (as with all 1000 folders present).
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from sn_reference import build  # noqa: E402
from make_fixtures import EVAL, NORMALIZE, pil_loader  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
WEIGHTS = os.path.join(ROOT, 'fixtures', 'models', 'tiny-resnet50v1-sn.pth')


def load_reference():
    ck = torch.load(WEIGHTS, map_location='cpu')
    sd = {k[len('module.'):]: v for k, v in ck['state_dict'].items()}
    model = build('v1', 50, width=4, num_classes=1000)
    model.load_state_dict(sd)
    return model.eval()


def generate(photos, n, work, seed):
    rng = random.Random(seed)
    srcs = []
    for name in sorted(os.listdir(photos)):
        if name.lower().endswith(('.png', '.jpg')):
            im = Image.open(os.path.join(photos, name))
            if min(im.size) >= 64:
                srcs.append(im.convert('RGB'))
    files = []
    for i in range(n):
        im = rng.choice(srcs)
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.4, 1.0)), int(h * rng.uniform(0.4, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        im = im.crop((x, y, x + cw, y + ch))
        short = rng.randint(100, 520)
        scale = short / min(im.size)
        im = im.resize((max(1, int(im.size[0] * scale)), max(1, int(im.size[1] * scale))), Image.BICUBIC)
        r = rng.random()
        p = os.path.join(work, 'gen_%04d' % i)
        if r < 0.1:
            im.convert('L').save(p, format='JPEG', quality=rng.randint(70, 95))
        elif r < 0.15:
            im.save(p, format='PNG')
        else:
            im.save(p, format='JPEG', quality=rng.randint(60, 97), subsampling=rng.choice([0, 1, 2]),
                    progressive=rng.random() < 0.2)
        files.append(p)
    return files


def choose_labels(logits, seed):
    """At most 50 images per class: the flat layout needs that many validation numbers."""
    rng = random.Random(seed)
    labels, used = [], {}
    for row in logits:
        order = torch.argsort(row, descending=True).tolist()
        r = rng.random()
        rank = 0 if r < 0.4 else rng.randint(1, 4) if r < 0.65 else rng.randint(5, 999)
        while used.get(order[rank], 0) >= 50:
            rank = rng.randint(5, 999)
        used[order[rank]] = used.get(order[rank], 0) + 1
        labels.append(order[rank])
    return labels


def reference_eval(model, items):
    """items: [(path, label)] -> (top1 hits, top5 hits, n)."""
    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            p, l = items[i]
            return NORMALIZE(EVAL(pil_loader(p))), l

    loader = torch.utils.data.DataLoader(DS(), batch_size=50, num_workers=2)
    c1 = c5 = 0
    with torch.no_grad():
        for x, y in loader:
            top5 = model(x).topk(5, 1, True, True).indices
            c1 += (top5[:, 0] == y).sum().item()
            c5 += (top5 == y[:, None]).any(1).sum().item()
    return c1, c5, len(items)


def snzoo_eval(snzoo, args):
    out = subprocess.run([snzoo, 'eval', '--weights', WEIGHTS, '--json', '--quiet'] + args, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--snzoo', required=True)
    ap.add_argument('--photos', required=True)
    ap.add_argument('--imagenet-classes', required=True, help='unpacked imagenet_classes package folder')
    ap.add_argument('--images', type=int, default=300)
    ap.add_argument('--out', required=True)
    a = ap.parse_args()
    torch.set_num_threads(2)
    work = tempfile.mkdtemp(prefix='snzoo-evalparity-')
    files = generate(a.photos, a.images, work, seed=1)
    model = load_reference()
    with torch.no_grad():
        logits = torch.cat([model(torch.stack([NORMALIZE(EVAL(pil_loader(f))) for f in files[i:i + 50]]))
                            for i in range(0, len(files), 50)])
    labels = choose_labels(logits, seed=2)
    wnids = json.load(open(os.path.join(a.imagenet_classes, 'imagenet1k_to_21k.json')))
    wnids = [wnids[str(i)] for i in range(1000)]
    gt = json.load(open(os.path.join(a.imagenet_classes, 'val_image_to_1k_label.json')))
    by_class = {}
    for name in sorted(gt):
        by_class.setdefault(gt[name], []).append(name)

    # The three layouts of the same labelled images.
    folder, listroot, flat = (os.path.join(work, d) for d in ('folder', 'list', 'flat'))
    items = {'image_folder': [], 'list_file': [], 'flat_val': []}
    os.makedirs(os.path.join(listroot, 'val'))
    os.makedirs(flat)
    lines = []
    for i, (f, l) in enumerate(zip(files, labels)):
        d = os.path.join(folder, wnids[l])
        os.makedirs(d, exist_ok=True)
        for target in (os.path.join(d, 'img_%04d.JPEG' % i), os.path.join(listroot, 'val', 'img_%04d.JPEG' % i)):
            os.link(f, target)
        items['list_file'].append((os.path.join(listroot, 'val', 'img_%04d.JPEG' % i), l))
        lines.append('val/img_%04d.JPEG %d' % (i, l))
        name = by_class[l].pop(0)
        os.link(f, os.path.join(flat, name))
        items['flat_val'].append((os.path.join(flat, name), l))
    with open(os.path.join(work, 'val.txt'), 'w') as fh:
        fh.write('\n'.join(lines) + '\n')
    # ImageFolder order: by canonical class index, then file name.
    for l in sorted(set(labels)):
        d = os.path.join(folder, wnids[l])
        items['image_folder'] += [(os.path.join(d, n), l) for n in sorted(os.listdir(d))]
    items['flat_val'].sort()

    rows = []
    args = {'image_folder': ['--data', folder], 'list_file': ['--data', listroot, '--labels', os.path.join(work, 'val.txt')],
            'flat_val': ['--data', flat]}
    for layout in ('image_folder', 'list_file', 'flat_val'):
        c1, c5, n = reference_eval(model, items[layout])
        r = snzoo_eval(a.snzoo, args[layout])
        row = {'layout': layout, 'images': n,
               'pytorch': {'top1': 100.0 * c1 / n, 'top5': 100.0 * c5 / n, 'correct1': c1, 'correct5': c5},
               'snzoo': {'top1': r['top1'], 'top5': r['top5'], 'correct1': r['counts']['correct1'],
                         'correct5': r['counts']['correct5'], 'layout': r['dataset']['layout'], 'failed': r['failed']}}
        row['identical'] = (c1, c5, n) == (r['counts']['correct1'], r['counts']['correct5'], r['images'])
        print(json.dumps(row), flush=True)
        rows.append(row)

    # kill -9 in the middle of a run, then the same command.
    report = os.path.join(work, 'report.json')
    cmd = [a.snzoo, 'eval', '--weights', WEIGHTS, '--data', folder, '--output', report, '--batch-size', '4',
           '--threads', '2', '--quiet']
    subprocess.run(cmd, check=True)
    uninterrupted = json.load(open(report))
    os.remove(report)
    p = subprocess.Popen(cmd)
    journal = report + '.partial'
    deadline = time.time() + 60
    while time.time() < deadline:
        if os.path.exists(journal) and sum(1 for _ in open(journal)) > a.images // 3:
            break
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    journaled = sum(1 for _ in open(journal)) - 1
    resumed_run = subprocess.run(cmd[:-1], check=True, capture_output=True, text=True)
    resumed = json.load(open(report))
    same = all(resumed['counts'][k] == uninterrupted['counts'][k]
               for k in ('images', 'correct1', 'correct5', 'per_class', 'failed'))
    kill = {'journaled_before_kill': journaled, 'resumed_images': resumed['resumed_images'],
            'recomputed_images': resumed['images'] - resumed['resumed_images'],
            'message': resumed_run.stderr.strip().splitlines()[0] if resumed_run.stderr.strip() else '',
            'uninterrupted': {'top1': uninterrupted['top1'], 'top5': uninterrupted['top5']},
            'after_resume': {'top1': resumed['top1'], 'top5': resumed['top5']},
            'loss_abs_diff': abs(resumed['counts']['loss_sum'] - uninterrupted['counts']['loss_sum']),
            'identical_counts': same}
    print(json.dumps(kill), flush=True)
    with open(a.out, 'w') as fh:
        json.dump({'torch': torch.__version__, 'images': a.images, 'layouts': rows, 'kill9_resume': kill}, fh, indent=1)


if __name__ == '__main__':
    main()
