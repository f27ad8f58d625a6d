"""TF-Slim ResNet-50 v1 baseline: fixtures, a full-size checkpoint, the evaluation protocol and
logits, all from TensorFlow's and tf_slim's own code.

    PY=/opt/tfvenv/bin/python     # tensorflow-cpu 2.15.1, tf-slim 1.1.0, numpy<2, pillow, and
                                  # tf_keras 2.15 (pip install --no-deps "tf_keras==2.15.*":
                                  # slim.batch_norm needs it; without --no-deps pip also pulls
                                  # the `tensorflow` wheel over tensorflow-cpu)
    $PY eval/reference/baselines/slim.py fixtures            # fixtures/frameworks/slim/
    $PY eval/reference/baselines/slim.py full --out /tmp/slim_full \
        [--calibrate X.npy]   # BN moving stats from slim's training-mode graph on X (sane logits)
    $PY eval/reference/baselines/slim.py protocol            # fixtures/images/slim_protocol.json
                                                             # + /tmp/slim_protocol/<image>.npy
    $PY eval/reference/baselines/slim.py logits --ckpt /tmp/slim_full/resnet_v1_50.ckpt \
        --input X.npy --out Y.npy                            # [N, 1000] float32
    $PY eval/reference/baselines/slim.py logits --tiny \
        --ckpt fixtures/frameworks/slim/tiny.ckpt \
        --input fixtures/frameworks/slim/input.npy --out /tmp/tiny_logits.npy
    $PY eval/reference/baselines/slim.py dump fixtures/frameworks/slim/partitioned.ckpt
                                                             # table/proto structure of a checkpoint

The networks are tf_slim's own nets.resnet_v1 (the pip package ships research/slim's resnet_v1.py
and resnet_utils.py, identical in architecture to the 2016-08 release: stride 2 in the *last* unit
of blocks 1-3 on the 3x3 conv, 1x1/2 max-pool "subsample" shortcuts where the depth does not
change, SAME-padded 3x3/2 max pool after the explicitly padded 7x7/2 stem, BN eps 1e-5, global
mean pool, a 1x1 conv "logits" with biases). The tiny network only changes the stem's 64 output
channels to TINY_WIDTH by wrapping resnet_utils.conv2d_same for scope 'conv1'.

Checkpoints are written by tf.compat.v1.train.Saver (write_version V1: the SaveSlices op and the
C++ TensorSliceWriter; V2: SaveV2 and the tensor bundle writer) and read back with TF's own
readers (tf.train.load_checkpoint, RestoreV2/RestoreSlice). `dump` decodes them with a small
pure-Python reader of TF's table format (footer, blocks, trailers, masked crc32c, OrderedCode
keys) written here from the format's description.

The protocol is vgg_preprocessing.preprocess_for_eval as of the 2016 release (truncating
_smallest_size_at_least, legacy resize_bilinear), with JPEGs decoded by JDCT_ISLOW
(dct_method='INTEGER_ACCURATE'): TF used only that IDCT until tensorflow/tensorflow#5072
(Nov 2016) made JDCT_IFAST the default; the TF 2.15 default decode is recorded beside it.
"""
import argparse
import hashlib
import json
import os
import struct
import sys
import tarfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tf_slim  # noqa: E402
from tf_slim.nets import resnet_utils, resnet_v1  # noqa: E402

# tf_slim.batch_norm (with resnet_arg_scope's updates_collections=UPDATE_OPS) builds
# tensorflow.python.layers.normalization.BatchNormalization, which TF 2.15 lazily imports from
# 'tf_keras.legacy_tf_layers.normalization'; tf_keras 2.15 (pip install tf_keras==2.15.*) ships
# that module as tf_keras.src.legacy_tf_layers. Alias it (a packaging mismatch, not a change of
# code: the class is the one TF means).
import tf_keras.src.legacy_tf_layers as _ltl  # noqa: E402
import tf_keras.src.legacy_tf_layers.normalization as _ltl_norm  # noqa: E402
sys.modules.setdefault('tf_keras.legacy_tf_layers', _ltl)
sys.modules.setdefault('tf_keras.legacy_tf_layers.normalization', _ltl_norm)

tf1 = tf.compat.v1

WEIGHT_SEED = 20160828
INPUT_SEED = 1
INPUT_SCALE = 60.0
PARTITIONED_SEED = 7
TINY_SCOPE = 'resnet_v1_tiny'
OUT_DIR = os.path.join(common.FRAMEWORKS, 'slim')

# ---------------------------------------------------------------------------------------------
# networks


def tiny_blocks():
    """Blocks of the tiny network: resnet_v1_50's layout at base depth TINY_WIDTH << s."""
    strides = [2, 2, 2, 1]
    return [resnet_v1.resnet_v1_block('block%d' % (s + 1), base_depth=common.TINY_WIDTH << s,
                                      num_units=n, stride=strides[s])
            for s, n in enumerate(common.TINY_LAYERS)]


