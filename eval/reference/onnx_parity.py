"""ONNX export parity and feature parity on full-size random-weight models.

    /opt/onnxvenv/bin/python eval/reference/onnx_parity.py --snzoo target/release/snzoo \
        --out eval/results/onnx_parity.json [--depths 18,34,50,101,152]

(/opt/onnxvenv: a venv with --system-site-packages over Debian's PyTorch 1.13, plus `pip install
"numpy<2" onnx onnxruntime openvino`.)

For every architecture of the full-size parity set (v1/v2 x depths x using_bn on/off, saved like
the release; torchvision's BN ResNet-50; timm-layout GroupNorm ResNet-50 built here as timm builds
it), `snzoo export --onnx` (opset 17) is checked with `onnx.checker.check_model(full_check=True)`
and run in ONNX Runtime and OpenVINO (f32) on snzoo's own input tensors of five photos, at batch
1 and batch 5, against `snzoo classify`'s logits: max |Δ| / max |logit| (requirement ≤ 1e-4) and
top-5 agreement. The pooled features of `snzoo embed` are compared with the PyTorch reference
model's (the input of its `fc`) on the same tensors. With --full-baselines, the three BN baselines
as released (TF-Slim tar.gz, MSRA .caffemodel with --caffe-mean, fb.resnet.torch .t7) are exported
and checked the same way, on their own protocols' tensors.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import torch

sys.path.insert(0, os.path.dirname(__file__))
from sn_reference import build, build_torchvision_bn, randomize, randomize_bn  # noqa: E402
from make_fixtures import prefixed  # noqa: E402
from export_parity_common import PHOTOS, ROOT, rel, top5  # noqa: E402



def reference_features(model, x):
    """The input of the reference model's classifier."""
    got = {}
    h = model.fc.register_forward_hook(lambda m, i, o: got.setdefault('f', i[0].detach()))
    with torch.no_grad():
        model(x)
    h.remove()
    return got['f'].numpy()


def gn_resnet50():
    """timm's resnet50_gn layout: torchvision's keys, GroupNorm(32) everywhere."""
    return build_torchvision_bn(norm_layer=lambda c: torch.nn.GroupNorm(32, c))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--snzoo', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--depths', default='18,34,50,101,152')
    ap.add_argument('--caffe-mean', default='', help="MSRA's ResNet_mean.binaryproto (for a .caffemodel)")
    ap.add_argument('--full-baselines', default='', help='the BN baselines as released: slim .tar.gz, .caffemodel, .t7')
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    photos = [os.path.join(ROOT, 'fixtures', 'images', p) for p in PHOTOS]
    work = tempfile.mkdtemp(prefix='snzoo-onnx-')
    st, onnx_path = (os.path.join(work, n) for n in ('model.safetensors', 'model.onnx'))
    xin, yout, fout = (os.path.join(work, n) for n in ('x.npy', 'y.npy', 'f.npy'))
    configs = [(d, v, bn) for d in [int(d) for d in a.depths.split(',')] for v in ('v1', 'v2') for bn in (True, False)]
    configs += [(50, 'torchvision', True), (50, 'gn', False)]
    configs += [(50, path, True) for path in a.full_baselines.split(',') if path]
    core = ov.Core()
    results = []
    for depth, version, using_bn in configs:
        extra = []
        pth = os.path.join(work, 'model.pth')
        if version == 'torchvision':
            model = randomize_bn(build_torchvision_bn(), 50).eval()
            torch.save(model.state_dict(), pth)
            arch = 'resnet50v1-bn (torchvision)'
        elif version == 'gn':
            model = randomize_bn(gn_resnet50(), 51).eval()
            torch.save(model.state_dict(), pth)
            arch = 'resnet50v1-gn (timm layout, 32 groups)'
        elif os.path.exists(version):
            # A BN baseline in its framework's format, with its card's protocol; its reference
            # features are the framework's (eval/reference/baselines/), not compared here.
            model = None
            if version.endswith('.caffemodel'):
                extra = ['--protocol', 'msra-caffe-resnet50', '--mean-image', a.caffe_mean]
            elif version.endswith('.t7'):
                extra = ['--protocol', 'fb-resnet-torch-resnet50']
            else:
                extra = ['--protocol', 'tf-slim-resnet_v1_50']
            pth = version
            arch = 'full-size ' + os.path.basename(version)
        else:
            seed = depth * 10 + (version == 'v2') * 2 + using_bn
            model = randomize(build(version, depth, using_bn=using_bn), seed).eval()
            torch.save({'epoch': 120, 'state_dict': prefixed(model.state_dict())}, pth, _use_new_zipfile_serialization=False)
            arch = 'resnet%d%s-sn' % (depth, version)
        subprocess.run([a.snzoo, 'convert', pth, st] + extra, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([a.snzoo, 'classify', '--weights', st, '--save-input', xin, '--save-logits', yout] + photos,
                       check=True, stdout=subprocess.DEVNULL)
        t0 = time.time()
        subprocess.run([a.snzoo, 'export', '--weights', st, '--onnx', onnx_path], check=True, stdout=subprocess.DEVNULL)
        export_s = time.time() - t0
        subprocess.run([a.snzoo, 'embed', '--weights', st, '-o', fout] + photos, check=True, stdout=subprocess.DEVNULL)
        x, y, f = np.load(xin), np.load(yout), np.load(fout)
        onnx.checker.check_model(onnx.load(onnx_path), full_check=True)
        sess = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
        compiled = core.compile_model(onnx_path, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
        r = {'arch': arch, 'using_bn': using_bn, 'max_abs_logit': float(np.abs(y).max()),
             'onnx_bytes': os.path.getsize(onnx_path), 'export_seconds': round(export_s, 2), 'checker': 'ok'}
        for engine, run in (('onnxruntime', lambda b: sess.run(None, {'input': b})[0]),
                            ('openvino', lambda b: compiled({0: b})[0])):
            y5 = run(x)
            y1 = np.concatenate([run(x[i:i + 1]) for i in range(len(x))])
            r[engine] = {'batch5_rel_error': rel(y5, y), 'batch1_rel_error': rel(y1, y),
                         'top5_equal': bool((top5(y5) == top5(y)).all() and (top5(y1) == top5(y)).all())}
        if model is not None:
            r['features_rel_error'] = rel(f, reference_features(model, torch.from_numpy(x)))
        print(json.dumps(r), flush=True)
        results.append(r)
        del model
    out = {'torch': torch.__version__, 'onnx': onnx.__version__, 'onnxruntime': ort.__version__,
           'openvino': ov.__version__, 'opset': 17, 'photos': PHOTOS,
           'cpu': open('/proc/cpuinfo').read().split('model name')[1].split('\n')[0].strip(': '),
           'snzoo_commit': subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip(),
           'results': results}
    with open(a.out, 'w') as fh:
        json.dump(out, fh, indent=1)


if __name__ == '__main__':
    main()
