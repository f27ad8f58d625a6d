"""Makes the committed test fixtures under fixtures/ with PyTorch, torchvision and PIL.

Run with the system Python after `apt-get install -y python3-torch python3-torchvision python3-pil`:

    /usr/bin/python3 eval/reference/make_fixtures.py --photos DIR

DIR holds the scikit-image sample photos (the wheel's skimage/data/: chelsea.png, coffee.png,
astronaut.png, rocket.jpg, hubble_deep_field.jpg). CI never runs this script; it reads its outputs.
"""
import argparse
import io
import json
import os
import pickle
import struct
import sys

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from sn_reference import build, build_torchvision_bn, randomize, randomize_bn  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures')


def save_npy(path, arr):
    np.save(path, np.ascontiguousarray(arr))


def training_dict(model, arch, state_dict, epoch=100, optimizer=True):
    """The dict the SN training script saved (optionally with the optimizer state)."""
    d = {'epoch': epoch, 'model': arch, 'state_dict': state_dict, 'best_prec1': torch.tensor(77.49)}
    if not optimizer:
        return d
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # creates momentum buffers, as a real checkpoint has
    d['optimizer'] = opt.state_dict()
    return d


def prefixed(sd):
    return {'module.' + k: v for k, v in sd.items()}


MODELS = [
    # name, version, depth, using_bn, format, wrapped, module prefix, classes
    ('r18v1_bn_zip', 'v1', 18, True, 'zip', False, False, 10),
    ('r50v1_bn_legacy_wrapped', 'v1', 50, True, 'legacy', True, True, 10),
    ('r50v1_nobn_legacy', 'v1', 50, False, 'legacy', False, True, 10),
    ('r18v2_nobn_zip_wrapped', 'v2', 18, False, 'zip', True, True, 10),
    ('r50v2_bn_legacy_wrapped', 'v2', 50, True, 'legacy', True, True, 10),
    ('r34v2_bn_zip', 'v2', 34, True, 'zip', False, False, 10),
]
WIDTH = 4


def tiny_default_model():
    """The bundled default: a width-4 ResNet-50 v1 + SN with the 1000 ImageNet classes."""
    return randomize(build('v1', 50, width=4, num_classes=1000, using_bn=True), seed=7).eval()