class _TinyStem:
    """Context manager: resnet_utils.conv2d_same with TINY_WIDTH outputs for scope 'conv1'."""

    def __enter__(self):
        self.orig = resnet_utils.conv2d_same
        orig = self.orig

        def conv2d_same(inputs, num_outputs, kernel_size, stride, rate=1, scope=None):
            if scope == 'conv1':
                num_outputs = common.TINY_WIDTH
            return orig(inputs, num_outputs, kernel_size, stride, rate=rate, scope=scope)

        resnet_utils.conv2d_same = conv2d_same
        return self

    def __exit__(self, *exc):
        resnet_utils.conv2d_same = self.orig


def build_net(images_nhwc, tiny, scope=None, is_training=False):
    """Slim's resnet_v1 (tiny) or resnet_v1_50 (is_training=False unless calibrating BN).
    Returns logits [N, classes]."""
    with tf_slim.arg_scope(resnet_v1.resnet_arg_scope()):
        if tiny:
            with _TinyStem():
                net, _ = resnet_v1.resnet_v1(images_nhwc, tiny_blocks(),
                                             num_classes=common.TINY_CLASSES,
                                             is_training=is_training,
                                             global_pool=True, include_root_block=True,
                                             scope=scope or TINY_SCOPE)
        else:
            net, _ = resnet_v1.resnet_v1_50(images_nhwc, num_classes=1000,
                                            is_training=is_training,
                                            scope=scope or 'resnet_v1_50')
    # tf_slim's resnet_v1 has no spatial_squeeze; the 2016 code returned [N, 1, 1, C] too.
    return tf.squeeze(net, [1, 2], name='SpatialSqueeze')


def random_values(variables, seed):
    """Deterministic numpy values for slim's variables, in creation order."""
    r = common.rng(seed)
    bn_cache = {}
    values = {}
    for v in variables:
        name = v.op.name
        shape = v.shape.as_list()
        if name.endswith('/weights'):
            fan_in = int(np.prod(shape[:-1]))
            values[name] = common.he(r, shape, fan_in)
        elif name.endswith('/biases'):
            values[name] = (0.1 * r.standard_normal(shape)).astype(np.float32)
        elif '/BatchNorm/' in name:
            prefix, leaf = name.rsplit('/', 1)
            if prefix not in bn_cache:
                g, b, m, var = common.bn_params(r, shape[0])
                bn_cache[prefix] = {'gamma': g, 'beta': b, 'moving_mean': m,
                                    'moving_variance': var}
            values[name] = bn_cache[prefix][leaf]
        else:
            raise ValueError('unexpected variable %s' % name)
        assert list(values[name].shape) == shape, name
    return values


def assign_all(sess, values_by_var):
    for v, val in values_by_var:
        v.load(val, sess)


def var_info(reader):
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    return {k: {'shape': list(shapes[k]), 'dtype': dtypes[k].name} for k in sorted(shapes)}


def save_both(sess, var_list, v1_path, v2_prefix):
    """V1 (TensorSliceWriter) file at v1_path and a V2 bundle at v2_prefix.{index,data-*}."""
    s1 = tf1.train.Saver(var_list=var_list, write_version=tf1.train.SaverDef.V1)
    got = s1.save(sess, v1_path, write_meta_graph=False, write_state=False)
    assert got == v1_path, got
    s2 = tf1.train.Saver(var_list=var_list, write_version=tf1.train.SaverDef.V2)
    got = s2.save(sess, v2_prefix, write_meta_graph=False, write_state=False)
    assert got == v2_prefix, got


def check_ckpt(path, expected):
    """TF's own reader (NewCheckpointReader: TensorSliceReader for V1, BundleReader for V2)."""
    reader = tf.train.load_checkpoint(path)
    info = var_info(reader)
    assert sorted(info) == sorted(expected), (sorted(info), sorted(expected))
    for k, want in expected.items():
        try:
            got = reader.get_tensor(k)
        except tf.errors.UnimplementedError:
            # TensorSliceReader::GetTensor (V1) refuses tensors saved as several slices
            # ("Sliced checkpoints are not supported"); the restore ops assemble them.
            info[k]['reader_get_tensor'] = ('UnimplementedError: Sliced checkpoints are not '
                                            'supported')
            got = tf.raw_ops.RestoreV2(prefix=path, tensor_names=[k], shape_and_slices=[''],
                                       dtypes=[tf.as_dtype(want.dtype)])[0].numpy()
            legacy = tf.raw_ops.RestoreSlice(file_pattern=path, tensor_name=k,
                                             shape_and_slice='', dt=tf.as_dtype(want.dtype))
            assert np.array_equal(legacy.numpy(), want), k
        assert got.dtype == want.dtype and got.shape == want.shape, (k, got.dtype, want.dtype)
        assert np.array_equal(got, want), k
    return info


