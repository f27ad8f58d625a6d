"""Reference work for the MSRA Caffe ResNet baseline (KaimingHe/deep-residual-networks).

Run with a Python that has numpy, torch, opencv-python(-headless) (cv2.dnn), protobuf and
grpcio-tools, e.g. /opt/timmvenv/bin/python:

  caffe.py prototxt --depth 50 [--out P] [--compare REAL.prototxt]
      MSRA deploy prototxt for ResNet-50/101/152 in KaimingHe's exact layout, names and
      formatting (byte-identical to prototxt/ResNet-{50,101,152}-deploy.prototxt).
  caffe.py fixtures
      fixtures/frameworks/caffe/: tiny.prototxt, tiny.caffemodel (NetParameter.layer, BlobProto.shape),
      tiny_v1layers.caffemodel (legacy NetParameter.layers / V1LayerParameter, 4-D num/channels/height/width
      blobs; conv/fc/pool/relu/eltwise/softmax only: V1 has no BatchNorm/Scale type), mean.binaryproto
      (1x3x61x67 BGR per-pixel mean, legacy 4-D fields), image.npy (the uint8 BGR NCHW image),
      input.npy (image - mean, float32 NCHW), logits.npy (OpenCV dnn fc1000), manifest.json.
  caffe.py full --out DIR
      ResNet-50-deploy.prototxt, ResNet-50-model.caffemodel (random, BN statistics calibrated on a
      synthetic input so activations stay sane) and ResNet_mean.binaryproto (1x3x224x224, legacy fields,
      like the real file) in DIR.
  caffe.py logits --prototxt P --caffemodel M --input X.npy --out Y.npy [--torch]
      Pre-softmax logits (the fc1000 blob) of an NCHW float32 input, by OpenCV dnn or (--torch) by the
      PyTorch implementation of the Caffe layer semantics in this file.
  caffe.py protocol
      fixtures/images/caffe_protocol.json: cv2.imread(BGR) -> short side 256 (long = 256*long//short)
      with cv2.resize INTER_LINEAR -> centre crop 224 at ((dim-224)//2) for every photo in common.PHOTOS.
  caffe.py resize-check
      Checks the numpy port of cv2.resize(INTER_LINEAR, CV_8U) (resize_linear_u8) against cv2.

caffe.proto is taken from --caffe-proto, $CAFFE_PROTO, or the BVLC/caffe mirror
(/work/.mirror/BVLC+caffe/repo, `git show HEAD:src/caffe/proto/caffe.proto`) and compiled with
grpc_tools.protoc into /tmp/snzoo_caffe_proto/<hash>/.
"""
import argparse
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OUT_DIR = os.path.join(common.FRAMEWORKS, 'caffe')
CAFFE_MIRROR = '/work/.mirror/BVLC+caffe/repo'
MSRA_MIRROR = '/work/.mirror/KaimingHe+deep-residual-networks/repo'
DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
BN_FACTOR = 999.98          # BatchNorm blobs[2]: Caffe divides blobs[0] and blobs[1] by it
PROTO_ARG = [None]


# ----------------------------------------------------------------------------------------------
# caffe.proto
# ----------------------------------------------------------------------------------------------

def _caffe_proto_text(path=None):
    path = path or PROTO_ARG[0] or os.environ.get('CAFFE_PROTO')
    if path:
        with open(path, 'rb') as f:
            return f.read()
    return subprocess.run(['git', '-C', CAFFE_MIRROR, 'show', 'HEAD:src/caffe/proto/caffe.proto'],
                          check=True, capture_output=True).stdout


_PB2 = []


def pb2():
    """The caffe_pb2 module compiled from caffe.proto (cached under /tmp)."""
    if _PB2:
        return _PB2[0]
    text = _caffe_proto_text()
    d = os.path.join(tempfile.gettempdir(), 'snzoo_caffe_proto', hashlib.sha256(text).hexdigest()[:12])
    mod = os.path.join(d, 'caffe_pb2.py')
    if not os.path.exists(mod):
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, 'caffe.proto'), 'wb') as f:
            f.write(text)
        subprocess.run([sys.executable, '-m', 'grpc_tools.protoc', '-I', d, '--python_out=' + d,
                        os.path.join(d, 'caffe.proto')], check=True)
    spec = importlib.util.spec_from_file_location('caffe_pb2', mod)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    _PB2.append(m)
    return m


# ----------------------------------------------------------------------------------------------
# Deploy prototxt generator (KaimingHe's layout, names and formatting)
# ----------------------------------------------------------------------------------------------

class L:
    """One prototxt layer: bottoms, top, name, type and one optional parameter block."""

    def __init__(self, name, type_, bottoms, top, block=None, fields=(), top_first=False):
        self.name, self.type, self.bottoms, self.top = name, type_, list(bottoms), top
        self.block, self.fields, self.top_first = block, list(fields), top_first

    def text(self):
        s = 'layer {\n'
        bottoms = ''.join('\tbottom: "%s"\n' % b for b in self.bottoms)
        top = '\ttop: "%s"\n' % self.top
        s += (top + bottoms) if self.top_first else (bottoms + top)
        s += '\tname: "%s"\n\ttype: "%s"\n' % (self.name, self.type)
        if self.block:
            s += '\t%s {\n' % self.block
            for k, v in self.fields:
                s += '\t\t%s: %s\n' % (k, v)
            s += '\t}\n'
        return s + '}\n\n'


def block_names(stage, n, depth):
    """KaimingHe's block suffixes: letters (res4a..res4f in ResNet-50), except stages 3 and 4 of
    ResNet-101/152 which are a, b1, b2, ... (res4b22, res3b7)."""
    if depth in (101, 152) and stage in (3, 4):
        return ['a'] + ['b%d' % i for i in range(1, n)]
    if n > 26:
        raise ValueError('more than 26 blocks need numbered names')
    return [chr(ord('a') + i) for i in range(n)]


