"""Full-size parity of the three BN baselines: snzoo against each framework's own computation.

    /opt/timmvenv/bin/python eval/reference/baselines/parity.py --snzoo target/release/snzoo \
        --slim /tmp/slim_full --caffe /tmp/caffework/full --t7 /tmp/fb/resnet-50.t7 \
        --out eval/results/baseline_parity.json

Inputs are the full-size ResNet-50s the sibling scripts write (`slim.py full --calibrate`,
`caffe.py full`, `torch7.py full`: random weights in each framework's released layout and format,
BN statistics calibrated so activations stay sane), and their frameworks' own preprocessing
tensors (`slim.py protocol` -> /tmp/slim_protocol, `torch_image/make_fbtorch_protocol.py` ->
/tmp/fbtorch_protocol; the Caffe tensor is made here with cv2, the MSRA recipe).

For each baseline, as a user would run it:
  1. `snzoo convert` of the file as released (slim: the .tar.gz and the V2 bundle; Caffe: the
     .caffemodel with --mean-image ResNet_mean.binaryproto; Torch7: the .t7), with the card's
     protocol;
  2. `snzoo classify --save-input --save-logits` on PARITY_PHOTOS (the protocol's tensor and logits);
  3. the snzoo input against the framework's preprocessing of the same photos (max |Δ|);
  4. the framework's logits on snzoo's input: TensorFlow running tf_slim's resnet_v1_50 on the V1
     checkpoint (`slim.py logits`), OpenCV dnn on the prototxt + caffemodel and the PyTorch port of
     Caffe's layers (`caffe.py logits [--torch]`), the PyTorch walk of the .t7 module tree
     (`torch7.py logits`); max |Δ| / max |logit| (requirement <= 1e-4) and top-5 agreement.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TF_PY = os.environ.get('TF_PY', '/opt/tfvenv/bin/python')
PY = sys.executable


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def top5(x):
    return np.argsort(-x, axis=1, kind='stable')[:, :5]


def run(*args, py=None):
    cmd = ([py] if py else []) + [str(a) for a in args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def caffe_inputs(photos, mean_path):
    """MSRA's recipe with OpenCV: BGR, short side 256 (long = 256·long // short), INTER_LINEAR,
    centre crop 224 at (dim − 224) // 2, minus the mean image."""
    import cv2
    import caffe as caffe_ref
    m = caffe_ref.pb2().BlobProto()
    m.ParseFromString(open(mean_path, 'rb').read())
    mean = caffe_ref.blob_array(m).reshape(3, 224, 224).astype(np.float32)
    out = []
    for p in photos:
        img = cv2.imread(p, cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        dw, dh = (256, 256 * h // w) if w <= h else (256 * w // h, 256)
        r = cv2.resize(img, (dw, dh), interpolation=cv2.INTER_LINEAR)
        t, l = (dh - 224) // 2, (dw - 224) // 2
        out.append(r[t:t + 224, l:l + 224].transpose(2, 0, 1).astype(np.float32) - mean)
    return np.stack(out)


def compare(name, y, z, extra=None):
    r = {'reference': name, 'rel_error': rel(y, z), 'top5_equal': bool((top5(y) == top5(z)).all()),
         'max_abs_logit': float(np.abs(z).max())}
    r.update(extra or {})
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--snzoo', required=True)
    ap.add_argument('--slim', required=True, help='dir of slim.py full: resnet_v1_50.ckpt, the tar.gz, the V2 bundle')
    ap.add_argument('--caffe', required=True, help='dir of caffe.py full: prototxt, caffemodel, mean')
    ap.add_argument('--t7', required=True)
    ap.add_argument('--slim-protocol', default='/tmp/slim_protocol')
    ap.add_argument('--fbtorch-protocol', default='/tmp/fbtorch_protocol')
    ap.add_argument('--out', required=True)
    a = ap.parse_args()
    photos = [os.path.join(common.IMAGES, p) for p in common.PARITY_PHOTOS]
    stems = [os.path.splitext(p)[0] for p in common.PARITY_PHOTOS]
    work = tempfile.mkdtemp(prefix='snzoo-baselines-')
    st, x_path, y_path, z_path = (os.path.join(work, n) for n in ('m.safetensors', 'x.npy', 'y.npy', 'z.npy'))
    caffe_mean = os.path.join(a.caffe, 'ResNet_mean.binaryproto')
    prototxt, caffemodel = os.path.join(a.caffe, 'ResNet-50-deploy.prototxt'), os.path.join(a.caffe, 'ResNet-50-model.caffemodel')
    cases = [
        ('tf-slim-resnet_v1_50', os.path.join(a.slim, 'resnet_v1_50_2016_08_28.tar.gz'), []),
        ('tf-slim-resnet_v1_50', os.path.join(a.slim, 'resnet_v1_50_v2.index'), []),
        ('msra-caffe-resnet50', caffemodel, ['--mean-image', caffe_mean]),
        ('fb-resnet-torch-resnet50', a.t7, []),
    ]
    results = []
    for card, path, extra in cases:
        run(a.snzoo, 'convert', path, st, '--protocol', card, *extra)
        run(a.snzoo, 'classify', '--weights', st, '--save-input', x_path, '--save-logits', y_path, *photos)
        x, y = np.load(x_path), np.load(y_path)
        r = {'card': card, 'file': os.path.basename(path), 'photos': common.PARITY_PHOTOS, 'references': []}
        if card.startswith('tf-slim'):
            ref_x = np.stack([np.load(os.path.join(a.slim_protocol, s + '.npy')) for s in stems])
            r['input_reference'] = 'TensorFlow 2.15 vgg_preprocessing.preprocess_for_eval (2016), slim.py protocol'
            run(os.path.join(HERE, 'slim.py'), 'logits', '--ckpt', os.path.join(a.slim, 'resnet_v1_50.ckpt'),
                '--input', x_path, '--out', z_path, py=TF_PY)
            r['references'].append(compare('TensorFlow 2.15 + tf_slim resnet_v1_50 (V1 checkpoint)', y, np.load(z_path)))
        elif card.startswith('msra'):
            ref_x = caffe_inputs(photos, caffe_mean)
            r['input_reference'] = 'OpenCV %s cv2.imread + cv2.resize INTER_LINEAR, crop, mean image' % __import__('cv2').__version__
            run(os.path.join(HERE, 'caffe.py'), 'logits', '--prototxt', prototxt, '--caffemodel', caffemodel,
                '--input', x_path, '--out', z_path, py=PY)
            r['references'].append(compare('OpenCV dnn (Caffe importer) fc1000', y, np.load(z_path)))
            run(os.path.join(HERE, 'caffe.py'), 'logits', '--torch', '--prototxt', prototxt, '--caffemodel', caffemodel,
                '--input', x_path, '--out', z_path, py=PY)
            r['references'].append(compare('PyTorch port of Caffe layer semantics (caffe.py --torch)', y, np.load(z_path)))
        else:
            ref_x = np.concatenate([np.load(os.path.join(a.fbtorch_protocol, s + '.input.npy')) for s in stems])
            r['input_reference'] = "torch/image's C code (image.load, image.scale bicubic), fb.resnet.torch transforms"
            run(os.path.join(HERE, 'torch7.py'), 'logits', '--t7', a.t7, '--input', x_path, '--out', z_path, py=PY)
            r['references'].append(compare('PyTorch walk of the .t7 module tree (torch7.py logits)', y, np.load(z_path)))
        r['input_max_abs_diff'] = float(np.abs(x - ref_x).max())
        r['ok'] = r['input_max_abs_diff'] == 0 and all(c['rel_error'] <= 1e-4 and c['top5_equal'] for c in r['references'])
        print(json.dumps(r), flush=True)
        results.append(r)
    out = {'cpu': open('/proc/cpuinfo').read().split('model name')[1].split('\n')[0].strip(': '),
           'snzoo_commit': run('git', '-C', common.ROOT, 'rev-parse', '--short', 'HEAD').strip(),
           'all_ok': all(r['ok'] for r in results), 'results': results}
    with open(a.out, 'w') as fh:
        json.dump(out, fh, indent=1)
    sys.exit(0 if out['all_ok'] else 1)


if __name__ == '__main__':
    main()