def nchw_to_nhwc(x):
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


# ---------------------------------------------------------------------------------------------
# fixtures


def cmd_fixtures(a):
    out = a.out or OUT_DIR
    os.makedirs(out, exist_ok=True)
    x = common.tiny_input(INPUT_SEED) * np.float32(INPUT_SCALE)
    assert x.dtype == np.float32

    # --- tiny network
    g = tf.Graph()
    with g.as_default(), tf1.Session(graph=g) as sess:
        inp = tf1.placeholder(tf.float32, [None, None, None, 3], name='input')
        logits_t = build_net(inp, tiny=True)
        variables = tf1.global_variables()
        vals = random_values(variables, WEIGHT_SEED)
        assign_all(sess, [(v, vals[v.op.name]) for v in variables])
        logits = sess.run(logits_t, {inp: nchw_to_nhwc(x)}).astype(np.float32)
        save_both(sess, variables, os.path.join(out, 'tiny.ckpt'), os.path.join(out, 'tiny_v2'))
        var_order = [v.op.name for v in variables]
    assert logits.shape == (common.TINY_INPUT_SHAPE[0], common.TINY_CLASSES)
    np.save(os.path.join(out, 'input.npy'), x)
    np.save(os.path.join(out, 'logits.npy'), logits)
    tiny_v1 = check_ckpt(os.path.join(out, 'tiny.ckpt'), vals)
    tiny_v2 = check_ckpt(os.path.join(out, 'tiny_v2'), vals)
    assert tiny_v1 == tiny_v2
    # The V1 file restored into a fresh graph reproduces the logits.
    again = run_logits(os.path.join(out, 'tiny.ckpt'), x, tiny=True, scope=TINY_SCOPE)
    assert np.array_equal(again, logits), np.abs(again - logits).max()
    again2 = run_logits(os.path.join(out, 'tiny_v2'), x, tiny=True, scope=TINY_SCOPE)
    assert np.array_equal(again2, logits), np.abs(again2 - logits).max()

    # --- partitioned / odd dtypes and names
    r = common.rng(PARTITIONED_SEED)
    part_val = r.standard_normal((7, 5)).astype(np.float32)
    dbl_val = r.standard_normal((4, 3)).astype(np.float64)
    odd_val = r.standard_normal((3,)).astype(np.float32)
    step_val = np.int64(1234567890123)
    g = tf.Graph()
    with g.as_default(), tf1.Session(graph=g) as sess:
        part = tf1.get_variable('part', shape=[7, 5], dtype=tf.float32,
                                partitioner=tf1.fixed_size_partitioner(3, axis=0),
                                initializer=tf1.zeros_initializer())
        dbl = tf1.get_variable('double', shape=[4, 3], dtype=tf.float64,
                               initializer=tf1.zeros_initializer())
        step = tf1.train.get_or_create_global_step()
        odd = tf1.get_variable('a/b_c.d', shape=[3], dtype=tf.float32,
                               initializer=tf1.zeros_initializer())
        sess.run(tf1.global_variables_initializer())
        parts = list(part)
        assert [p.shape.as_list() for p in parts] == [[3, 5], [2, 5], [2, 5]]
        off = 0
        part_slices = []
        for p in parts:
            n = p.shape.as_list()[0]
            p.load(part_val[off:off + n], sess)
            part_slices.append({'variable': p.op.name, 'save_slice_info':
                                p._save_slice_info.spec, 'start': off, 'length': n})
            off += n
        dbl.load(dbl_val, sess)
        step.load(step_val, sess)
        odd.load(odd_val, sess)
        # The Saver saves the PartitionedVariable under its full name 'part' as 3 slices.
        var_list = {'part': parts, 'double': dbl, 'global_step': step, 'a/b_c.d': odd}
        save_both(sess, var_list, os.path.join(out, 'partitioned.ckpt'),
                  os.path.join(out, 'partitioned_v2'))
    pvals = {'part': part_val, 'double': dbl_val, 'global_step': np.asarray(step_val),
             'a/b_c.d': odd_val}
    part_v1 = check_ckpt(os.path.join(out, 'partitioned.ckpt'), pvals)
    part_v2 = check_ckpt(os.path.join(out, 'partitioned_v2'), pvals)
    assert ({k: (v['shape'], v['dtype']) for k, v in part_v1.items()}
            == {k: (v['shape'], v['dtype']) for k, v in part_v2.items()})

    files = sorted(f for f in os.listdir(out) if f != 'manifest.json')
    manifest = {
        'generator': 'eval/reference/baselines/slim.py fixtures',
        'tensorflow': tf.__version__,
        'tf_slim': getattr(tf_slim, '__version__', '1.1.0'),
        'numpy': np.__version__,
        'files': {f: {'bytes': os.path.getsize(os.path.join(out, f)),
                      'sha256': sha256_file(os.path.join(out, f))} for f in files},
        'tiny': {
            'scope': TINY_SCOPE,
            'net': 'tf_slim.nets.resnet_v1.resnet_v1 with resnet_v1_block(base_depth=%d<<s, '
                   'num_units=TINY_LAYERS[s], stride=[2,2,2,1][s]); stem conv1 with %d outputs; '
                   'resnet_arg_scope() defaults (BN eps 1e-5, scale=True), is_training=False'
                   % (common.TINY_WIDTH, common.TINY_WIDTH),
            'width': common.TINY_WIDTH, 'layers': common.TINY_LAYERS,
            'classes': common.TINY_CLASSES, 'base_depths': [common.TINY_WIDTH << s
                                                            for s in range(4)],
            'strides': [2, 2, 2, 1],
            'input': 'input.npy', 'input_shape': list(common.TINY_INPUT_SHAPE),
            'input_layout': 'NCHW (TF ran it transposed to NHWC)',
            'input_recipe': 'common.tiny_input(%d) * %g' % (INPUT_SEED, INPUT_SCALE),
            'logits': 'logits.npy', 'logits_shape': list(logits.shape),
            'weight_seed': WEIGHT_SEED,
            'v1': 'tiny.ckpt', 'v2': 'tiny_v2',
            'variable_order': var_order,
            'variables': tiny_v1,
        },
        'partitioned': {
            'v1': 'partitioned.ckpt', 'v2': 'partitioned_v2',
            'variables': part_v1,
            'variables_v2': part_v2,
            'partitions': {'part': part_slices},
            'values': {k: v.tolist() for k, v in pvals.items()},
        },
    }
    common.write_json(os.path.join(out, 'manifest.json'), manifest)
    for f in files + ['manifest.json']:
        print('%8d  %s' % (os.path.getsize(os.path.join(out, f)), os.path.join(out, f)))
    print('logits', logits)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# full-size checkpoint