def make_models():
    out = os.path.join(ROOT, 'models')
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(2, 3, 112, 112, generator=g)
    save_npy(os.path.join(out, 'input.npy'), x.numpy())
    manifest = []
    for i, (name, version, depth, using_bn, fmt, wrapped, prefix, classes) in enumerate(MODELS):
        model = randomize(build(version, depth, width=WIDTH, num_classes=classes, using_bn=using_bn), seed=100 + i)
        model.eval()
        with torch.no_grad():
            logits = model(x)
        sd = model.state_dict()
        obj = prefixed(sd) if prefix else sd
        arch = 'resnet%d%s_sn' % (depth, version)
        if wrapped:
            obj = training_dict(model, arch, obj, optimizer=(i == 1))
        path = os.path.join(out, name + '.pth')
        torch.save(obj, path, _use_new_zipfile_serialization=(fmt == 'zip'))
        save_npy(os.path.join(out, name + '.logits.npy'), logits.numpy())
        manifest.append({'name': name, 'version': version, 'depth': depth, 'width': WIDTH, 'using_bn': using_bn,
                         'format': fmt, 'wrapped': wrapped, 'module_prefix': prefix, 'num_classes': classes,
                         'keys': len(sd), 'arch': 'resnet%d%s-sn-w%d' % (depth, version, WIDTH)})
    # torchvision's BatchNorm ResNet-50 (its own classes, key names and forward), tiny width.
    model = randomize_bn(build_torchvision_bn(width=WIDTH, num_classes=10), seed=200).eval()
    with torch.no_grad():
        logits = model(x)
    sd = model.state_dict()
    torch.save(sd, os.path.join(out, 'tv_r50_bn_zip.pth'))
    save_npy(os.path.join(out, 'tv_r50_bn_zip.logits.npy'), logits.numpy())
    manifest.append({'name': 'tv_r50_bn_zip', 'version': 'v1', 'depth': 50, 'width': WIDTH, 'using_bn': True,
                     'format': 'zip', 'wrapped': False, 'module_prefix': False, 'num_classes': 10,
                     'keys': len(sd), 'arch': 'resnet50v1-bn-w%d' % WIDTH})
    with open(os.path.join(out, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)

    # The bundled default: a tiny ResNet-50 v1 + SN with the 1000 ImageNet classes, saved like the
    # release (legacy format, training dict, DataParallel prefix).
    model = tiny_default_model()
    torch.save(training_dict(model, 'resnet50v1_sn', prefixed(model.state_dict()), optimizer=False),
               os.path.join(out, 'tiny-resnet50v1-sn.pth'), _use_new_zipfile_serialization=False)


def make_storage_cases():
    """Tensors sharing one storage, views at offsets, non-contiguous strides, other dtypes."""
    out = os.path.join(ROOT, 'checkpoints')
    os.makedirs(out, exist_ok=True)
    base = torch.arange(20, dtype=torch.float32)
    m = torch.arange(12, dtype=torch.float32).view(3, 4) * 0.5
    cube = torch.arange(24, dtype=torch.float64).view(2, 3, 4)
    sd = {
        'shared.a': base[:6].view(2, 3),
        'shared.b': base[6:],
        'transposed': m.t(),
        'column': m[1:, 2],
        'cube.permuted': cube.permute(2, 0, 1),
        'half': torch.tensor([1.5, -2.25, 65504.0], dtype=torch.float16),
        'long': torch.tensor([3, -4, 1 << 40], dtype=torch.int64),
        'scalar': torch.tensor(2.5),
        'empty': torch.zeros(0, 3),
    }
    expected = {k: {'shape': list(v.shape), 'values': v.double().flatten().tolist()} for k, v in sd.items()}
    with open(os.path.join(out, 'storage_cases.json'), 'w') as f:
        json.dump(expected, f, indent=1)
    torch.save(sd, os.path.join(out, 'storage_cases_zip.pth'))
    torch.save(sd, os.path.join(out, 'storage_cases_legacy.pth'), _use_new_zipfile_serialization=False)


class Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def legacy_bytes(obj_pickle, storages):
    """A legacy torch.save stream around a hand-made object pickle.
    storages: list of (key, numel_written, raw bytes)."""
    f = io.BytesIO()
    pickle.dump(0x1950a86a20f9469cfc6c, f, protocol=2)
    pickle.dump(1001, f, protocol=2)
    pickle.dump({'protocol_version': 1001, 'little_endian': True,
                 'type_sizes': {'short': 2, 'int': 4, 'long': 4}}, f, protocol=2)
    f.write(obj_pickle)
    pickle.dump([k for k, _, _ in storages], f, protocol=2)
    for _, n, raw in storages:
        f.write(struct.pack('<q', n))
        f.write(raw)
    return f.getvalue()


class _Marker:
    pass


def tensor_pickle(offset, size, stride, numel):
    """An object pickle {'w': _rebuild_tensor_v2(storage(numel), offset, size, stride)}."""
    marker = _Marker()

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is marker:
                return ('storage', torch.FloatStorage, '0', 'cpu', numel, None)
            return None

    class Rebuild:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (marker, offset, tuple(size), tuple(stride), False, {}))

    f = io.BytesIO()
    P(f, protocol=2).dump({'w': Rebuild()})
    return f.getvalue()


def make_hostile():
    out = os.path.join(ROOT, 'hostile')
    os.makedirs(out, exist_ok=True)
    torch.save({'w': torch.zeros(2), 'payload': Evil(os.system, 'echo pwned')},
               os.path.join(out, 'os_system_legacy.pth'), _use_new_zipfile_serialization=False)
    import builtins
    torch.save({'payload': Evil(builtins.eval, '1+1')}, os.path.join(out, 'builtins_eval_zip.pth'))
    with open(os.path.join(out, 'posix_system.pkl'), 'wb') as f:
        f.write(b'\x80\x02cposix\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.')
    raw = struct.pack('<4f', 1, 2, 3, 4)
    with open(os.path.join(out, 'offset_outside_storage.pth'), 'wb') as f:
        f.write(legacy_bytes(tensor_pickle(100, [2], [1], 4), [('0', 4, raw)]))
    with open(os.path.join(out, 'stride_outside_storage.pth'), 'wb') as f:
        f.write(legacy_bytes(tensor_pickle(0, [3, 2], [2, 1000], 4), [('0', 4, raw)]))
    with open(os.path.join(out, 'expanded_view.pth'), 'wb') as f:
        f.write(legacy_bytes(tensor_pickle(0, [1 << 20, 1 << 20], [0, 0], 4), [('0', 4, raw)]))
    with open(os.path.join(out, 'huge_storage_count.pth'), 'wb') as f:
        f.write(legacy_bytes(tensor_pickle(0, [2], [1], 4), [('0', 1 << 40, raw)]))
    with open(os.path.join(out, 'valid_hand_made.pth'), 'wb') as f:
        f.write(legacy_bytes(tensor_pickle(1, [3], [1], 4), [('0', 4, raw)]))
    with open(os.path.join(out, 'not_a_checkpoint.pth'), 'wb') as f:
        f.write(b'GIF89a this is not a checkpoint')
    with open(os.path.join(out, 'empty.pth'), 'wb') as f:
        pass