def msra_layers(layers, width=64, classes=1000, depth=None, conv1_bias=None, global_pool=False):
    """The layer list of an MSRA ResNet v1 (bottleneck, stride on the 1x1 branch2a and branch1)."""
    conv1_bias = (depth == 50 or depth is None) if conv1_bias is None else conv1_bias
    out = []

    def conv(name, bottom, num, k, pad, stride, bias=False):
        f = [('num_output', num), ('kernel_size', k), ('pad', pad), ('stride', stride)]
        if not bias:
            f.append(('bias_term', 'false'))
        out.append(L(name, 'Convolution', [bottom], name, 'convolution_param', f))

    def bn_scale(bn, sc, blob):
        out.append(L(bn, 'BatchNorm', [blob], blob, 'batch_norm_param', [('use_global_stats', 'true')]))
        out.append(L(sc, 'Scale', [blob], blob, 'scale_param', [('bias_term', 'true')]))

    # ResNet-101/152 write `top` before `bottom` in conv1_relu and the branch ReLUs (not in res*_relu)
    top_first = depth in (101, 152)

    def relu(name, blob, tf=False):
        out.append(L(name, 'ReLU', [blob], blob, top_first=tf))

    conv('conv1', 'data', width, 7, 3, 2, bias=conv1_bias)
    bn_scale('bn_conv1', 'scale_conv1', 'conv1')
    relu('conv1_relu', 'conv1', top_first)
    out.append(L('pool1', 'Pooling', ['conv1'], 'pool1', 'pooling_param',
                 [('kernel_size', 3), ('stride', 2), ('pool', 'MAX')]))
    x = 'pool1'
    for si, n in enumerate(layers):
        stage = si + 2
        planes = width << si
        outc = 4 * planes
        for bi, b in enumerate(block_names(stage, n, depth)):
            p = '%d%s' % (stage, b)
            stride = 2 if (bi == 0 and si > 0) else 1
            if bi == 0:
                conv('res%s_branch1' % p, x, outc, 1, 0, stride)
                bn_scale('bn%s_branch1' % p, 'scale%s_branch1' % p, 'res%s_branch1' % p)
                short = 'res%s_branch1' % p
            else:
                short = x
            prev = x
            for br, (num, k, pad, st) in zip('abc', [(planes, 1, 0, stride), (planes, 3, 1, 1), (outc, 1, 0, 1)]):
                name = 'res%s_branch2%s' % (p, br)
                conv(name, prev, num, k, pad, st)
                bn_scale('bn%s_branch2%s' % (p, br), 'scale%s_branch2%s' % (p, br), name)
                if br != 'c':
                    relu(name + '_relu', name, top_first)
                prev = name
            out.append(L('res' + p, 'Eltwise', [short, prev], 'res' + p))
            relu('res%s_relu' % p, 'res' + p)
            x = 'res' + p
    if global_pool:
        out.append(L('pool5', 'Pooling', [x], 'pool5', 'pooling_param', [('pool', 'AVE'), ('global_pooling', 'true')]))
    else:
        out.append(L('pool5', 'Pooling', [x], 'pool5', 'pooling_param',
                     [('kernel_size', 7), ('stride', 1), ('pool', 'AVE')]))
    out.append(L('fc1000', 'InnerProduct', ['pool5'], 'fc1000', 'inner_product_param', [('num_output', classes)]))
    out.append(L('prob', 'Softmax', ['fc1000'], 'prob'))
    return out


def deploy_prototxt(name, input_shape, layers_):
    s = 'name: "%s"\ninput: "data"\n' % name
    for d in input_shape:
        s += 'input_dim: %d\n' % d
    s += '\n'
    return s + ''.join(lay.text() for lay in layers_)


def msra_prototxt(depth):
    return deploy_prototxt('ResNet-%d' % depth, (1, 3, 224, 224), msra_layers(DEPTHS[depth], depth=depth))


def tiny_prototxt():
    lay = msra_layers(common.TINY_LAYERS, width=common.TINY_WIDTH, classes=common.TINY_CLASSES,
                      conv1_bias=True, global_pool=True)
    return deploy_prototxt('tiny-ResNet-MSRA', common.TINY_INPUT_SHAPE, lay)