def calibrated_bn_stats(vals, x_nchw):
    """BN moving statistics = the batch statistics that slim's own training-mode graph
    (is_training=True, the same random weights) computes on x: the network is then well scaled
    on that data (logits O(10) instead of O(1e6)) without changing any other value."""
    g = tf.Graph()
    with g.as_default(), tf1.Session(graph=g) as sess:
        inp = tf1.placeholder(tf.float32, [None, 224, 224, 3], name='input')
        build_net(inp, tiny=False, is_training=True)
        variables = tf1.global_variables()
        assign_all(sess, [(v, vals[v.op.name]) for v in variables])
        bn_ops = [op for op in g.get_operations() if op.type.startswith('FusedBatchNorm')]
        assert len(bn_ops) == 53, len(bn_ops)
        got = sess.run({op.name: (op.outputs[1], op.outputs[2]) for op in bn_ops},
                       {inp: nchw_to_nhwc(x_nchw)})
    out = dict(vals)
    for opname, (mean, var) in got.items():
        prefix = opname.rsplit('/', 1)[0]
        assert prefix + '/moving_mean' in out, opname
        out[prefix + '/moving_mean'] = mean.astype(np.float32)
        out[prefix + '/moving_variance'] = var.astype(np.float32)
    return out


def cmd_full(a):
    os.makedirs(a.out, exist_ok=True)
    g = tf.Graph()
    with g.as_default(), tf1.Session(graph=g) as sess:
        inp = tf1.placeholder(tf.float32, [None, 224, 224, 3], name='input')
        build_net(inp, tiny=False)
        variables = tf1.global_variables()
        vals = random_values(variables, WEIGHT_SEED)
        if a.calibrate:
            vals = calibrated_bn_stats(vals, np.load(a.calibrate).astype(np.float32))
        assign_all(sess, [(v, vals[v.op.name]) for v in variables])
        v1 = os.path.join(a.out, 'resnet_v1_50.ckpt')
        save_both(sess, variables, v1, os.path.join(a.out, 'resnet_v1_50_v2'))
    nparams = sum(int(np.prod(v.shape)) for v in vals.values())
    tgz = os.path.join(a.out, 'resnet_v1_50_2016_08_28.tar.gz')
    with tarfile.open(tgz, 'w:gz') as t:
        t.add(v1, arcname='resnet_v1_50.ckpt')
    with tarfile.open(tgz) as t:
        assert t.getnames() == ['resnet_v1_50.ckpt'], t.getnames()
    if not a.skip_check:
        check_ckpt(v1, vals)
        check_ckpt(os.path.join(a.out, 'resnet_v1_50_v2'), vals)
    print('%d variables, %d parameters' % (len(vals), nparams))
    for f in sorted(os.listdir(a.out)):
        print('%11d  %s' % (os.path.getsize(os.path.join(a.out, f)), os.path.join(a.out, f)))


# ---------------------------------------------------------------------------------------------
# logits from a checkpoint