def make_gn():
    """A tiny GroupNorm ResNet (torchvision's ResNet class with timm's GroupNorm layer: stem width
    4, one bottleneck per stage, 2 groups, 10 classes; timm's own ResNet class fixes the stem at
    64 channels), saved as a state dict, with its logits on the fixtures' input. Needs timm (a venv
    with --system-site-packages and `pip install timm`). The full-size check against timm's
    resnet50_gn itself is eval/reference/gn_parity.py."""
    import functools
    import timm
    from timm.layers import GroupNorm
    out = os.path.join(ROOT, 'models')
    x = torch.from_numpy(np.load(os.path.join(out, 'input.npy')))
    model = build_torchvision_bn((1, 1, 1, 1), width=4, num_classes=10, norm_layer=functools.partial(GroupNorm, num_groups=2))
    randomize_bn(model, seed=300).eval()
    with torch.no_grad():
        logits = model(x)
    sd = model.state_dict()
    name = 'timm_r14_gn_w4_g2'
    torch.save(sd, os.path.join(out, name + '.pth'))
    save_npy(os.path.join(out, name + '.logits.npy'), logits.numpy())
    path = os.path.join(out, 'manifest.json')
    manifest = [m for m in json.load(open(path)) if m['name'] != name]
    manifest.append({'name': name, 'version': 'v1', 'depth': 14, 'width': 4, 'using_bn': False, 'format': 'zip',
                     'wrapped': False, 'module_prefix': False, 'num_classes': 10, 'keys': len(sd), 'groups': 2,
                     'arch': 'resnet14v1-gn-l1.1.1.1-w4-g2', 'timm': timm.__version__})
    with open(path, 'w') as f:
        json.dump(manifest, f, indent=1)


def make_bicubic():
    """timm's evaluation transform of the GroupNorm card (Resize(238, bicubic), CenterCrop(224),
    ToTensor, Normalize) on the fixture photos: the sha256 of each 8-bit crop and of each float32
    tensor (little-endian bytes), for a bit-exact check without committing the crops. Needs timm."""
    import hashlib
    import timm
    from timm.data import create_transform, resolve_data_config
    transform = create_transform(**resolve_data_config({}, model=timm.create_model('resnet50_gn.a1h_in1k', pretrained=False)))
    crop_only = T.Compose(transform.transforms[:2])
    rows = []
    for name in sorted(os.listdir(os.path.join(ROOT, 'images'))):
        path = os.path.join(ROOT, 'images', name)
        if not name.lower().endswith(('.jpg', '.jpeg', '.png')):
            continue
        img = pil_loader(path)
        crop = np.asarray(crop_only(img), dtype=np.uint8)
        x = transform(img).numpy().astype('<f4')
        rows.append({'image': name, 'crop_sha256': hashlib.sha256(crop.tobytes()).hexdigest(),
                     'tensor_sha256': hashlib.sha256(x.tobytes()).hexdigest()})
    out = {'transform': str(transform).replace('\n', ' '), 'timm': timm.__version__, 'pillow': Image.__version__, 'images': rows}
    with open(os.path.join(ROOT, 'images', 'timm_gn_protocol.json'), 'w') as f:
        json.dump(out, f, indent=1)


def make_zip_names():
    """torch.save archives whose entry prefix (the file's stem) is 1..200 characters long, in one
    tar.gz: every file torch.save writes must load (a 21-character prefix once did not)."""
    import tarfile
    import tempfile
    sd = {'w': torch.tensor([1.0, 2.0, 3.0])}
    out = os.path.join(ROOT, 'checkpoints', 'zip_names.tar.gz')
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(out, 'w:gz') as tar:
        for n in range(1, 201):
            name = 'c' * n + '.pth'
            torch.save(sd, os.path.join(tmp, name))
            tar.add(os.path.join(tmp, name), arcname=name)


# --------------------------------------------------------------------------------------------
# Photos and torchvision preprocessing

EVAL = T.Compose([T.Resize(256), T.CenterCrop(224)])
NORMALIZE = T.Compose([T.ToTensor(), T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])


def pil_loader(path):
    # torchvision.datasets.folder.pil_loader
    with open(path, 'rb') as f:
        img = Image.open(f)
        return img.convert('RGB')