def real_prototxt(depth):
    try:
        return subprocess.run(['git', '-C', MSRA_MIRROR, 'show', 'HEAD:prototxt/ResNet-%d-deploy.prototxt' % depth],
                              check=True, capture_output=True, text=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def compare_prototxt(mine, real):
    if real == mine:
        return 'byte-identical'
    import difflib
    d = list(difflib.unified_diff(real.splitlines(), mine.splitlines(), 'real', 'generated', lineterm='', n=1))
    return '%d diff lines:\n%s' % (len(d), '\n'.join(d[:80]))


# ----------------------------------------------------------------------------------------------
# Blobs / caffemodel writing
# ----------------------------------------------------------------------------------------------

def parse_prototxt(text):
    from google.protobuf import text_format
    net = pb2().NetParameter()
    text_format.Merge(text, net)
    return net


def set_blob(bp, arr, legacy=False):
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if legacy:
        # Legacy 4-D blobs are right-aligned: bias (1,1,1,N), InnerProduct weight (1,1,M,N).
        dims = [1] * (4 - arr.ndim) + list(arr.shape)
        bp.num, bp.channels, bp.height, bp.width = dims
    else:
        bp.shape.dim.extend(arr.shape)
    bp.data.extend(arr.ravel().tolist())


def blob_array(bp):
    data = np.asarray(bp.data, dtype=np.float32)
    if bp.HasField('shape'):
        return data.reshape(tuple(bp.shape.dim))
    dims = (bp.num, bp.channels, bp.height, bp.width)
    return data.reshape(dims)


def conv_geom(lp):
    cp = lp.convolution_param

    def one(rep, h, w, default):
        if lp.convolution_param.HasField(h):
            return getattr(cp, h), getattr(cp, w)
        if len(rep):
            return rep[0], rep[-1]
        return default, default
    k = one(cp.kernel_size, 'kernel_h', 'kernel_w', None)
    s = one(cp.stride, 'stride_h', 'stride_w', 1)
    p = one(cp.pad, 'pad_h', 'pad_w', 0)
    return k, s, p, cp.group or 1


def random_blobs(net, seed, calib_input, bn_factor=BN_FACTOR):
    """Random parameters for every layer of `net` (a parsed deploy NetParameter):
    He-init convolutions and fc, Scale gamma/beta from common.bn_params, and BatchNorm mean/var set
    from the batch statistics of calib_input at that layer (perturbed, so that they are not exactly
    the batch statistics) times bn_factor, with blobs[2] = [bn_factor]."""
    r = common.rng(seed)
    blobs = {}
    shapes = infer_channels(net)
    for lp in net.layer:
        if lp.type == 'Convolution':
            (kh, kw), _, _, g = conv_geom(lp)
            cin = shapes[lp.bottom[0]]
            cout = lp.convolution_param.num_output
            w = common.he(r, (cout, cin // g, kh, kw), cin // g * kh * kw)
            bl = [w]
            if lp.convolution_param.bias_term:
                bl.append((0.1 * r.standard_normal(cout)).astype(np.float32))
            blobs[lp.name] = bl
        elif lp.type == 'InnerProduct':
            cin = shapes[lp.bottom[0]]
            cout = lp.inner_product_param.num_output
            blobs[lp.name] = [common.he(r, (cout, cin), cin) * np.float32(0.5),
                              (0.1 * r.standard_normal(cout)).astype(np.float32)]
        elif lp.type == 'Scale':
            c = shapes[lp.bottom[0]]
            gamma, beta, _, _ = common.bn_params(r, c)
            blobs[lp.name] = [gamma, beta]
    # BatchNorm statistics: calibrated layer by layer (the Scale layers already have their blobs).
    r2 = common.rng(seed + 1)

    def hook(lp, x):
        if lp.type != 'BatchNorm' or lp.name in blobs:
            return
        xm = x.double()
        m = to_numpy(xm.mean(dim=(0, 2, 3)))
        v = to_numpy(xm.var(dim=(0, 2, 3), unbiased=False))
        c = m.shape[0]
        mean = m + 0.2 * np.sqrt(v) * r2.standard_normal(c)
        var = v * (0.5 + r2.random(c)) + 1e-3
        f = np.float32(bn_factor)
        blobs[lp.name] = [(mean * f).astype(np.float32), (var * f).astype(np.float32), np.array([f], np.float32)]
    torch_forward(net, blobs, calib_input, hook=hook)
    return blobs


def infer_channels(net):
    """Channels of each blob (name -> C) of a deploy net with `input_dim`s or an Input layer."""
    ch = {}
    if len(net.input):
        dims = list(net.input_dim) or list(net.input_shape[0].dim)
        ch[net.input[0]] = dims[1]
    for lp in net.layer:
        if lp.type == 'Input':
            ch[lp.top[0]] = lp.input_param.shape[0].dim[1]
        elif lp.type == 'Convolution':
            ch[lp.top[0]] = lp.convolution_param.num_output
        elif lp.type == 'InnerProduct':
            ch[lp.top[0]] = lp.inner_product_param.num_output
        else:
            for t in lp.top:
                ch[t] = ch[lp.bottom[0]]
    return ch


def build_caffemodel(net, blobs):
    """NetParameter with the new `layer` field: each deploy layer (with phase TEST, as Net::ToProto
    writes it) plus its blobs in BlobProto.shape form."""
    p = pb2()
    model = p.NetParameter()
    model.name = net.name
    for lp in net.layer:
        out = model.layer.add()
        out.CopyFrom(lp)
        out.phase = p.TEST
        for a in blobs.get(lp.name, []):
            set_blob(out.blobs.add(), a)
    return model


V1_TYPES = {'Convolution': 'CONVOLUTION', 'InnerProduct': 'INNER_PRODUCT', 'Pooling': 'POOLING',
            'ReLU': 'RELU', 'Eltwise': 'ELTWISE', 'Softmax': 'SOFTMAX'}


def build_v1_caffemodel(net, blobs):
    """Legacy NetParameter.layers (V1LayerParameter, enum types, 4-D legacy blobs). V1LayerParameter's
    LayerType enum has no BatchNorm or Scale, so those layers (and their blobs) are left out."""
    p = pb2()
    model = p.NetParameter()
    model.name = net.name
    skipped = []
    for lp in net.layer:
        if lp.type not in V1_TYPES:
            skipped.append(lp.name)
            continue
        v = model.layers.add()
        v.name = lp.name
        v.type = getattr(p.V1LayerParameter, V1_TYPES[lp.type])
        v.bottom.extend(lp.bottom)
        v.top.extend(lp.top)
        for field in ('convolution_param', 'pooling_param', 'inner_product_param', 'eltwise_param'):
            if lp.HasField(field):
                getattr(v, field).CopyFrom(getattr(lp, field))
        for a in blobs.get(lp.name, []):
            set_blob(v.blobs.add(), a, legacy=True)
    return model, skipped


def mean_blobproto(mean_chw):
    """A per-pixel mean as compute_image_mean writes it: BlobProto num=1, channels, height, width
    (legacy fields, no shape) and float data."""
    bp = pb2().BlobProto()
    c, h, w = mean_chw.shape
    bp.num, bp.channels, bp.height, bp.width = 1, c, h, w
    bp.data.extend(np.ascontiguousarray(mean_chw, np.float32).ravel().tolist())
    return bp


def synthetic_mean(h, w, seed):
    """Smooth deterministic BGR per-pixel mean with values ~100-130 (the real ResNet_mean's channel
    means are B 103.06, G 115.90, R 123.15)."""
    r = common.rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing='ij')
    base = np.array([107.0, 116.0, 123.0])
    out = np.empty((3, h, w))
    for c in range(3):
        a, b, ph = r.random(3)
        out[c] = base[c] + 5.0 * np.sin(2 * np.pi * (a * xx + b * yy) + 6.28 * ph) - 3.0 * (yy - 0.5) ** 2 * 4
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# PyTorch implementation of the Caffe layer semantics (inference)
# ----------------------------------------------------------------------------------------------

def caffe_pool_out(size, k, s, p):
    """PoolingLayer::Reshape: ceil, then drop a last window that would start in the padding."""
    out = int(np.ceil(float(size + 2 * p - k) / s)) + 1
    if p and (out - 1) * s >= size + p:
        out -= 1
    return out


def torch_pool(x, pp):
    torch = _torch()
    import torch.nn.functional as F
    H, W = x.shape[2], x.shape[3]
    if pp.global_pooling:
        kh, kw, sh, sw, ph, pw = H, W, 1, 1, 0, 0
    else:
        kh = pp.kernel_h if pp.HasField('kernel_h') else pp.kernel_size
        kw = pp.kernel_w if pp.HasField('kernel_w') else pp.kernel_size
        sh = pp.stride_h if pp.HasField('stride_h') else pp.stride
        sw = pp.stride_w if pp.HasField('stride_w') else pp.stride
        ph = pp.pad_h if pp.HasField('pad_h') else pp.pad
        pw = pp.pad_w if pp.HasField('pad_w') else pp.pad
    oh, ow = caffe_pool_out(H, kh, sh, ph), caffe_pool_out(W, kw, sw, pw)
    if pp.pool == pb2().PoolingParameter.MAX:
        # windows are clipped to the image: pad with -inf up to the last window's end
        rb, rr = max(0, (oh - 1) * sh + kh - H - ph), max(0, (ow - 1) * sw + kw - W - pw)
        xp = F.pad(x, (pw, rr, ph, rb), value=float('-inf'))
        return F.max_pool2d(xp, (kh, kw), (sh, sw))[:, :, :oh, :ow]
    if pp.pool == pb2().PoolingParameter.AVE:
        rb, rr = max(0, (oh - 1) * sh + kh - H - ph), max(0, (ow - 1) * sw + kw - W - pw)
        xp = F.pad(x, (pw, rr, ph, rb), value=0.0)
        s = F.avg_pool2d(xp, (kh, kw), (sh, sw), divisor_override=1)[:, :, :oh, :ow]
        # pool_size counts the padding but not what lies beyond height + pad
        hs = np.arange(oh) * sh - ph
        he = np.minimum(hs + kh, H + ph)
        ws = np.arange(ow) * sw - pw
        we = np.minimum(ws + kw, W + pw)
        area = np.outer(he - hs, we - ws)
        return s / to_torch(area, x.dtype)
    raise NotImplementedError('pooling method %d' % pp.pool)


def _torch():
    """import torch, silencing the numpy-2 ABI traceback that torch 1.13 prints at import in the timm
    venv (harmless: this file never uses torch's numpy bridge)."""
    if 'torch' in sys.modules:
        return sys.modules['torch']
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import torch
        to_torch(np.zeros((1, 1)), torch.float64)     # torch's lazy numpy init prints it on first use
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    return torch


def to_torch(a, dtype):
    """numpy -> torch without torch's numpy bridge (torch 1.13 in the timm venv was built against
    numpy 1.x and cannot use numpy 2 arrays)."""
    torch = _torch()
    npd = {torch.float64: np.float64, torch.float32: np.float32}[dtype]
    a = np.ascontiguousarray(a, dtype=npd)
    if a.size == 0:
        return torch.zeros(a.shape, dtype=dtype)
    return torch.frombuffer(bytearray(a.tobytes()), dtype=dtype).reshape(a.shape)


def to_numpy(t):
    return np.asarray(t.detach().cpu().double().tolist(), dtype=np.float64).reshape(tuple(t.shape))


def torch_forward(net, blobs, x, dtype=None, hook=None, outputs=('fc1000',)):
    """Runs a parsed deploy net on NCHW input x (numpy) with Caffe's TEST-phase semantics.
    blobs: name -> list of numpy arrays (Caffe order). Returns {blob name: numpy} for `outputs`."""
    torch = _torch()
    import torch.nn.functional as F
    dtype = dtype or torch.float64
    p = pb2()
    inp = net.input[0] if len(net.input) else 'data'
    t = {inp: to_torch(x, dtype)}
    got = {}
    for lp in net.layer:
        if lp.type == 'Input':
            continue
        xin = t[lp.bottom[0]]
        if hook is not None:
            hook(lp, xin)
        bl = [to_torch(np.asarray(b, np.float32), dtype) for b in blobs.get(lp.name, [])]
        ty = lp.type
        if ty == 'Convolution':
            (kh, kw), (sh, sw), (ph, pw), g = conv_geom(lp)
            w = bl[0].reshape(lp.convolution_param.num_output, -1, kh, kw)
            b = bl[1].reshape(-1) if lp.convolution_param.bias_term else None
            y = F.conv2d(xin, w, b, (sh, sw), (ph, pw), 1, g)
        elif ty == 'BatchNorm':
            f = float(np.float32(blobs[lp.name][2].ravel()[0]))
            # Caffe: scale_factor = blobs[2] == 0 ? 0 : 1 / blobs[2], computed in Dtype (float32)
            sf = 0.0 if f == 0 else float(np.float32(1) / np.float32(f))
            mean = bl[0].reshape(-1) * sf
            var = bl[1].reshape(-1) * sf
            eps = lp.batch_norm_param.eps
            y = (xin - mean[None, :, None, None]) / torch.sqrt(var + eps)[None, :, None, None]
        elif ty == 'Scale':
            y = xin * bl[0].reshape(1, -1, 1, 1)
            if lp.scale_param.bias_term:
                y = y + bl[1].reshape(1, -1, 1, 1)
        elif ty == 'ReLU':
            ns = lp.relu_param.negative_slope
            y = torch.where(xin > 0, xin, xin * ns) if ns else torch.relu(xin)
        elif ty == 'Pooling':
            y = torch_pool(xin, lp.pooling_param)
        elif ty == 'Eltwise':
            ep = lp.eltwise_param
            xs = [t[b] for b in lp.bottom]
            if ep.operation == p.EltwiseParameter.SUM:
                co = list(ep.coeff) or [1.0] * len(xs)
                y = sum(c * v for c, v in zip(co, xs))
            elif ep.operation == p.EltwiseParameter.PROD:
                y = xs[0]
                for v in xs[1:]:
                    y = y * v
            else:
                y = xs[0]
                for v in xs[1:]:
                    y = torch.maximum(y, v)
        elif ty == 'InnerProduct':
            w = bl[0].reshape(lp.inner_product_param.num_output, -1)
            y = xin.reshape(xin.shape[0], -1) @ w.t()
            if lp.inner_product_param.bias_term:
                y = y + bl[1].reshape(-1)
        elif ty == 'Softmax':
            y = torch.softmax(xin.reshape(xin.shape[0], xin.shape[1], -1), dim=1).reshape(xin.shape)
        else:
            raise NotImplementedError(ty)
        t[lp.top[0]] = y
        if lp.top[0] in outputs:
            got[lp.top[0]] = to_numpy(y)
    return got


def blobs_from_caffemodel(model):
    out = {}
    for lp in list(model.layer) + list(model.layers):
        if len(lp.blobs):
            out[lp.name] = [blob_array(b) for b in lp.blobs]
    return out


# ----------------------------------------------------------------------------------------------
# OpenCV dnn
# ----------------------------------------------------------------------------------------------

def opencv_logits(prototxt, caffemodel, x, layer='fc1000', fusion=True):
    import cv2
    net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.enableFusion(fusion)
    net.setInput(np.ascontiguousarray(x, np.float32), 'data')
    y = net.forward(layer)
    return np.asarray(y, np.float32).reshape(x.shape[0], -1)


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


# ----------------------------------------------------------------------------------------------
# Subcommands
# ----------------------------------------------------------------------------------------------

def cmd_prototxt(args):
    text = msra_prototxt(args.depth)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
    real = open(args.compare).read() if args.compare else real_prototxt(args.depth)
    if real is None:
        print('no real prototxt to compare with')
    else:
        print('ResNet-%d vs real: %s' % (args.depth, compare_prototxt(text, real)))
    if not args.out and not args.compare:
        for d in sorted(DEPTHS):
            rp = real_prototxt(d)
            if rp is not None and d != args.depth:
                print('ResNet-%d vs real: %s' % (d, compare_prototxt(msra_prototxt(d), rp)))


def layer_table(model):
    rows = []
    p = pb2()
    for lp in model.layer:
        rows.append({'name': lp.name, 'type': lp.type, 'bottom': list(lp.bottom), 'top': list(lp.top),
                     'blobs': [list(b.shape.dim) for b in lp.blobs]})
    for lp in model.layers:
        rows.append({'name': lp.name, 'type': p.V1LayerParameter.LayerType.Name(lp.type),
                     'blobs': [[b.num, b.channels, b.height, b.width] for b in lp.blobs]})
    return rows


def cmd_fixtures(args):
    import cv2
    torch = _torch()
    os.makedirs(OUT_DIR, exist_ok=True)
    proto_text = tiny_prototxt()
    net = parse_prototxt(proto_text)
    n, c, h, w = common.TINY_INPUT_SHAPE

    mean = synthetic_mean(h, w, 500)
    image = common.rng(501).integers(0, 256, (n, c, h, w)).astype(np.uint8)      # BGR 0..255
    x = (image.astype(np.float32) - mean[None]).astype(np.float32)
    calib = (common.rng(502).integers(0, 256, (4, c, h, w)).astype(np.float32) - mean[None]).astype(np.float32)

    blobs = random_blobs(net, 503, calib)
    model = build_caffemodel(net, blobs)
    v1, skipped = build_v1_caffemodel(net, blobs)

    paths = {k: os.path.join(OUT_DIR, k) for k in
             ['tiny.prototxt', 'tiny.caffemodel', 'tiny_v1layers.caffemodel', 'mean.binaryproto',
              'image.npy', 'input.npy', 'logits.npy', 'manifest.json']}
    with open(paths['tiny.prototxt'], 'w') as f:
        f.write(proto_text)
    with open(paths['tiny.caffemodel'], 'wb') as f:
        f.write(model.SerializeToString())
    with open(paths['tiny_v1layers.caffemodel'], 'wb') as f:
        f.write(v1.SerializeToString())
    with open(paths['mean.binaryproto'], 'wb') as f:
        f.write(mean_blobproto(mean).SerializeToString())
    np.save(paths['image.npy'], image)
    np.save(paths['input.npy'], x)

    # Round trips: read back what was written.
    m2 = pb2().NetParameter()
    m2.ParseFromString(open(paths['tiny.caffemodel'], 'rb').read())
    rb = blobs_from_caffemodel(m2)
    v2 = pb2().NetParameter()
    v2.ParseFromString(open(paths['tiny_v1layers.caffemodel'], 'rb').read())
    rv1 = blobs_from_caffemodel(v2)
    v1_same = all(np.array_equal(rv1[k][i].ravel(), rb[k][i].ravel()) for k in rv1 for i in range(len(rv1[k])))
    mb = pb2().BlobProto()
    mb.ParseFromString(open(paths['mean.binaryproto'], 'rb').read())
    assert np.array_equal(blob_array(mb)[0], mean)

    logits = opencv_logits(paths['tiny.prototxt'], paths['tiny.caffemodel'], x)
    logits_nofuse = opencv_logits(paths['tiny.prototxt'], paths['tiny.caffemodel'], x, fusion=False)
    ref64 = torch_forward(net, rb, x)['fc1000']
    ref32 = torch_forward(net, rb, x, dtype=torch.float32)['fc1000']
    np.save(paths['logits.npy'], logits)

    # The legacy file through OpenCV: a BN/Scale-free prototxt (V1 could not hold the rest).
    nobn_text = deploy_prototxt('tiny-nobn', common.TINY_INPUT_SHAPE,
                                [lay for lay in msra_layers(common.TINY_LAYERS, width=common.TINY_WIDTH,
                                                            classes=common.TINY_CLASSES, conv1_bias=True,
                                                            global_pool=True)
                                 if lay.type not in ('BatchNorm', 'Scale')])
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False) as f:
        f.write(nobn_text)
    v1_cv = opencv_logits(f.name, paths['tiny_v1layers.caffemodel'], x)
    v1_ref = torch_forward(parse_prototxt(nobn_text), rv1, x)['fc1000']
    os.unlink(f.name)

    checks = {
        'opencv_vs_torch64_max_abs_over_max_logit': rel(logits, ref64),
        'opencv_nofusion_vs_torch64': rel(logits_nofuse, ref64),
        'torch32_vs_torch64': rel(ref32, ref64),
        'v1_blobs_equal_new_blobs': bool(v1_same),
        'v1_bn_free_net_opencv_vs_torch64': rel(v1_cv, v1_ref),
        'logits_max_abs': float(np.abs(logits).max()),
        'argmax': np.argmax(logits, 1).tolist(),
    }
    manifest = {
        'framework': 'caffe (MSRA ResNet v1, KaimingHe/deep-residual-networks layout)',
        'width': common.TINY_WIDTH, 'layers': common.TINY_LAYERS, 'classes': common.TINY_CLASSES,
        'input_shape': list(common.TINY_INPUT_SHAPE),
        'input': 'input.npy = image.npy (uint8 BGR NCHW, common.rng(501).integers(0,256)) - mean image '
                 '(mean.binaryproto), float32',
        'mean_binaryproto': {'legacy_dims': [mb.num, mb.channels, mb.height, mb.width],
                             'has_shape': mb.HasField('shape'), 'order': 'BGR',
                             'min': float(mean.min()), 'max': float(mean.max())},
        'logits': 'OpenCV dnn readNetFromCaffe(tiny.prototxt, tiny.caffemodel), forward("fc1000") '
                  '(pre-softmax), DNN_BACKEND_OPENCV / CPU, fusion on',
        'opencv': cv2.__version__, 'torch': torch.__version__,
        'batchnorm': {'blobs': '[mean*f, var*f, [f]]', 'f': BN_FACTOR, 'eps': 1e-5,
                      'semantics': 'y = (x - b0/f) / sqrt(b1/f + eps) (1/f in float32; 0 if f == 0)'},
        'pool1': 'MAX 3/2 pad 0, Caffe ceil rounding: 31x34 -> 15x17 (floor would give 15x16)',
        'pool5': 'AVE global_pooling (2x3 -> 1x1)',
        'v1_layers': {'file': 'tiny_v1layers.caffemodel',
                      'format': 'NetParameter.layers (field 2), V1LayerParameter enum types, BlobProto '
                                'num/channels/height/width (bias 1x1x1xN, fc weight 1x1xMxN, conv OxIxKhxKw)',
                      'omitted_layers': skipped,
                      'why': 'V1LayerParameter.LayerType has no BatchNorm or Scale'},
        'layers_table': layer_table(m2),
        'v1_layers_table': layer_table(v2),
        'checks': checks,
        'files': {k: {'bytes': os.path.getsize(v), 'sha256': hashlib.sha256(open(v, 'rb').read()).hexdigest()}
                  for k, v in paths.items() if k != 'manifest.json'},
        'generated_by': 'eval/reference/baselines/caffe.py fixtures',
    }
    common.write_json(paths['manifest.json'], manifest)
    for k, v in checks.items():
        print('%-45s %s' % (k, v))
    for k, v in sorted(manifest['files'].items()):
        print('%-28s %8d bytes' % (k, v['bytes']))


def cmd_full(args):
    os.makedirs(args.out, exist_ok=True)
    text = msra_prototxt(50)
    net = parse_prototxt(text)
    mean = synthetic_mean(224, 224, 600)
    calib = (common.rng(601).integers(0, 256, (2, 3, 224, 224)).astype(np.float32) - mean[None]).astype(np.float32)
    blobs = random_blobs(net, 602, calib)
    model = build_caffemodel(net, blobs)
    paths = {k: os.path.join(args.out, k) for k in
             ['ResNet-50-deploy.prototxt', 'ResNet-50-model.caffemodel', 'ResNet_mean.binaryproto']}
    with open(paths['ResNet-50-deploy.prototxt'], 'w') as f:
        f.write(text)
    with open(paths['ResNet-50-model.caffemodel'], 'wb') as f:
        f.write(model.SerializeToString())
    with open(paths['ResNet_mean.binaryproto'], 'wb') as f:
        f.write(mean_blobproto(mean).SerializeToString())
    for k, v in paths.items():
        print('%-30s %11d bytes' % (k, os.path.getsize(v)))
    real = real_prototxt(50)
    if real is not None:
        print('prototxt vs real:', compare_prototxt(text, real))
    if args.check:
        x = (common.rng(603).integers(0, 256, (1, 3, 224, 224)).astype(np.float32) - mean[None]).astype(np.float32)
        a = opencv_logits(paths['ResNet-50-deploy.prototxt'], paths['ResNet-50-model.caffemodel'], x)
        b = torch_forward(net, blobs, x)['fc1000']
        print('full: opencv vs torch64 max|d|/max|logit| = %.3g (max|logit| %.3g)' % (rel(a, b), np.abs(b).max()))


def cmd_logits(args):
    x = np.load(args.input).astype(np.float32)
    if args.torch:
        net = parse_prototxt(open(args.prototxt).read())
        m = pb2().NetParameter()
        m.ParseFromString(open(args.caffemodel, 'rb').read())
        y = torch_forward(net, blobs_from_caffemodel(m), x, outputs=(args.layer,))[args.layer]
        y = y.reshape(x.shape[0], -1).astype(np.float32)
    else:
        y = opencv_logits(args.prototxt, args.caffemodel, x, layer=args.layer)
    np.save(args.out, y)
    print(args.out, y.shape, 'max|y| %.4g' % np.abs(y).max())


# ----------------------------------------------------------------------------------------------
# cv2.resize INTER_LINEAR on CV_8U, ported (bit-exact against OpenCV 4.14 x86_64; see resize-check)
# ----------------------------------------------------------------------------------------------

def resize_linear_u8(src, dw, dh):
    """numpy port of cv2.resize(src, (dw, dh), interpolation=INTER_LINEAR) for uint8 HxW[xC].

    OpenCV (modules/imgproc/src/resize.cpp / resize.simd.hpp, cv::hal::resize):
      inv_scale = dst/src (double); scale = 1/inv_scale (double)
      exact 2x downscale in both axes (|scale-2| < DBL_EPSILON) -> INTER_AREA fast path: (a+b+c+d+2)>>2
      otherwise per output column dx (same for rows with dy):
        f = (float)((dx + 0.5) * scale - 0.5); s = floor(f); f -= s            (f in float32)
        x only: s < 0 -> s = 0, f = 0;  s >= W-1 -> s = W-1, f = 0             (rows: no clamp of f)
        w0 = saturate_cast<short>((1.f - f) * 2048), w1 = saturate_cast<short>(f * 2048)  (round half even)
      horizontal: H[y][dx] = S[y][s] * w0 + S[y][min(s+1, W-1)] * w1            (int32, no shift)
      vertical:   rows r0 = clip(sy, 0, H-1), r1 = clip(sy+1, 0, H-1)
                  out = ((b0 * (H[r0] >> 4)) >> 16) + ((b1 * (H[r1] >> 4)) >> 16) + 2) >> 2
    """
    src = np.asarray(src, np.uint8)
    squeeze = src.ndim == 2
    if squeeze:
        src = src[:, :, None]
    sh, sw, _ = src.shape
    if (dw, dh) == (sw, sh):
        out = src.copy()
        return out[:, :, 0] if squeeze else out
    scale_x = 1.0 / (dw / sw)
    scale_y = 1.0 / (dh / sh)
    isx, isy = int(np.rint(scale_x)), int(np.rint(scale_y))
    eps = np.finfo(np.float64).eps
    if abs(scale_x - isx) < eps and abs(scale_y - isy) < eps and isx == 2 and isy == 2:
        s = src.astype(np.int64)
        q = s[0:2 * dh:2, 0:2 * dw:2] + s[0:2 * dh:2, 1:2 * dw:2] + s[1:2 * dh:2, 0:2 * dw:2] + s[1:2 * dh:2, 1:2 * dw:2]
        out = ((q + 2) >> 2).astype(np.uint8)
        return out[:, :, 0] if squeeze else out

    def tab(n_dst, n_src, scale, clamp):
        d = np.arange(n_dst, dtype=np.float64)
        f = ((d + 0.5) * scale - 0.5).astype(np.float32)
        s = np.floor(f).astype(np.int64)
        f = (f - s.astype(np.float32)).astype(np.float32)
        if clamp:
            lo = s < 0
            f[lo], s[lo] = 0, 0
            hi = s >= n_src - 1
            f[hi], s[hi] = 0, n_src - 1
        w0 = np.rint((np.float32(1) - f).astype(np.float32) * np.float32(2048)).astype(np.int64)
        w1 = np.rint(f * np.float32(2048)).astype(np.int64)
        return s, w0, w1
    sx, a0, a1 = tab(dw, sw, scale_x, True)
    sy, b0, b1 = tab(dh, sh, scale_y, False)
    S = src.astype(np.int64)
    Hs = S[:, sx, :] * a0[None, :, None] + S[:, np.minimum(sx + 1, sw - 1), :] * a1[None, :, None]
    r0, r1 = np.clip(sy, 0, sh - 1), np.clip(sy + 1, 0, sh - 1)
    t0 = (b0[:, None, None] * (Hs[r0] >> 4)) >> 16
    t1 = (b1[:, None, None] * (Hs[r1] >> 4)) >> 16
    out = ((t0 + t1 + 2) >> 2).astype(np.uint8)
    return out[:, :, 0] if squeeze else out


def cmd_resize_check(args):
    import cv2
    r = common.rng(700)
    sizes = [(512, 512, 256, 256), (10, 10, 20, 20), (451, 300, 384, 256), (1000, 60, 4266, 256),
             (30, 512, 256, 4369), (1, 1, 5, 3), (2, 2, 1, 1), (3, 3, 1, 1), (7, 5, 3, 2)]
    sizes += [tuple(int(v) for v in np.concatenate([r.integers(1, 300, 2), r.integers(1, 400, 2)]))
              for _ in range(args.n)]
    bad = 0
    for (sw, sh, dw, dh) in sizes:
        for cn in (1, 3, 4):
            img = r.integers(0, 256, (sh, sw, cn) if cn > 1 else (sh, sw), dtype=np.uint8)
            a = cv2.resize(img, (dw, dh), interpolation=cv2.INTER_LINEAR)
            if not np.array_equal(a, resize_linear_u8(img, dw, dh)):
                bad += 1
                print('mismatch', sw, sh, dw, dh, cn)
    print('opencv %s: %d cases, %d mismatches' % (cv2.__version__, 3 * len(sizes), bad))


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


RESIZE_DOC = {
    'function': 'cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR) on CV_8UC3 (BGR, HWC)',
    'bit_exact_path': 'no: INTER_LINEAR on 8U is the legacy 11-bit fixed-point path (HResizeLinear + '
                      'VResizeLinear<uchar,int,short>), not resize_bitExact (that is INTER_LINEAR_EXACT). It is '
                      'deterministic and its SIMD kernels (HResizeLinearVec_8u32s: exact int dot products; '
                      'VResizeLinearVec_32s8u: v_mul_hi == (a*b)>>16 and v_rshr_pack_u<2> == (x+2)>>2) give the '
                      'same bytes as the scalar code. The IPP HAL (ipp_hal_resize) declines 8u INTER_LINEAR unless '
                      'useIPP_NotExact, so it does not change results.',
    'scales': 'inv_scale_x = (double)new_w / w, inv_scale_y = (double)new_h / h; scale_x = 1.0 / inv_scale_x '
              '(double, not w/new_w)',
    'same_size': 'dsize == ssize -> plain copy',
    'exact_2x_downscale': 'if |scale_x - 2| < DBL_EPSILON and |scale_y - 2| < DBL_EPSILON (w == 2*new_w and '
                          'h == 2*new_h): INTER_AREA fast path, out = (a + b + c + d + 2) >> 2 over the 2x2 block '
                          '(cn 1/3/4). Numerically the bilinear formula gives the same value for this case.',
    'coefficients': 'for each output column dx: fx = (float)((dx + 0.5) * scale_x - 0.5) (double arithmetic, '
                    'then rounded to float32); sx = floor(fx); fx = fx - sx (float32). Columns: if sx < 0 then '
                    'sx = 0, fx = 0; if sx >= w - 1 then sx = w - 1, fx = 0. Weights: a0 = saturate_cast<short>'
                    '((1.f - fx) * 2048.f), a1 = saturate_cast<short>(fx * 2048.f), i.e. round half to even '
                    '(cvRound), computed independently (a0 + a1 may differ from 2048 by 1 in rare cases). '
                    'Rows: fy, sy and b0, b1 the same way from scale_y, but fy is NOT clamped; the two source rows '
                    'are clip(sy, 0, h-1) and clip(sy+1, 0, h-1) (top/bottom rows replicate).',
    'horizontal': 'per source row and channel c: T[dx] = S[sx*cn + c] * a0 + S[min(sx+1, w-1)*cn + c] * a1 '
                  '(int32, no rounding; columns past the right edge are S[w-1]*2048)',
    'vertical': 'out = uchar((((b0 * (T0 >> 4)) >> 16) + ((b1 * (T1 >> 4)) >> 16) + 2) >> 2) '
                '(arithmetic shifts; INTER_RESIZE_COEF_BITS = 11, so 22 fractional bits in total, of which 4 + 16 '
                'are truncated before the final rounding shift)',
    'port': 'eval/reference/baselines/caffe.py resize_linear_u8 (numpy); `caffe.py resize-check` compares it with '
            'cv2.resize on random sizes/channels',
    'sources': ['https://github.com/opencv/opencv/blob/4.x/modules/imgproc/src/resize.cpp (and resize.simd.hpp: '
                'cv::hal::resize / resize_cpu, VResizeLinear<uchar, int, short, FixedPtCast<int, uchar, '
                'INTER_RESIZE_COEF_BITS*2>, VResizeLinearVec_32s8u>)',
                'https://github.com/opencv/opencv/blob/4.x/hal/ipp/src/resize_ipp.cpp (ipp_hal_resize: "Resize '
                'which doesn\'t match OpenCV exactly" -> not implemented for ipp8u + ippLinear)'],
}


def cmd_protocol(args):
    import cv2
    from PIL import Image
    import PIL
    entries = []
    for name in common.PHOTOS:
        path = os.path.join(common.IMAGES, name)
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        pil = np.asarray(Image.open(path).convert('RGB'))[:, :, ::-1]
        same = pil.shape == img.shape and np.array_equal(pil, img)
        if h <= w:
            nh, nw = 256, 256 * w // h
        else:
            nh, nw = 256 * h // w, 256
        rs = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        port = resize_linear_u8(img, nw, nh)
        y0, x0 = (nh - 224) // 2, (nw - 224) // 2
        crop = rs[y0:y0 + 224, x0:x0 + 224]
        e = {'image': name, 'decoded_hw': [h, w], 'resized_hw': [nh, nw], 'crop_offset_yx': [y0, x0],
             'decoded_sha256': sha(img), 'decoded_equals_pil_bgr': bool(same),
             'resized_sha256': sha(rs), 'crop_sha256': sha(crop),
             'numpy_port_equals_cv2': bool(np.array_equal(port, rs)),
             'path': 'area_fast_2x' if (w == 2 * nw and h == 2 * nh) else 'linear_fixed_point'}
        if not same and pil.shape == img.shape:
            d = np.abs(pil.astype(int) - img.astype(int))
            e['pil_diff'] = {'max': int(d.max()), 'count': int((d > 0).sum())}
        entries.append(e)
        print('%-26s %4dx%-4d -> %4dx%-4d crop@(%d,%d) pil=%s port=%s %s' % (
            name, h, w, nh, nw, y0, x0, same, e['numpy_port_equals_cv2'], e['path']))
    out = {
        'protocol': 'MSRA 1-crop (KaimingHe/deep-residual-networks README: "center 224x224 crop from resized '
                    'image with shorter side=256"), done the Caffe/OpenCV way: cv2.imread(path, IMREAD_COLOR) -> '
                    'BGR uint8 HWC; short side -> 256, long side -> 256*long//short (floor), cv2.resize '
                    'INTER_LINEAR; centre crop 224 at ((H-224)//2, (W-224)//2) (Caffe DataTransformer test-phase '
                    'offsets); then the network input is crop (as float, CHW, BGR) - ResNet_mean.binaryproto '
                    '(3x224x224 per-pixel BGR mean, subtracted after the crop: "Crop(img) - mean").',
        'hashes': 'sha256 of the uint8 HWC BGR bytes (C order)',
        'opencv': cv2.__version__, 'pillow': PIL.__version__,
        'resize_inter_linear_8u': RESIZE_DOC,
        'images': entries,
    }
    common.write_json(os.path.join(common.IMAGES, 'caffe_protocol.json'), out)
    print('wrote', os.path.join(common.IMAGES, 'caffe_protocol.json'))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--caffe-proto', help='path of caffe.proto (default: $CAFFE_PROTO or the BVLC/caffe mirror)')
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('prototxt')
    p.add_argument('--depth', type=int, default=50, choices=sorted(DEPTHS))
    p.add_argument('--out')
    p.add_argument('--compare', help='a real ResNet-N-deploy.prototxt (default: the KaimingHe mirror)')
    p.set_defaults(fn=cmd_prototxt)
    p = sub.add_parser('fixtures')
    p.set_defaults(fn=cmd_fixtures)
    p = sub.add_parser('full')
    p.add_argument('--out', required=True)
    p.add_argument('--check', action='store_true', help='also compare OpenCV dnn and torch logits')
    p.set_defaults(fn=cmd_full)
    p = sub.add_parser('logits')
    p.add_argument('--prototxt', required=True)
    p.add_argument('--caffemodel', required=True)
    p.add_argument('--input', required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--layer', default='fc1000')
    p.add_argument('--torch', action='store_true', help='the PyTorch implementation instead of OpenCV dnn')
    p.set_defaults(fn=cmd_logits)
    p = sub.add_parser('protocol')
    p.set_defaults(fn=cmd_protocol)
    p = sub.add_parser('resize-check')
    p.add_argument('--n', type=int, default=200)
    p.set_defaults(fn=cmd_resize_check)
    args = ap.parse_args()
    PROTO_ARG[0] = args.caffe_proto
    args.fn(args)


if __name__ == '__main__':
    main()