def run_logits(ckpt, x_nchw, tiny, scope):
    g = tf.Graph()
    with g.as_default(), tf1.Session(graph=g) as sess:
        inp = tf1.placeholder(tf.float32, [None, None, None, 3], name='input')
        logits_t = build_net(inp, tiny=tiny, scope=scope)
        tf1.train.Saver().restore(sess, ckpt)
        out = []
        for i in range(0, x_nchw.shape[0], 16):
            out.append(sess.run(logits_t, {inp: nchw_to_nhwc(x_nchw[i:i + 16])}))
    return np.concatenate(out).astype(np.float32)


def cmd_logits(a):
    x = np.load(a.input)
    if x.ndim == 3:
        x = x[None]
    assert x.ndim == 4 and x.shape[1] == 3, x.shape
    x = x.astype(np.float32)
    scope = a.scope or (TINY_SCOPE if a.tiny else 'resnet_v1_50')
    y = run_logits(a.ckpt, x, a.tiny, scope)
    np.save(a.out, y)
    print(a.out, y.shape, 'top-5', np.argsort(-y, axis=1)[:, :5].tolist())


# ---------------------------------------------------------------------------------------------
# evaluation protocol (vgg_preprocessing.preprocess_for_eval as of the 2016 release)

R_MEAN, G_MEAN, B_MEAN = 123.68, 116.78, 103.94
RESIZE_SIDE = 256
CROP = 224


def smallest_size_at_least_2016(height, width, smallest_side):
    """2016 _smallest_size_at_least: float32 scale, new dims truncated by tf.to_int32.
    (tensorflow/models later switched to tf.rint; see the report.)"""
    smallest_side = tf.cast(tf.convert_to_tensor(smallest_side, dtype=tf.int32), tf.float32)
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    scale = tf.cond(tf.greater(height, width),
                    lambda: smallest_side / width,
                    lambda: smallest_side / height)
    return tf.cast(height * scale, tf.int32), tf.cast(width * scale, tf.int32)


def preprocess_for_eval_2016(image_u8):
    """uint8 HWC RGB -> (resized float32 HWC, final float32 HWC 224x224 mean-subtracted)."""
    shape = tf.shape(image_u8)
    new_h, new_w = smallest_size_at_least_2016(shape[0], shape[1], RESIZE_SIDE)
    resized = tf1.image.resize_bilinear(tf.expand_dims(image_u8, 0), tf.stack([new_h, new_w]),
                                        align_corners=False, half_pixel_centers=False)
    resized = tf.squeeze(resized)
    # _central_crop: offsets (dim - crop) / 2 (true division of int32 tensors), then
    # tf.to_int32 in _crop -> floor for the non-negative values here.
    h, w = tf.shape(resized)[0], tf.shape(resized)[1]
    off_h = tf.cast((h - CROP) / 2, tf.int32)
    off_w = tf.cast((w - CROP) / 2, tf.int32)
    crop = tf.slice(resized, tf.stack([off_h, off_w, 0]), tf.stack([CROP, CROP, shape[2]]))
    crop = tf.cast(tf.reshape(crop, [CROP, CROP, 3]), tf.float32)
    chans = tf.split(crop, 3, axis=2)
    for i, m in enumerate([R_MEAN, G_MEAN, B_MEAN]):
        chans[i] -= m
    final = tf.concat(chans, axis=2)
    return resized, final, (int(new_h), int(new_w)), (int(off_h), int(off_w))


def rint_size(h, w, side=RESIZE_SIDE):
    """What the later (tf.rint) _smallest_size_at_least gives, for the report."""
    hf, wf, sf = np.float32(h), np.float32(w), np.float32(side)
    scale = sf / wf if hf > wf else sf / hf
    return int(np.rint(hf * scale)), int(np.rint(wf * scale))