def make_photos(photos):
    out = os.path.join(ROOT, 'images')
    os.makedirs(out, exist_ok=True)
    src = {n: Image.open(os.path.join(photos, n)).convert('RGB') for n in
           ('chelsea.png', 'coffee.png', 'astronaut.png', 'rocket.jpg', 'hubble_deep_field.jpg')}
    variants = {
        'chelsea_420.jpg': lambda: src['chelsea.png'].save(p, quality=90, subsampling=2),
        'coffee_444.jpg': lambda: src['coffee.png'].resize((400, 267)).save(p, quality=95, subsampling=0),
        'astronaut_progressive.jpg': lambda: src['astronaut.png'].save(p, quality=85, progressive=True),
        'rocket_gray.jpg': lambda: src['rocket.jpg'].convert('L').save(p, quality=90),
        'coffee_cmyk.jpg': lambda: src['coffee.png'].resize((300, 200)).convert('CMYK').save(p, quality=90),
        'chelsea_small.jpg': lambda: src['chelsea.png'].resize((120, 90), Image.BICUBIC).save(p, quality=92),
        'hubble_odd.jpg': lambda: src['hubble_deep_field.jpg'].resize((517, 333), Image.BICUBIC).save(p, quality=88, subsampling=1),
        'rocket_wide.jpg': lambda: src['rocket.jpg'].crop((0, 200, 427, 260)).resize((1000, 60)).save(p, quality=90),
        'astronaut_tall.jpg': lambda: src['astronaut.png'].crop((200, 0, 230, 512)).save(p, quality=90),
        'chelsea_png.JPEG': lambda: src['chelsea.png'].resize((201, 151)).save(p, format='PNG'),
        'coffee_palette.png': lambda: src['coffee.png'].resize((260, 173)).convert('P', palette=Image.ADAPTIVE).save(p),
        'astronaut_rgba.png': lambda: src['astronaut.png'].resize((160, 160)).convert('RGBA').save(p),
    }
    manifest = []
    for name, make in variants.items():
        p = os.path.join(out, name)
        make()
        img = pil_loader(p)
        manifest.append({'image': name, 'size': list(Image.open(p).size), 'mode': Image.open(p).mode,
                         'resized': list(T.Resize(256)(img).size)})
    os.makedirs(os.path.join(out, 'expected'), exist_ok=True)
    for m in manifest:
        img = pil_loader(os.path.join(out, m['image']))
        EVAL(img).save(os.path.join(out, 'expected', m['image'].rsplit('.', 1)[0] + '.crop.png'))
        # The decoded pixels before any resize: lets the tests tell decoder from resize error.
        m['decoded_sha256'] = __import__('hashlib').sha256(img.tobytes()).hexdigest()
    with open(os.path.join(out, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
    # ToTensor + Normalize for every 8-bit value and channel: [3, 256] float32.
    table = np.zeros((3, 256), dtype=np.float32)
    for v in range(256):
        t = NORMALIZE(Image.new('RGB', (1, 1), (v, v, v)))
        table[:, v] = t[:, 0, 0].numpy()
    save_npy(os.path.join(out, 'normalize_table.npy'), table)


def make_classify(photos):
    """Expected logits of the bundled tiny model on the bundled photos, preprocessed by torchvision."""
    out = os.path.join(ROOT, 'classify')
    os.makedirs(out, exist_ok=True)
    model = tiny_default_model()
    names = ['chelsea_420.jpg', 'coffee_444.jpg', 'rocket_gray.jpg', 'coffee_cmyk.jpg']
    x = torch.stack([NORMALIZE(EVAL(pil_loader(os.path.join(ROOT, 'images', n)))) for n in names])
    with torch.no_grad():
        logits = model(x)
    save_npy(os.path.join(out, 'logits.npy'), logits.numpy())
    top5 = torch.topk(logits, 5).indices.tolist()
    with open(os.path.join(out, 'expected.json'), 'w') as f:
        json.dump({'images': names, 'top5': top5}, f, indent=1)


EVALSET = {'n02123045': ['chelsea_420.jpg', 'chelsea_small.jpg', 'chelsea_png.JPEG'],   # tabby cat
           'n07920052': ['coffee_444.jpg', 'coffee_cmyk.jpg', 'coffee_palette.png'],    # espresso
           'n04008634': ['rocket_gray.jpg', 'rocket_wide.jpg']}                         # projectile, missile


def make_evalset():
    """The bundled labelled sample set of `snzoo eval`: an ImageFolder of links to the photos."""
    for wnid, names in EVALSET.items():
        d = os.path.join(ROOT, 'evalset', wnid)
        os.makedirs(d, exist_ok=True)
        for n in names:
            link = os.path.join(d, n)
            if not os.path.lexists(link):
                os.symlink(os.path.join('..', '..', 'images', n), link)


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--photos', required=True)
    ap.add_argument('--only', choices=['zip_names', 'gn', 'bicubic'], help='make only this fixture')
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.only == 'zip_names':
        make_zip_names()
        sys.exit(0)
    if a.only == 'gn':
        make_gn()
        sys.exit(0)
    if a.only == 'bicubic':
        make_bicubic()
        sys.exit(0)
    make_models()
    make_storage_cases()
    make_hostile()
    make_zip_names()
    make_gn()
    make_bicubic()
    make_photos(a.photos)
    make_classify(a.photos)
    make_evalset()
    print('fixtures written under', os.path.abspath(ROOT))
