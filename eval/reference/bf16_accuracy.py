"""How far bf16 moves the logits of full-size SN ResNets: `snzoo classify --dtype bf16` (bf16
convolutions, f32 sums, the rest f32), PyTorch in bf16 (CPU autocast, and the whole model cast
with `.bfloat16()`) and OpenVINO (snzoo's ONNX export, INFERENCE_PRECISION_HINT bf16 and f32),
each against PyTorch f32, on the bundled photos. OpenVINO's bf16 depends on the CPU (AMX tiles,
AVX-512 BF16 or an f32 fallback): record which CPU gave the numbers.

    /opt/onnxvenv/bin/python eval/reference/bf16_accuracy.py --snzoo target/release/snzoo \\
        --out eval/results/bf16_accuracy.json

(/opt/onnxvenv: a venv with --system-site-packages over PyTorch 1.13 and `pip install "numpy<2"
openvino`; without OpenVINO the script leaves its columns out.)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

try:
    import openvino as ov
except ImportError:
    ov = None

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
        if ov is not None:
            st, onnx = os.path.join(work, 'm.safetensors'), os.path.join(work, 'm.onnx')
            for path in (st, onnx):
                if os.path.exists(path):
                    os.remove(path)
            subprocess.run([a.snzoo, 'convert', pth, st], check=True, stdout=subprocess.DEVNULL)
            subprocess.run([a.snzoo, 'export', '--weights', st, '--onnx', onnx], check=True, stdout=subprocess.DEVNULL)
            for dtype in ('bf16', 'f32'):
                compiled = ov.Core().compile_model(onnx, 'CPU', {'INFERENCE_PRECISION_HINT': dtype})
                got = np.concatenate([compiled({0: x[i:i + 1].numpy()})[0] for i in range(len(x))])
                r['openvino_' + dtype] = compare(got, ref)
        print(json.dumps(r), flush=True)
        results.append(r)
    with open(a.out, 'w') as f:
        cpu = next(line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name'))
        flags = next(line for line in open('/proc/cpuinfo') if line.startswith('flags')).split()
        json.dump({'torch': torch.__version__, 'openvino': ov.__version__ if ov else None, 'cpu': cpu,
                   'cpu_bf16': [f for f in ('avx512_bf16', 'amx_bf16') if f in flags],
                   'photos': PHOTOS, 'results': results}, f, indent=1)


if __name__ == '__main__':
    main()