def tf_decode(data, dct_method=None):
    """uint8 HWC RGB. dct_method None: today's decode_image defaults (JPEG: dct_method '' which
    TF maps to JDCT_IFAST since tensorflow/tensorflow#5072, Nov 2016). 'INTEGER_ACCURATE' is
    JDCT_ISLOW, what TF's decode_jpeg always used before that, i.e. in the 2016 release's eval."""
    if dct_method and data[:2] == b'\xff\xd8':
        return tf.io.decode_jpeg(data, channels=3, dct_method=dct_method).numpy()
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def cmd_protocol(a):
    os.makedirs(a.tensors, exist_ok=True)
    entries = []
    undecodable = []
    names = list(common.PHOTOS) + [n for n in a.extra if n not in common.PHOTOS]
    for name in names:
        path = os.path.join(common.IMAGES, name)
        with open(path, 'rb') as f:
            data = f.read()
        pil_img = Image.open(path)
        try:
            dec = tf_decode(data, 'INTEGER_ACCURATE')
            dec_now = tf_decode(data)
        except Exception as e:  # noqa: BLE001 - recorded
            msg = '%s: %s' % (type(e).__name__, str(e).strip().splitlines()[0])
            undecodable.append({'image': name, 'in_photos': name in common.PHOTOS,
                                'pil_mode': pil_img.mode, 'error': msg})
            print('%-28s TF cannot decode: %s' % (name, msg))
            continue
        pil = np.asarray(pil_img.convert('RGB'))
        is_jpeg = data[:2] == b'\xff\xd8'
        entry = {
            'image': name,
            'in_photos': name in common.PHOTOS,
            'format': 'jpeg' if is_jpeg else 'png' if data[:4] == b'\x89PNG' else '?',
            'pil_mode': pil_img.mode,
            'decoded_hw': list(dec.shape[:2]),
            'decoded_sha256': hashlib.sha256(np.ascontiguousarray(dec).tobytes()).hexdigest(),
            'decoded_equals_pil': bool(dec.shape == pil.shape and np.array_equal(dec, pil)),
        }
        resized, final, (nh, nw), (oh, ow) = preprocess_for_eval_2016(tf.constant(dec))
        resized, final = resized.numpy(), final.numpy()
        h, w = dec.shape[:2]
        assert (oh, ow) == ((nh - CROP) // 2, (nw - CROP) // 2)
        assert resized.shape == (nh, nw, 3) and resized.dtype == np.float32
        nchw = np.ascontiguousarray(np.transpose(final, (2, 0, 1)))
        assert nchw.shape == (3, CROP, CROP) and nchw.dtype == np.float32
        entry.update({
            'resized_hw': [nh, nw],
            'resized_hw_if_rint': list(rint_size(h, w)),
            'crop_offset_hw': [oh, ow],
            'resized_sha256': common.sha256_f32(resized),
            'tensor_sha256': common.sha256_f32(nchw),
        })
        if not entry['decoded_equals_pil']:
            _, final_pil, _, _ = preprocess_for_eval_2016(tf.constant(pil))
            entry['tensor_from_pil_decode_mean_abs_diff'] = float(
                np.abs(final_pil.numpy() - final).mean())
        # TF 2.15's default JPEG decode (JDCT_IFAST), for comparison.
        if is_jpeg:
            same = bool(np.array_equal(dec_now, dec))
            now = {'decoded_sha256': hashlib.sha256(dec_now.tobytes()).hexdigest(),
                   'equals_2016_decode': same,
                   'equals_pil': bool(np.array_equal(dec_now, pil))}
            if not same:
                d = np.abs(dec_now.astype(np.int16) - dec.astype(np.int16))
                now['decoded_max_abs_diff'] = int(d.max())
                now['decoded_mean_abs_diff'] = float(d.mean())
                _, final_now, _, _ = preprocess_for_eval_2016(tf.constant(dec_now))
                final_now = final_now.numpy()
                now['tensor_sha256'] = common.sha256_f32(np.transpose(final_now, (2, 0, 1)))
                now['tensor_mean_abs_diff'] = float(np.abs(final_now - final).mean())
            entry['tf215_default_decode'] = now
        stem = os.path.splitext(name)[0]
        np.save(os.path.join(a.tensors, stem + '.npy'), nchw)
        entries.append(entry)
        print('%-28s %4dx%-4d -> %4dx%-4d (rint %4dx%-4d) off %3d,%-3d pil=%s %s'
              % (name, h, w, nh, nw, *entry['resized_hw_if_rint'], oh, ow,
                 entry['decoded_equals_pil'], entry['tensor_sha256'][:16]))
    doc = {
        'protocol': 'TF-Slim vgg_preprocessing.preprocess_for_eval(image, 224, 224, 256) as in '
                    'the 2016 release, on TF 2.15 ops: decode uint8 RGB with channels=3 (JPEG: '
                    "tf.io.decode_jpeg dct_method='INTEGER_ACCURATE' = JDCT_ISLOW, TF's only "
                    'IDCT before tensorflow/tensorflow#5072 (Nov 2016) made JDCT_IFAST the '
                    'default; PNG: tf.io.decode_image); aspect-preserving resize: float32 '
                    'scale = 256/smaller side, new dims = tf.to_int32(dim*scale) (truncation); '
                    'tf.image.resize_bilinear(align_corners=False) (legacy, '
                    'half_pixel_centers=False) on the uint8 image -> float32; central crop at '
                    'offsets (dim-224)//2; tf.to_float; subtract [123.68, 116.78, 103.94] (RGB). '
                    'No scaling to [0,1], no std division.',
        'layout': 'tensor_sha256: common.sha256_f32 of the final NCHW float32 [3,224,224]; '
                  'resized_sha256: of the float32 HWC resized image before the crop; '
                  'decoded_sha256: sha256 of the uint8 HWC RGB bytes; *_hw are [height, width]; '
                  'tf215_default_decode: the same with TF 2.15 decode defaults (JPEG only)',
        'tensorflow': tf.__version__,
        'pillow': Image.__version__,
        'tensors': os.path.join(a.tensors, '<image stem>.npy'),
        'images': entries,
        'undecodable': undecodable,
    }
    common.write_json(a.json, doc)
    print('wrote', a.json)


# ---------------------------------------------------------------------------------------------
# checkpoint structure (TF's table format, decoded here independently of TF)

TABLE_MAGIC = 0xdb4775248b80fb57
CRC_CHECK_MAX = 1 << 20


def _crc32c_table():
    poly = 0x82F63B78
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        t.append(c)
    return t


_CRC_T = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _CRC_T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc_mask(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xa282ead8) & 0xFFFFFFFF


def varint(b, i):
    x = shift = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return x, i


def read_block(f, off, size):
    """Block contents plus its 5-byte trailer: (contents, type, stored masked crc, crc ok)."""
    f.seek(off)
    raw = f.read(size + 5)
    contents, btype = raw[:size], raw[size]
    stored = struct.unpack('<I', raw[size + 1:size + 5])[0]
    # (pure-Python crc32c: only checked for blocks up to CRC_CHECK_MAX bytes)
    ok = crc_mask(crc32c(raw[:size + 1])) == stored if size <= CRC_CHECK_MAX else None
    if btype == 1:
        raise NotImplementedError('snappy block (type 1) at %d' % off)
    return contents, btype, stored, ok


def block_entries(block):
    nrest = struct.unpack('<I', block[-4:])[0]
    restarts = [struct.unpack('<I', block[len(block) - 4 - 4 * (nrest - k):][:4])[0]
                for k in range(nrest)]
    limit = len(block) - 4 - 4 * nrest
    i, key, out = 0, b'', []
    while i < limit:
        shared, i = varint(block, i)
        nonshared, i = varint(block, i)
        vlen, i = varint(block, i)
        key = key[:shared] + block[i:i + nonshared]
        i += nonshared
        out.append((key, block[i:i + vlen], shared))
        i += vlen
    return out, restarts


def read_table(path):
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        f.seek(size - 48)
        footer = f.read(48)
        magic = struct.unpack('<Q', footer[40:])[0]
        assert magic == TABLE_MAGIC, hex(magic)
        mo, j = varint(footer, 0)
        ms, j = varint(footer, j)
        io_, j = varint(footer, j)
        is_, j = varint(footer, j)
        index, itype, icrc, iok = read_block(f, io_, is_)
        meta, mtype, _, mok = read_block(f, mo, ms)
        ientries, irestarts = block_entries(index)
        blocks, entries = [], []
        for last_key, handle, _ in ientries:
            bo, k = varint(handle, 0)
            bs, k = varint(handle, k)
            contents, btype, bcrc, bok = read_block(f, bo, bs)
            es, rs = block_entries(contents)
            blocks.append({'offset': bo, 'size': bs, 'type': btype, 'crc_ok': bok,
                           'entries': len(es), 'restarts': rs, 'index_key': last_key,
                           'trailer': bytes([btype]) + struct.pack('<I', bcrc)})
            entries.extend(es)
        f.seek(size - 48)
    return {'size': size, 'footer': footer, 'metaindex': (mo, ms, mtype, mok, len(meta)),
            'index': (io_, is_, itype, iok, len(ientries), irestarts), 'blocks': blocks,
            'entries': entries}


def oc_read_num(b, i):
    n = b[i]
    return int.from_bytes(b[i + 1:i + 1 + n], 'big'), i + 1 + n


def oc_read_string(b, i):
    out = bytearray()
    while True:
        c = b[i]
        if c == 0x00:
            if b[i + 1] == 0x01:
                return bytes(out), i + 2
            assert b[i + 1] == 0xFF
            out.append(0)
            i += 2
        elif c == 0xFF:
            assert b[i + 1] == 0x00
            out.append(0xFF)
            i += 2
        else:
            out.append(c)
            i += 1


def oc_read_signed(b, i):
    c = b[i]
    xor = 0 if c & 0x80 else 0xFF
    first = c ^ xor
    n = 0
    while n < 8 and first & (0x80 >> n):
        n += 1
    assert 1 <= n <= 7, 'long signed varints not handled here'
    raw = int.from_bytes(b[i:i + n], 'big')
    mask = ((1 << n) - 1) << (8 * n - n)
    x = ((-1 << (8 * n)) | raw) if xor else raw
    return x ^ mask, i + n


def decode_slice_key(key):
    zero, i = oc_read_num(key, 0)
    assert zero == 0
    name, i = oc_read_string(key, i)
    rank, i = oc_read_num(key, i)
    ext = []
    for _ in range(rank):
        s, i = oc_read_signed(key, i)
        ln, i = oc_read_signed(key, i)
        ext.append((s, ln))
    assert i == len(key)
    return name.decode(), rank, ext


def cmd_dump(a):
    from google.protobuf import text_format
    from tensorflow.core.protobuf import tensor_bundle_pb2
    from tensorflow.core.util import saved_tensor_slice_pb2
    path = a.path
    v2 = path.endswith('.index')
    t = read_table(path)
    print('file %s: %d bytes' % (path, t['size']))
    print('footer (48 bytes):', t['footer'].hex(' '))
    print('  metaindex handle off=%d size=%d type=%d crc_ok=%s (contents %d bytes)'
          % t['metaindex'])
    print('  index handle off=%d size=%d type=%d crc_ok=%s, %d entries, restarts %s'
          % t['index'])
    for blk in t['blocks']:
        print('data block off=%d size=%d type=%d crc_ok=%s entries=%d restarts=%s trailer=%s '
              'index key=%r' % (blk['offset'], blk['size'], blk['type'], blk['crc_ok'],
                                blk['entries'], blk['restarts'][:8], blk['trailer'].hex(' '),
                                blk['index_key'][:40]))
    for key, val, shared in t['entries'][:a.limit]:
        print('-' * 80)
        print('key (%d bytes, %d shared with previous) %s' % (len(key), shared, key.hex(' ')))
        if v2:
            if key == b'':
                m = tensor_bundle_pb2.BundleHeaderProto.FromString(val)
                print('  "" -> BundleHeaderProto', text_format.MessageToString(m, as_one_line=True))
            else:
                m = tensor_bundle_pb2.BundleEntryProto.FromString(val)
                print('  %r -> BundleEntryProto' % key[:60],
                      text_format.MessageToString(m, as_one_line=True)[:300])
            continue
        sts = saved_tensor_slice_pb2.SavedTensorSlices.FromString(val)
        if key == b'':
            print('  "" -> SavedTensorSlices.meta:')
            for tm in sts.meta.tensor[:a.limit]:
                print('    ', text_format.MessageToString(tm, as_one_line=True))
            print('     versions', text_format.MessageToString(sts.meta.versions,
                                                            as_one_line=True))
            print('     value bytes: %s' % val[:64].hex(' '))
        else:
            name, rank, ext = decode_slice_key(key)
            d = sts.data
            print('  OrderedCode: 0, name=%r, rank=%d, (start,length)=%s' % (name, rank, ext))
            tp = d.data
            fields = [fd.name for fd, _ in tp.ListFields()]
            print('  SavedSlice name=%r slice=%s; TensorProto fields=%s dtype=%s shape=%s'
                  % (d.name, text_format.MessageToString(d.slice, as_one_line=True), fields,
                     tp.dtype, text_format.MessageToString(tp.tensor_shape, as_one_line=True)))
            print('  value head: %s' % val[:48].hex(' '))


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('fixtures', help='tiny + partitioned checkpoints, input, logits')
    p.add_argument('--out', default=None, help='default fixtures/frameworks/slim')
    p.set_defaults(fn=cmd_fixtures)
    p = sub.add_parser('full', help='full-size resnet_v1_50, random weights, V1 + tar.gz + V2')
    p.add_argument('--out', required=True)
    p.add_argument('--skip-check', action='store_true', help="skip reading everything back")
    p.add_argument('--calibrate', metavar='X.npy', default=None,
                   help='NCHW float32 batch: set BN moving stats to the batch statistics of '
                        "slim's is_training=True graph on it (well-scaled logits)")
    p.set_defaults(fn=cmd_full)
    p = sub.add_parser('protocol', help='2016 vgg eval preprocessing on common.PHOTOS')
    p.add_argument('--json', default=os.path.join(common.IMAGES, 'slim_protocol.json'))
    p.add_argument('--tensors', default='/tmp/slim_protocol')
    p.add_argument('--extra', nargs='*', default=['coffee_cmyk.jpg'],
                   help='more files of fixtures/images to try (recorded separately if TF fails)')
    p.set_defaults(fn=cmd_protocol)
    p = sub.add_parser('logits', help='logits of slim resnet_v1_50 (or --tiny) from a checkpoint')
    p.add_argument('--ckpt', required=True, help='V1 file or V2 prefix')
    p.add_argument('--scope', default=None, help='default resnet_v1_50 (resnet_v1_tiny --tiny)')
    p.add_argument('--tiny', action='store_true')
    p.add_argument('--input', required=True, help='NCHW float32 .npy ([3,H,W] or [N,3,H,W])')
    p.add_argument('--out', required=True)
    p.set_defaults(fn=cmd_logits)
    p = sub.add_parser('dump', help="print a checkpoint's table and proto structure")
    p.add_argument('path', help='V1 file or V2 .index file')
    p.add_argument('--limit', type=int, default=12)
    p.set_defaults(fn=cmd_dump)
    a = ap.parse_args()
    a.fn(a)


if __name__ == '__main__':
    main()
