"""`transformers` parity of `snzoo export --hf` folders.

    /opt/onnxvenv/bin/python eval/reference/hf_parity.py --snzoo target/release/snzoo \
        --out eval/results/hf_parity.json [--depths 18,34,50,101,152] \
        [--caffe-mean ResNet_mean.binaryproto] [--full-baselines slim.tar.gz,model.caffemodel,resnet-50.t7]

(/opt/onnxvenv: a venv with --system-site-packages over Debian's PyTorch 1.13, plus
`pip install "numpy<2" transformers==4.45.2 onnx onnxruntime openvino`.)

For every architecture of the full-size parity set (SN v1/v2 x depths x using_bn on/off saved like
the release, torchvision's BN ResNet-50, a timm-layout GroupNorm ResNet-50) and the three BN
baselines' layouts (the committed tiny TF-Slim / MSRA Caffe / fb.resnet.torch fixtures, and the
full-size checkpoints when given), the folder written by `snzoo export --hf` is loaded with
`AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)` (no missing or
unexpected keys allowed) and fed snzoo's own input tensors of five photos (`classify --save-input`):
max |Δ| / max |logit| against `snzoo classify` (requirement <= 1e-4) and top-5 agreement. Then
`pipeline("image-classification", model=folder, trust_remote_code=True)` classifies the photo files
themselves: its top-5 classes against snzoo's (where the probabilities do not tie), and the folder's
image processor's tensor against snzoo's (required bit-identical, for all four protocols).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

sys.path.insert(0, os.path.dirname(__file__))
from sn_reference import build, build_torchvision_bn, randomize, randomize_bn  # noqa: E402
from make_fixtures import prefixed  # noqa: E402
from export_parity_common import PHOTOS, ROOT, rel, top5  # noqa: E402



def run(*args):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


def models(a, work):
    """(name, checkpoint, extra convert flags) of every architecture checked."""
    pth = os.path.join(work, 'model.pth')
    for depth in [int(d) for d in a.depths.split(',') if d]:
        for version in ('v1', 'v2'):
            for using_bn in (True, False):
                seed = depth * 10 + (version == 'v2') * 2 + using_bn
                m = randomize(build(version, depth, using_bn=using_bn), seed).eval()
                torch.save({'epoch': 120, 'state_dict': prefixed(m.state_dict())}, pth, _use_new_zipfile_serialization=False)
                yield 'resnet%d%s-sn%s' % (depth, version, '' if using_bn else ' (using_bn off)'), pth, []
    torch.save(randomize_bn(build_torchvision_bn(), 50).eval().state_dict(), pth)
    yield 'resnet50v1-bn (torchvision)', pth, []
    torch.save(randomize_bn(build_torchvision_bn(norm_layer=lambda c: torch.nn.GroupNorm(32, c)), 51).eval().state_dict(), pth)
    yield 'resnet50v1-gn (timm layout, 32 groups)', pth, ['--groups', '32']
    fw = os.path.join(ROOT, 'fixtures', 'frameworks')
    # The baselines with their cards' protocols (the tiny fixtures too, to check the processor).
    slim, caffe, fbtorch = (['--protocol', 'tf-slim-resnet_v1_50'], ['--protocol', 'msra-caffe-resnet50', '--mean-image', a.caffe_mean],
                            ['--protocol', 'fb-resnet-torch-resnet50'])
    yield 'tiny TF-Slim layout (fixture)', os.path.join(fw, 'slim', 'tiny.ckpt'), slim
    if a.caffe_mean:
        yield 'tiny MSRA Caffe layout (fixture)', os.path.join(fw, 'caffe', 'tiny.caffemodel'), caffe
    yield 'tiny fb.resnet.torch layout (fixture)', os.path.join(fw, 'torch7', 'tiny.t7'), fbtorch
    for path in [p for p in a.full_baselines.split(',') if p]:
        extra = caffe if path.endswith('.caffemodel') else fbtorch if path.endswith('.t7') else slim
        yield 'full-size ' + os.path.basename(path), path, extra


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--snzoo', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--depths', default='18,34,50,101,152')
    ap.add_argument('--caffe-mean', default='')
    ap.add_argument('--full-baselines', default='')
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    photos = [os.path.join(ROOT, 'fixtures', 'images', p) for p in PHOTOS]
    work = tempfile.mkdtemp(prefix='snzoo-hf-')
    st, folder = os.path.join(work, 'model.safetensors'), os.path.join(work, 'hf')
    xin, yout = os.path.join(work, 'x.npy'), os.path.join(work, 'y.npy')
    results = []
    for name, ckpt, extra in models(a, work):
        shutil.rmtree(folder, ignore_errors=True)
        run(a.snzoo, 'convert', ckpt, st, *extra)
        snzoo_top = json.loads(run(a.snzoo, 'classify', '--weights', st, '--save-input', xin, '--save-logits', yout,
                                   '--top', '5', '--json', *photos))
        run(a.snzoo, 'export', '--weights', st, '--hf', folder)
        x, y = np.load(xin), np.load(yout)
        model, info = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True, output_loading_info=True)
        model.eval()
        with torch.no_grad():
            z = model(torch.tensor(x)).logits.numpy()
        proc = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        from PIL import Image
        px = proc([Image.open(p) for p in photos], return_tensors='np')['pixel_values']
        pipe = pipeline('image-classification', model=folder, trust_remote_code=True)
        got = pipe(photos, top_k=5)
        # By label (ImageNet has repeated names, e.g. two "crane"s, so label2id cannot invert).
        # Positions whose probability ties another (saturated softmax) have no defined order.
        pipe_top = [[d['label'] if [e['score'] for e in row].count(d['score']) == 1 else None for d in row] for row in got]
        want_top = [[model.config.id2label[p['index']] if q is not None else None for p, q in zip(r['top'], pr)]
                    for r, pr in zip(snzoo_top, pipe_top)]
        r = {'model': name, 'config_arch': model.config.snzoo_arch, 'layout': model.config.layout,
             'pipeline': proc.pipeline,
             'missing_keys': info['missing_keys'], 'unexpected_keys': info['unexpected_keys'],
             'mismatched_keys': info['mismatched_keys'],
             'rel_error': rel(z, y), 'top5_equal': bool((top5(z) == top5(y)).all()),
             'processor_max_abs_diff': float(np.abs(px - x).max()),
             'pipeline_top5_equal': pipe_top == want_top}
        r['ok'] = (not r['missing_keys'] and not r['unexpected_keys'] and not r['mismatched_keys']
                   and r['rel_error'] <= 1e-4 and r['top5_equal']
                   and r['processor_max_abs_diff'] == 0 and r['pipeline_top5_equal'])
        print(json.dumps(r), flush=True)
        results.append(r)
        del model, pipe
    out = {'torch': torch.__version__, 'transformers': transformers.__version__, 'photos': PHOTOS,
           'cpu': open('/proc/cpuinfo').read().split('model name')[1].split('\n')[0].strip(': '),
           'snzoo_commit': subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip(),
           'all_ok': all(r['ok'] for r in results), 'results': results}
    with open(a.out, 'w') as fh:
        json.dump(out, fh, indent=1)
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if out['all_ok'] else 1)


if __name__ == '__main__':
    main()
