"""Torch7 (.t7) reference work for the fb.resnet.torch ResNet-50 baseline (resnet-50.t7).

No Lua is needed: this file holds
  * a Torch7 binary *writer* that follows torch7's File.lua writeObject byte for byte
    (type tags, reference indices, "V <version>" + class name headers, Tensor/Storage layouts);
  * a *strict* reader (bounds-checked, class allow-list, no functions, depth limit) used to
    check every file written here, and to check that each hostile file fails for its reason;
  * an independent PyTorch implementation of the Torch7 layer semantics that walks the module
    tree as read back by `torchfile` (so the logits test the file, not the in-memory model);
  * the fb.resnet.torch released-model layout (see RESEARCH below) at tiny and full size.

Run (from the repository root; /opt/timmvenv has numpy, torch, torchfile, opencv):

  PY=/opt/timmvenv/bin/python
  $PY eval/reference/baselines/torch7.py selftest            # writer round trips via torchfile + strict reader
  $PY eval/reference/baselines/torch7.py fixtures            # writes fixtures/frameworks/torch7/
  $PY eval/reference/baselines/torch7.py full --out /tmp/fb  # full-size random ResNet-50 -> /tmp/fb/resnet-50.t7
  $PY eval/reference/baselines/torch7.py logits --t7 /tmp/fb/resnet-50.t7 --input x.npy --out y.npy [--opencv]
  $PY eval/reference/baselines/torch7.py check FILE.t7 ...   # strict reader verdict per file
  $PY eval/reference/baselines/torch7.py tree FILE.t7        # module tree summary (via torchfile)
  $PY eval/reference/baselines/torch7.py reencode FILE.t7    # read into writer objects, re-write, compare bytes
                                                             # (13 files written by real Torch, from the torchfile
                                                             # package's tests, re-encode byte-identically)

`fixtures` writes tiny.t7 (CudaTensor, BN V2 running_var), tiny_float_oldbn.t7 (FloatTensor, BN V1
running_std, no gradWeight/gradBias), tiny_flat.t7 (getParameters()-flattened storages), input.npy,
logits.npy, logits_float_oldbn.npy, formats/*.t7 (valid edge cases), hostile/*.t7 and manifest.json.
Deterministic: rerunning gives byte-identical files.

RESEARCH (sources: torch/torch7 File.lua, generic/Tensor.c, generic/Storage.c, lib/luaT/luaT.c,
lib/TH/THDiskFile.c; torch/nn; soumith/cudnn.torch; facebookarchive/fb.resnet.torch; see the
report / manifest.json for quotes):
  * Every value: int32 type tag (0 nil, 1 number, 2 string, 3 table, 4 torch object, 5 boolean,
    6 function, 7 legacy recursive function, 8 recursive function), then
      number  -> float64;  boolean -> int32 (1 true, 0 false);  string -> int32 length + bytes;
      table   -> int32 index, then (if new) int32 pair count and count (key, value) objects;
      torch   -> int32 index, then (if new) string "V <version>" (int32 len + bytes), string
                 class name, then the class's write() payload or, without one, its fields
                 written as a fresh table (which takes the next index);
      function 8/7 -> int32 index, then (if new) int32 len + bytecode, then the upvalues table;
      function 6   -> no index: int32 len + bytecode + upvalues (only readObject handles it).
    Indices count tables, torch objects and functions in write order from 1; an object written
    a second time (same pointer) is written as tag + index only. The reader's legacy rule: when
    the first string does not match "^V (.*)$" it is the class name and the version is 0.
  * All scalars are native-endian (little-endian on x86); long = 8 bytes (torch.load(f, 'b32')
    reads files made where long is 4 bytes).
  * Tensor payload: int32 nDimension, nDimension int64 sizes, nDimension int64 strides, int64
    storageOffset+1 (1-based), then the storage object (nil for a tensor with no storage).
    Storage payload: int64 element count, then the raw elements. CudaTensor/CudaStorage are
    float32 on disk (cutorch writes the host copy the same way).
  * Default class version is 1 (luaT: "by default, __version equals 1"); nn.BatchNormalization
    and nn.SpatialBatchNormalization have __version = 2 (since torch/nn a142233, 2016-01-04) and
    store running_var; version < 2 stored running_std = E[1/sqrt(var + eps)] (an inverse std),
    converted on load by BN:read: running_var = running_std^-2 - eps.
"""
import argparse
import hashlib
import io
import json
import os
import platform
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OUT_DIR = os.path.join(common.FRAMEWORKS, 'torch7')
WEIGHT_SEED = 20160204   # the torch.ch ResNet blog post's date
INPUT_SEED = 7

TYPE_NIL, TYPE_NUMBER, TYPE_STRING, TYPE_TABLE, TYPE_TORCH, TYPE_BOOLEAN = 0, 1, 2, 3, 4, 5
TYPE_FUNCTION, LEGACY_TYPE_RECUR_FUNCTION, TYPE_RECUR_FUNCTION = 6, 7, 8

TENSOR_DTYPES = {
    'torch.FloatTensor': ('torch.FloatStorage', np.float32),
    'torch.CudaTensor': ('torch.CudaStorage', np.float32),
    'torch.DoubleTensor': ('torch.DoubleStorage', np.float64),
    'torch.CudaDoubleTensor': ('torch.CudaDoubleStorage', np.float64),
    'torch.LongTensor': ('torch.LongStorage', np.int64),
    'torch.IntTensor': ('torch.IntStorage', np.int32),
    'torch.ByteTensor': ('torch.ByteStorage', np.uint8),
    'torch.CharTensor': ('torch.CharStorage', np.int8),
}
STORAGE_DTYPES = {s: d for (s, d) in TENSOR_DTYPES.values()}
STORAGE_OF = {t: s for t, (s, _) in TENSOR_DTYPES.items()}


# ------------------------------------------------------------------------------------------
# Writer
# ------------------------------------------------------------------------------------------

class Storage:
    """A torch.*Storage: element count + raw elements."""

    version = 1                      # None: legacy header (class name only)

    def __init__(self, cls, data):
        self.cls = cls
        self.data = np.ascontiguousarray(data, dtype=STORAGE_DTYPES[cls]).reshape(-1)


class Tensor:
    """A torch.*Tensor view: sizes, strides, 0-based offset into a Storage (or None)."""

    version = 1

    def __init__(self, cls, storage=None, size=(), stride=None, offset=0):
        self.cls = cls
        self.storage = storage
        self.size = tuple(int(s) for s in size)
        if stride is None:
            stride, acc = [], 1
            for s in reversed(self.size):
                stride.insert(0, acc)
                acc *= s
        self.stride = tuple(int(s) for s in stride)
        self.offset = int(offset)

    @classmethod
    def of(cls, tcls, arr):
        arr = np.ascontiguousarray(arr, dtype=TENSOR_DTYPES[tcls][1])
        return cls(tcls, Storage(STORAGE_OF[tcls], arr.reshape(-1)), arr.shape)

    @classmethod
    def empty(cls, tcls):
        """torch.Tensor() / after :set(): no dimension, no storage (written as nil)."""
        return cls(tcls, None, ())

    def array(self):
        if self.storage is None or not self.size:
            return np.zeros((0,), TENSOR_DTYPES[self.cls][1])
        st = self.storage.data
        item = st.dtype.itemsize
        return np.lib.stride_tricks.as_strided(st[self.offset:], self.size,
                                               [s * item for s in self.stride]).copy()


class TorchObj:
    """A Lua torch class instance without its own write(): header, then its fields as a table."""

    def __init__(self, cls, fields, version=1):
        self.cls = cls
        self.fields = fields          # dict (insertion order = write order)
        self.version = version


class LuaTable:
    """An explicit Lua table: list of (key, value) pairs in write order."""

    def __init__(self, pairs):
        self.pairs = list(pairs)


class LuaFunction:
    """A serialized Lua function: tag 8 (indexed) or 6 (no index), bytecode, upvalues."""

    def __init__(self, bytecode, upvalues, tag=TYPE_RECUR_FUNCTION):
        self.bytecode, self.upvalues, self.tag = bytecode, upvalues, tag


def lua_array(items):
    return LuaTable([(float(i + 1), v) for i, v in enumerate(items)])


class T7Writer:
    """torch7 File.lua writeObject, binary mode, little-endian, 8-byte long."""

    def __init__(self, f, legacy=False):
        self.f = f
        self.legacy = legacy          # write class headers without the "V n" string (version 0)
        self.index = {}               # id(obj) -> reference index
        self.keep = []                # keep written objects alive so id() is not reused
        self.n = 0

    # scalars
    def int(self, v):
        self.f.write(struct.pack('<i', v))

    def long(self, v):
        self.f.write(struct.pack('<q', v))

    def double(self, v):
        self.f.write(struct.pack('<d', v))

    def string(self, s):
        if isinstance(s, str):
            s = s.encode('utf-8')
        self.int(len(s))
        self.f.write(s)

    def _ref(self, obj, tag):
        """Tag + index; returns True when the object still has to be written."""
        self.int(tag)
        key = id(obj)
        if key in self.index:
            self.int(self.index[key])
            return False
        self.n += 1
        self.index[key] = self.n
        self.keep.append(obj)
        self.int(self.n)
        return True

    def _fresh_index(self, tag):
        self.int(tag)
        self.n += 1
        self.int(self.n)

    def _header(self, cls, version):
        if not self.legacy and version is not None:
            self.string('V %s' % ('%d' % version if float(version).is_integer() else repr(version)))
        self.string(cls)

    def obj(self, o):
        if o is None:
            self.int(TYPE_NIL)
        elif isinstance(o, (bool, np.bool_)):
            self.int(TYPE_BOOLEAN)
            self.int(1 if o else 0)
        elif isinstance(o, (int, float, np.integer, np.floating)):
            self.int(TYPE_NUMBER)
            self.double(float(o))
        elif isinstance(o, (str, bytes)):
            self.int(TYPE_STRING)
            self.string(o)
        elif isinstance(o, Tensor):
            if self._ref(o, TYPE_TORCH):
                self._header(o.cls, o.version)
                self.int(len(o.size))
                for s in o.size:
                    self.long(s)
                for s in o.stride:
                    self.long(s)
                self.long(o.offset + 1)
                self.obj(o.storage)
        elif isinstance(o, Storage):
            if self._ref(o, TYPE_TORCH):
                self._header(o.cls, o.version)
                self.long(o.data.size)
                self.f.write(o.data.astype(o.data.dtype.newbyteorder('<'), copy=False).tobytes())
        elif isinstance(o, TorchObj):
            if self._ref(o, TYPE_TORCH):
                self._header(o.cls, o.version)
                # Module:write / File.lua: a fresh table of the fields (takes the next index)
                self._fresh_index(TYPE_TABLE)
                self.int(len(o.fields))
                for k, v in (o.fields.items() if isinstance(o.fields, dict) else o.fields):
                    self.obj(k)
                    self.obj(v)
        elif isinstance(o, LuaFunction):
            if o.tag == TYPE_FUNCTION:
                self.int(TYPE_FUNCTION)
                self.string(o.bytecode)
                self.obj(o.upvalues)
            elif self._ref(o, o.tag):
                self.string(o.bytecode)
                self.obj(o.upvalues)
        elif isinstance(o, LuaTable):
            if self._ref(o, TYPE_TABLE):
                self.int(len(o.pairs))
                for k, v in o.pairs:
                    self.obj(k)
                    self.obj(v)
        elif isinstance(o, dict):
            if self._ref(o, TYPE_TABLE):
                self.int(len(o))
                for k, v in o.items():
                    self.obj(k)
                    self.obj(v)
        elif isinstance(o, list):
            if self._ref(o, TYPE_TABLE):
                self.int(len(o))
                for i, v in enumerate(o):
                    self.obj(float(i + 1))
                    self.obj(v)
        else:
            raise TypeError('unwritable object %r' % (type(o),))


def t7_bytes(obj, legacy=False):
    buf = io.BytesIO()
    T7Writer(buf, legacy=legacy).obj(obj)
    return buf.getvalue()


def save(path, obj, legacy=False):
    data = t7_bytes(obj, legacy)
    with open(path, 'wb') as f:
        f.write(data)
    return len(data)


# ------------------------------------------------------------------------------------------
# Strict reader (independent of torchfile): the rules a safe Rust reader should enforce
# ------------------------------------------------------------------------------------------

ALLOWED_CLASSES = {
    'nn.Sequential', 'nn.ConcatTable', 'nn.CAddTable', 'nn.Identity', 'nn.View', 'nn.Linear',
    'nn.SpatialConvolution', 'cudnn.SpatialConvolution', 'nn.SpatialBatchNormalization',
    'cudnn.SpatialBatchNormalization', 'nn.ReLU', 'cudnn.ReLU', 'nn.SpatialMaxPooling',
    'cudnn.SpatialMaxPooling', 'nn.SpatialAveragePooling', 'cudnn.SpatialAveragePooling',
} | set(TENSOR_DTYPES) | set(STORAGE_DTYPES)


class T7Error(Exception):
    def __init__(self, kind, msg):
        super().__init__('%s: %s' % (kind, msg))
        self.kind = kind


class StrictReader:
    MAX_DEPTH = 256
    MAX_NDIM = 16

    def __init__(self, data, allowed=ALLOWED_CLASSES):
        self.b = memoryview(data)
        self.p = 0
        self.objects = {}             # index -> value (or the sentinel while being read)
        self.n = 0
        self.allowed = allowed
        self.depth = 0

    def need(self, k):
        if k < 0 or self.p + k > len(self.b):
            raise T7Error('truncated', 'need %d bytes at offset %d, file has %d' % (k, self.p, len(self.b)))

    def rd(self, fmt):
        k = struct.calcsize(fmt)
        self.need(k)
        v = struct.unpack_from(fmt, self.b, self.p)[0]
        self.p += k
        return v

    def int(self):
        return self.rd('<i')

    def long(self):
        return self.rd('<q')

    def string(self, what='string'):
        at = self.p
        n = self.int()
        if n < 0 or n > len(self.b) - self.p:
            raise T7Error('bad_length', '%s length %d at offset %d exceeds the %d bytes left'
                          % (what, n, at, len(self.b) - self.p))
        s = bytes(self.b[self.p:self.p + n])
        self.p += n
        return s

    def index(self):
        at = self.p
        i = self.int()
        if i in self.objects:
            if self.objects[i] is _BUSY:
                raise T7Error('cycle', 'reference to index %d while it is being read (offset %d)' % (i, at))
            return i, False
        if i != self.n + 1:
            raise T7Error('undefined_reference', 'index %d at offset %d is neither defined nor the next '
                          'fresh index %d' % (i, at, self.n + 1))
        self.n = i
        self.objects[i] = _BUSY
        return i, True

    def obj(self):
        self.depth += 1
        if self.depth > self.MAX_DEPTH:
            raise T7Error('too_deep', 'nesting deeper than %d at offset %d' % (self.MAX_DEPTH, self.p))
        try:
            return self._obj()
        finally:
            self.depth -= 1

    def _obj(self):
        at = self.p
        tag = self.int()
        if tag == TYPE_NIL:
            return None
        if tag == TYPE_NUMBER:
            return self.rd('<d')
        if tag == TYPE_BOOLEAN:
            v = self.int()
            if v not in (0, 1):
                raise T7Error('bad_boolean', 'boolean %d at offset %d' % (v, at))
            return v == 1
        if tag == TYPE_STRING:
            return self.string()
        if tag in (TYPE_FUNCTION, LEGACY_TYPE_RECUR_FUNCTION, TYPE_RECUR_FUNCTION):
            raise T7Error('function_not_allowed', 'Lua function (tag %d) at offset %d' % (tag, at))
        if tag == TYPE_TABLE:
            i, new = self.index()
            if not new:
                return self.objects[i]
            n = self.int()
            if n < 0 or n * 12 > len(self.b) - self.p:   # a pair takes at least 12 bytes
                raise T7Error('bad_length', 'table of %d pairs at offset %d' % (n, at))
            t = {}
            for _ in range(n):
                k = self.obj()
                if k is None or isinstance(k, (dict, TObj)):
                    raise T7Error('bad_key', 'table key of type %s at offset %d' % (type(k).__name__, self.p))
                if isinstance(k, bool):
                    k = ('bool', k)           # Lua's true and 1 are distinct keys; Python's are not
                t[k] = self.obj()
            self.objects[i] = t
            return t
        if tag == TYPE_TORCH:
            i, new = self.index()
            if not new:
                return self.objects[i]
            first = self.string('version')
            if first.startswith(b'V '):
                try:
                    version = float(first[2:])
                except ValueError:
                    raise T7Error('bad_version', 'version string %r at offset %d' % (first, at))
                cls = self.string('class name')
            else:
                version, cls = 0, first            # legacy: no version string
            cls = cls.decode('latin-1')
            if self.allowed is not None and cls not in self.allowed:
                raise T7Error('class_not_allowed', 'class %r at offset %d' % (cls, at))
            if cls in STORAGE_DTYPES:
                v = self.storage(cls, at)
            elif cls in TENSOR_DTYPES:
                v = self.tensor(cls, at)
            else:
                fields = self.obj()
                if not isinstance(fields, dict):
                    raise T7Error('bad_object', '%s fields are not a table (offset %d)' % (cls, at))
                v = TObj(cls, version, fields)
            self.objects[i] = v
            return v
        raise T7Error('unknown_tag', 'type tag %d at offset %d' % (tag, at))

    def storage(self, cls, at):
        n = self.long()
        item = np.dtype(STORAGE_DTYPES[cls]).itemsize
        if n < 0 or n > (len(self.b) - self.p) // item:
            raise T7Error('storage_exceeds_file', '%s of %d elements at offset %d, %d bytes left'
                          % (cls, n, at, len(self.b) - self.p))
        a = np.frombuffer(self.b, dtype=np.dtype(STORAGE_DTYPES[cls]).newbyteorder('<'),
                          count=n, offset=self.p).astype(STORAGE_DTYPES[cls])
        self.p += n * item
        return a

    def tensor(self, cls, at):
        nd = self.int()
        if nd < 0 or nd > self.MAX_NDIM:
            raise T7Error('bad_tensor', '%s with %d dimensions at offset %d' % (cls, nd, at))
        size = [self.long() for _ in range(nd)]
        stride = [self.long() for _ in range(nd)]
        offset = self.long() - 1
        st = self.obj()
        if st is None:
            if nd != 0:
                raise T7Error('bad_tensor', '%s of %d dims without storage (offset %d)' % (cls, nd, at))
            return np.zeros((0,), TENSOR_DTYPES[cls][1])
        if not isinstance(st, np.ndarray) or st.dtype != np.dtype(TENSOR_DTYPES[cls][1]):
            raise T7Error('bad_tensor', '%s storage of the wrong kind (offset %d)' % (cls, at))
        if any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
            raise T7Error('tensor_out_of_bounds', '%s negative size/stride/offset %s %s %d (offset %d)'
                          % (cls, size, stride, offset, at))
        if nd == 0 or 0 in size:
            return np.zeros([max(0, s) for s in size] or [0], TENSOR_DTYPES[cls][1])
        last = offset + sum((s - 1) * d for s, d in zip(size, stride))   # Python ints: no overflow
        if last >= len(st) or last >= 2 ** 63:
            raise T7Error('tensor_out_of_bounds', '%s size %s stride %s offset %d needs element %d, '
                          'storage has %d (offset %d)' % (cls, size, stride, offset, last, len(st), at))
        return np.lib.stride_tricks.as_strided(st[offset:], size, [d * st.dtype.itemsize for d in stride]).copy()


_BUSY = object()


class TObj:
    def __init__(self, cls, version, fields):
        self.cls, self.version, self.fields = cls, version, fields


class MirrorReader(StrictReader):
    """Reads a file into the writer's own objects (LuaTable, TorchObj, Tensor, Storage, LuaFunction),
    keeping pair order, legacy headers and sharing, so that T7Writer can re-encode it: a byte-identical
    re-encoding checks the writer against files written by real Torch. Any class, functions allowed."""

    def __init__(self, data):
        super().__init__(data, allowed=None)
        self.MAX_DEPTH = 100000

    def _obj(self):
        at = self.p
        tag = self.int()
        if tag in (TYPE_NIL, TYPE_NUMBER, TYPE_STRING, TYPE_BOOLEAN):
            self.p = at
            return StrictReader._obj(self)
        if tag == TYPE_FUNCTION:
            code = self.string('bytecode')
            return LuaFunction(code, self.obj(), TYPE_FUNCTION)
        i = self.int()
        if i in self.objects:
            return self.objects[i]
        if i != self.n + 1:
            raise T7Error('undefined_reference', 'index %d at offset %d' % (i, at))
        self.n = i
        if tag in (TYPE_RECUR_FUNCTION, LEGACY_TYPE_RECUR_FUNCTION):
            f = LuaFunction(None, None, tag)
            self.objects[i] = f
            f.bytecode = self.string('bytecode')
            f.upvalues = self.obj()
            return f
        if tag == TYPE_TABLE:
            t = LuaTable([])
            self.objects[i] = t
            for _ in range(self.int()):
                k = self.obj()
                t.pairs.append((k, self.obj()))
            return t
        if tag != TYPE_TORCH:
            raise T7Error('unknown_tag', 'type tag %d at offset %d' % (tag, at))
        first = self.string('version')
        if first.startswith(b'V '):
            version, cls = float(first[2:]), self.string('class name').decode('latin-1')
        else:
            version, cls = None, first.decode('latin-1')
        if cls in STORAGE_DTYPES:
            o = Storage(cls, np.zeros(0))
            self.objects[i] = o
            o.data = StrictReader.storage(self, cls, at)
        elif cls in TENSOR_DTYPES:
            o = Tensor(cls)
            self.objects[i] = o
            nd = self.int()
            o.size = tuple(self.long() for _ in range(nd))
            o.stride = tuple(self.long() for _ in range(nd))
            o.offset = self.long() - 1
            o.storage = self.obj()
        else:
            o = TorchObj(cls, {})
            self.objects[i] = o
            ftag, fidx = struct.unpack_from('<ii', self.b, self.p)
            if ftag != TYPE_TABLE or fidx != self.n + 1:
                raise T7Error('bad_object', '%s is not followed by a fresh field table (offset %d); '
                              'a class with its own write() cannot be mirrored' % (cls, at))
            fields = self.obj()
            o.fields = fields.pairs         # list of pairs: keys may be any Lua value
        o.version = version
        return o


def reencode(path):
    """(identical?, original size, first differing offset or None)."""
    data = open(path, 'rb').read()
    r = MirrorReader(data)
    obj = r.obj()
    out = t7_bytes(obj)
    diff = next((k for k in range(min(len(out), r.p)) if out[k] != data[k]), None)
    if diff is None and len(out) != r.p:
        diff = min(len(out), r.p)
    return diff is None, len(data), diff


def strict_load(path_or_bytes, allowed=ALLOWED_CLASSES):
    data = path_or_bytes if isinstance(path_or_bytes, (bytes, bytearray)) else open(path_or_bytes, 'rb').read()
    r = StrictReader(data, allowed)
    v = r.obj()
    return v, {'bytes': len(data), 'trailing_bytes': len(data) - r.p, 'objects': r.n}


def strict_verdict(path):
    try:
        _, info = strict_load(path)
        return 'ok', info
    except T7Error as e:
        return e.kind, str(e)


# ------------------------------------------------------------------------------------------
# The fb.resnet.torch released-model layout
# ------------------------------------------------------------------------------------------

def gen_params(width, layers, classes, seed):
    """Random weights keyed by torchvision-style names (bn3 = the BN after the addition)."""
    r = common.rng(seed)
    p = {}

    def conv(name, nout, nin, k):
        p[name + '.weight'] = common.he(r, (nout, nin, k, k), nin * k * k)
        p[name + '.bias'] = (0.05 * r.standard_normal(nout)).astype(np.float32)

    def bn(name, c):
        g, b, m, v = common.bn_params(r, c)
        p[name + '.weight'], p[name + '.bias'] = g, b
        p[name + '.running_mean'], p[name + '.running_var'] = m, v

    conv('conv1', width, 3, 7)
    bn('bn1', width)
    cin = width
    for s, n in enumerate(layers):
        planes = width << s
        for b in range(n):
            pre = 'layer%d.%d.' % (s + 1, b)
            conv(pre + 'conv1', planes, cin, 1)
            bn(pre + 'bn1', planes)
            conv(pre + 'conv2', planes, planes, 3)
            bn(pre + 'bn2', planes)
            conv(pre + 'conv3', planes * 4, planes, 1)
            if b == 0:
                conv(pre + 'downsample.0', planes * 4, cin, 1)
            bn(pre + 'bn3', planes * 4)
            cin = planes * 4
    p['fc.weight'] = common.he(r, (classes, cin), cin)
    p['fc.bias'] = (0.1 * r.standard_normal(classes)).astype(np.float32)
    return p


def calibrate(params, width, layers, x, seed):
    """Sets each BN's running statistics near the batch statistics of its input on `x` (a
    calibration batch, not the test input), so that activations stay O(1) through the network;
    mean += 0.1 std N(0,1), var *= exp(0.2 N(0,1)). gamma/beta keep their random values."""
    torch = _import_torch()
    import torch.nn.functional as F
    r = common.rng(seed)
    P = {k: to_torch(v, np.float64) for k, v in params.items()}

    def conv(name, h, s, pad):
        return F.conv2d(h, P[name + '.weight'], P[name + '.bias'], stride=s, padding=pad)

    def bn(name, h):
        m = h.mean(dim=(0, 2, 3))
        v = h.var(dim=(0, 2, 3), unbiased=False)
        c = m.shape[0]
        mean = np.array(m.tolist()) + 0.1 * np.sqrt(np.array(v.tolist())) * r.standard_normal(c)
        var = np.array(v.tolist()) * np.exp(0.2 * r.standard_normal(c))
        params[name + '.running_mean'] = mean.astype(np.float32)
        params[name + '.running_var'] = var.astype(np.float32)
        P[name + '.running_mean'] = to_torch(params[name + '.running_mean'], np.float64)
        P[name + '.running_var'] = to_torch(params[name + '.running_var'], np.float64)
        return F.batch_norm(h, P[name + '.running_mean'], P[name + '.running_var'],
                            P[name + '.weight'], P[name + '.bias'], False, 0.0, 1e-5)

    with torch.no_grad():
        h = torch.relu(bn('bn1', conv('conv1', to_torch(x, np.float64), 2, 3)))
        h = F.max_pool2d(h, 3, 2, 1)
        for si, n in enumerate(layers):
            for b in range(n):
                pre = 'layer%d.%d.' % (si + 1, b)
                stride = 2 if (si > 0 and b == 0) else 1
                y = torch.relu(bn(pre + 'bn1', conv(pre + 'conv1', h, 1, 0)))
                y = torch.relu(bn(pre + 'bn2', conv(pre + 'conv2', y, stride, 1)))
                y = conv(pre + 'conv3', y, 1, 0)
                sc = conv(pre + 'downsample.0', h, stride, 0) if b == 0 else h
                h = torch.relu(bn(pre + 'bn3', y + sc))
    return params


class Builder:
    """Builds the module tree as fb.resnet.torch's released ResNet-50 holds it (see RESEARCH).

    ttype:  'torch.CudaTensor' (released files: model:cuda()) or 'torch.FloatTensor'.
    bn:     'var'  -> nn.SpatialBatchNormalization "V 2" with running_var (nn since 2016-01-04);
            'std'  -> "V 1" with running_std = 1/sqrt(var + eps) (older nn).
    flat:   weights/biases as views of one flat storage, gradWeights of another, as
            model:getParameters() leaves them (train.lua; checkpoints saved the model as is).
    grads:  'full' (gradWeight/gradBias of the weights' shapes, zeros) or 'none'.
    """

    def __init__(self, params, ttype='torch.CudaTensor', bn='var', flat=False, grads='full',
                 type_field=False, batch=2, save_seed=1):
        self.p = params
        self.t = ttype
        self.bn_mode = bn
        self.flat = flat
        self.grads = grads
        self.type_field = type_field
        self.batch = batch
        self.r = common.rng(save_seed)      # for the BN save_mean/save_std buffers
        self.param_tensors = []             # (name, weight Tensor, grad Tensor) in parameters() order
        self.summary = []

    def T(self, arr):
        return Tensor.of(self.t, arr)

    def E(self):
        return Tensor.empty(self.t)

    def base(self, fields, out=True, grad_in=True):
        f = {}
        if out:
            f['output'] = out if isinstance(out, Tensor) else self.E()
        if grad_in:
            f['gradInput'] = self.E()
        f['train'] = False
        f.update(fields)
        if self.type_field:
            f['_type'] = self.t
        return f

    def param(self, name, fields, key, arr):
        w = self.T(arr)
        fields[key] = w
        g = None
        if self.grads == 'full':
            g = self.T(np.zeros_like(arr))
            fields['grad' + key[0].upper() + key[1:]] = g
        self.param_tensors.append((name, w, g))

    def conv(self, name, nin, nout, k, s, pad, hw, grad_in=True):
        h, w = hw
        oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
        f = {'nInputPlane': nin, 'nOutputPlane': nout, 'kW': k, 'kH': k, 'dW': s, 'dH': s,
             'padW': pad, 'padH': pad, 'groups': 1}
        self.param(name + '.weight', f, 'weight', self.p[name + '.weight'])
        self.param(name + '.bias', f, 'bias', self.p[name + '.bias'])
        # cudnn.SpatialConvolution:createIODescriptors state (plain Lua values, written as is)
        f['iSize'] = Storage('torch.LongStorage', [self.batch, nin, h, w])
        f['input_offset'] = nin * h * w
        f['output_offset'] = nout * oh * ow
        f['weight_offset'] = nin * nout * k * k
        m = TorchObj('cudnn.SpatialConvolution', self.base(f, grad_in=grad_in))
        self.summary.append(('cudnn.SpatialConvolution', name, '%d->%d %dx%d/%d pad %d bias' % (nin, nout, k, k, s, pad)))
        return m, (oh, ow)

    def bn(self, name, c):
        f = {'eps': 1e-5, 'momentum': 0.1, 'affine': True}
        mean = self.p[name + '.running_mean']
        var = self.p[name + '.running_var']
        if self.bn_mode == 'var':
            f['running_mean'] = self.T(mean)
            f['running_var'] = self.T(var)
            # THNN buffers left by the last training forward (batch statistics, not running ones)
            f['save_mean'] = self.T((0.3 * self.r.standard_normal(c)).astype(np.float32))
            f['save_std'] = self.T((1 + self.r.random(c)).astype(np.float32))
            version = 2
        else:
            f['running_mean'] = self.T(mean)
            f['running_std'] = self.T((1.0 / np.sqrt(var.astype(np.float64) + 1e-5)).astype(np.float32))
            f['buffer'] = self.E()
            f['std'] = self.T((1 + self.r.random(c)).astype(np.float32))   # batch inv-std buffer
            version = 1
        self.param(name + '.weight', f, 'weight', self.p[name + '.weight'])
        self.param(name + '.bias', f, 'bias', self.p[name + '.bias'])
        self.summary.append(('nn.SpatialBatchNormalization', name,
                             '%d V%d %s' % (c, version, 'running_var' if version == 2 else 'running_std')))
        return TorchObj('nn.SpatialBatchNormalization', self.base(f), version=version)

    def relu(self):
        return TorchObj('cudnn.ReLU', self.base({'inplace': True, 'mode': 'CUDNN_ACTIVATION_RELU'}))

    def seq(self, mods, grad_in=True, out=None):
        """nn.Sequential: its output is its last module's output tensor (the same object)."""
        last_out = mods[-1].fields.get('output')
        f = {}
        f['output'] = last_out if isinstance(last_out, Tensor) else self.E()
        if grad_in:
            first_gi = mods[0].fields.get('gradInput')
            f['gradInput'] = first_gi if isinstance(first_gi, Tensor) else self.E()
        f['train'] = False
        f['modules'] = lua_array(mods)
        if self.type_field:
            f['_type'] = self.t
        return TorchObj('nn.Sequential', f)

    def build(self, width, layers, classes, hw, avg_kernel=None):
        mods = []
        c1, hw = self.conv('conv1', 3, width, 7, 2, 3, hw, grad_in=False)   # model:get(1).gradInput = nil
        mods += [c1, self.bn('bn1', width), self.relu()]
        h, w = hw
        hw = ((h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1)
        mods.append(TorchObj('nn.SpatialMaxPooling', self.base({
            'kW': 3, 'kH': 3, 'dW': 2, 'dH': 2, 'padW': 1, 'padH': 1, 'ceil_mode': False,
            'indices': self.E()})))
        self.summary.append(('nn.SpatialMaxPooling', 'maxpool', '3x3/2 pad 1 floor'))
        cin = width
        prev_out = mods[-1].fields['output']
        for s, n in enumerate(layers):
            planes = width << s
            blocks = []
            for b in range(n):
                pre = 'layer%d.%d.' % (s + 1, b)
                stride = 2 if (s > 0 and b == 0) else 1
                a, hw1 = self.conv(pre + 'conv1', cin, planes, 1, 1, 0, hw)
                bn1 = self.bn(pre + 'bn1', planes)
                c2, hw2 = self.conv(pre + 'conv2', planes, planes, 3, stride, 1, hw1)
                bn2 = self.bn(pre + 'bn2', planes)
                c3, hw3 = self.conv(pre + 'conv3', planes, planes * 4, 1, 1, 0, hw2)
                branch = self.seq([a, bn1, self.relu(), c2, bn2, self.relu(), c3])
                if b == 0:   # projection: a bare 1x1 convolution, no BN (fb.resnet.torch #49)
                    short, _ = self.conv(pre + 'downsample.0', cin, planes * 4, 1, stride, 0, hw)
                else:
                    short = TorchObj('nn.Identity', self.base({}, out=prev_out))   # Identity: output = input
                    self.summary.append(('nn.Identity', pre + 'shortcut', ''))
                ct = TorchObj('nn.ConcatTable', {
                    'output': lua_array([branch.fields['output'], short.fields['output']]),
                    'gradInput': self.E(), 'train': False,
                    'modules': lua_array([branch, short])})
                add = TorchObj('nn.CAddTable', {'output': self.E(), 'gradInput': LuaTable([]),
                                                'train': False, 'inplace': True})
                self.summary.append(('nn.CAddTable', pre + 'add', 'inplace'))
                bn3 = self.bn(pre + 'bn3', planes * 4)            # BN after the addition
                blk = self.seq([ct, add, bn3, self.relu()])
                blocks.append(blk)
                prev_out = blk.fields['output']
                hw = hw3
                cin = planes * 4
            mods.append(self.seq(blocks))
        kh, kw = avg_kernel or hw
        mods.append(TorchObj('cudnn.SpatialAveragePooling', self.base({
            'kW': kw, 'kH': kh, 'dW': 1, 'dH': 1, 'padW': 0, 'padH': 0, 'ceil_mode': False,
            'count_include_pad': True, 'mode': 'CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING',
            'iSize': Storage('torch.LongStorage', [self.batch, cin, hw[0], hw[1]])})))
        self.summary.append(('cudnn.SpatialAveragePooling', 'avgpool', '%dx%d/1 (kW=%d kH=%d)' % (kh, kw, kw, kh)))
        mods.append(TorchObj('nn.View', self.base({
            'size': Storage('torch.LongStorage', [cin]), 'numElements': cin, 'numInputDims': 3})))
        self.summary.append(('nn.View', 'view', '(%d):setNumInputDims(3)' % cin))
        fc = {}
        self.param('fc.weight', fc, 'weight', self.p['fc.weight'])
        self.param('fc.bias', fc, 'bias', self.p['fc.bias'])
        fc['addBuffer'] = self.T(np.ones(self.batch, np.float32))
        mods.append(TorchObj('nn.Linear', self.base(fc)))
        self.summary.append(('nn.Linear', 'fc', '%d->%d' % (cin, classes)))
        root = self.seq(mods, grad_in=False)     # gradInput follows the first conv's (nil)
        if self.flat:
            self.flatten()
        return root

    def flatten(self):
        """getParameters(): every weight a view of one storage, every grad of another."""
        for which in (1, 2):
            ts = [t[which] for t in self.param_tensors if t[which] is not None]
            if not ts:
                continue
            flat = Storage(STORAGE_OF[self.t], np.concatenate([t.storage.data for t in ts]))
            off = 0
            for t in ts:
                n = t.storage.data.size
                t.storage, t.offset = flat, off
                off += n


def tf_load(path):
    """torchfile.load without its list heuristic: with numpy 2 the heuristic's `elem == obj` raises
    on a Lua array of tensors (e.g. nn.ConcatTable.output), so tables stay dicts keyed 1.0..n."""
    import torchfile
    return torchfile.load(path, use_list_heuristic=False)


def lua_list(t):
    """A Lua array (dict keyed 1..n, as tf_load returns it) as a Python list."""
    if t is None:
        return []
    if isinstance(t, list):
        return t
    keys = sorted(t)
    assert keys == list(range(1, len(keys) + 1)), keys
    return [t[k] for k in keys]


def module_tree(obj, depth=0, out=None):
    """Text summary of a torchfile-loaded module tree."""
    out = [] if out is None else out
    cls = obj.torch_typename().decode()
    f = obj._obj
    extra = ''
    if cls.endswith('SpatialConvolution'):
        extra = '(%d -> %d, %dx%d, %d,%d, %d,%d)%s' % (f[b'nInputPlane'], f[b'nOutputPlane'], f[b'kW'], f[b'kH'],
                                                       f[b'dW'], f[b'dH'], f[b'padW'], f[b'padH'],
                                                       '' if f.get(b'bias') is not None else ' without bias')
    elif cls.endswith('BatchNormalization'):
        extra = '(%d) V%d %s' % (len(f[b'running_mean']), obj._version_number,
                                 'running_var' if b'running_var' in f else 'running_std')
    elif cls.endswith('Pooling'):
        extra = '(kW=%d kH=%d, dW=%d dH=%d, padW=%d padH=%d)' % (f[b'kW'], f[b'kH'], f[b'dW'], f[b'dH'], f[b'padW'], f[b'padH'])
    elif cls == 'nn.Linear':
        extra = '(%d -> %d)' % (f[b'weight'].shape[1], f[b'weight'].shape[0])
    elif cls == 'nn.View':
        extra = '(%s) numInputDims=%s' % ([int(v) for v in f[b'size']], f.get(b'numInputDims'))
    out.append('  ' * depth + cls + extra)
    for m in lua_list(f.get(b'modules')):
        module_tree(m, depth + 1, out)
    return out


# ------------------------------------------------------------------------------------------
# Independent forward pass over the torchfile tree (Torch7 layer semantics, PyTorch ops)
# ------------------------------------------------------------------------------------------

def _import_torch():
    """torch, with the one-time 'compiled using NumPy 1.x' banner of this torch 1.13 build under
    numpy 2 swallowed (its numpy bridge is unusable; nothing here uses it)."""
    import contextlib
    import warnings
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        import torch
        torch.frombuffer(bytearray(8), dtype=torch.float64).reshape((1,))   # the first shape tuple triggers it
    return torch


def to_torch(a, dtype):
    """numpy -> torch without torch's numpy bridge (this torch 1.13 build predates numpy 2)."""
    torch = _import_torch()
    a = np.ascontiguousarray(a, dtype=dtype)
    td = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[a.dtype]
    if a.size == 0:
        return torch.zeros(a.shape, dtype=td)
    return torch.frombuffer(bytearray(a.tobytes()), dtype=td).reshape(a.shape)


def forward_t7(obj, x, dtype=np.float64):
    """Runs the module tree `obj` (as torchfile returns it) on NCHW `x`, computing in `dtype`."""
    torch = _import_torch()
    import torch.nn.functional as F

    def t(a):
        return to_torch(a, dtype)

    def run(m, x):
        cls = m.torch_typename().decode()
        f = m._obj
        kind = cls.split('.', 1)[1]
        if kind == 'Sequential':
            for sub in lua_list(f[b'modules']):
                x = run(sub, x)
            return x
        if kind == 'ConcatTable':
            return [run(sub, x) for sub in lua_list(f[b'modules'])]
        if kind == 'CAddTable':
            y = x[0]
            for z in x[1:]:
                y = y + z
            return y
        if kind == 'Identity':
            return x
        if kind == 'SpatialConvolution':
            nout, nin, kh, kw = f[b'nOutputPlane'], f[b'nInputPlane'], f[b'kH'], f[b'kW']
            groups = f.get(b'groups') or 1
            w = t(f[b'weight']).reshape(nout, nin // groups, kh, kw)
            b = f.get(b'bias')
            b = t(b) if b is not None and np.size(b) else None
            return F.conv2d(x, w, b, stride=(f[b'dH'], f[b'dW']), padding=(f[b'padH'], f[b'padW']), groups=groups)
        if kind == 'SpatialBatchNormalization':
            eps = f[b'eps']
            mean = t(f[b'running_mean'])
            if b'running_var' in f:
                assert m._version_number >= 2, 'running_var in a V%d BatchNorm' % m._version_number
                inv = 1.0 / torch.sqrt(t(f[b'running_var']) + eps)
            else:
                assert m._version_number < 2 and b'running_std' in f
                inv = t(f[b'running_std'])        # old nn: running_std is already 1/sqrt(var+eps)
            y = (x - mean.view(1, -1, 1, 1)) * inv.view(1, -1, 1, 1)
            if f.get(b'affine', True) and f.get(b'weight') is not None:
                y = y * t(f[b'weight']).view(1, -1, 1, 1) + t(f[b'bias']).view(1, -1, 1, 1)
            return y
        if kind == 'ReLU':
            return torch.relu(x)
        if kind == 'SpatialMaxPooling':
            return F.max_pool2d(x, (f[b'kH'], f[b'kW']), (f[b'dH'], f[b'dW']), (f[b'padH'], f[b'padW']),
                                ceil_mode=bool(f.get(b'ceil_mode', False)))
        if kind == 'SpatialAveragePooling':
            return F.avg_pool2d(x, (f[b'kH'], f[b'kW']), (f[b'dH'], f[b'dW']), (f.get(b'padH', 0), f.get(b'padW', 0)),
                                ceil_mode=bool(f.get(b'ceil_mode', False)),
                                count_include_pad=bool(f.get(b'count_include_pad', True)))
        if kind == 'View':
            size = [int(s) for s in f[b'size']]
            nid = f.get(b'numInputDims')
            if nid is not None and x.dim() > nid:
                return x.reshape(x.shape[0], *size)
            return x.reshape(*size)
        if kind == 'Linear':
            y = x @ t(f[b'weight']).T
            if f.get(b'bias') is not None:
                y = y + t(f[b'bias'])
            return y
        raise NotImplementedError(cls)

    with torch.no_grad():
        return np.array(run(obj, to_torch(x, dtype)).tolist(), dtype=dtype)


def torch_logits(path, x):
    return forward_t7(tf_load(path), x).astype(np.float32)


def opencv_logits(path, x):
    import cv2
    net = cv2.dnn.readNetFromTorch(path)
    if hasattr(net, 'enableWinograd'):
        net.enableWinograd(False)      # its 3x3 Winograd path alone costs ~2e-4 relative on ResNet-50
    net.setInput(np.ascontiguousarray(x, dtype=np.float32))
    return np.array(net.forward()).reshape(x.shape[0], -1).astype(np.float32)


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# ------------------------------------------------------------------------------------------
# Format edge cases (valid) and hostile files
# ------------------------------------------------------------------------------------------

def formats_cases():
    """Small valid files exercising the format, with the values a reader must produce."""
    cases = {}
    st = Storage('torch.FloatStorage', np.arange(12, dtype=np.float32))
    a = Tensor('torch.FloatTensor', st, (3, 4))
    cases['shared'] = (
        {'a': a, 'b': a, 'c': Tensor('torch.FloatTensor', st, (4, 2), (1, 4), 1),   # transposed view, offset
         'd': Tensor('torch.FloatTensor', st, (2,), (5,), 2), 'st': st},
        'a and b are one tensor (b is written as a reference); c, d and st share a\'s storage; '
        'c = storage[1 + i*1 + j*4] for i<4, j<2 (a strided view: sizes [4,2], strides [1,4], 1-based offset 2); '
        'd = [2, 7]',
        {'a': np.arange(12, dtype=np.float32).reshape(3, 4).tolist(),
         'c': [[1 + i + 4 * j for j in range(2)] for i in range(4)],
         'd': [2.0, 7.0]})
    cases['scalars'] = (
        LuaTable([('num', 1.5), ('int', 3), ('neg', -2.25), ('big', 2.0 ** 53), ('tiny', 5e-324),
                  ('yes', True), ('no', False), ('str', b'h\xc3\xa9llo\x00world'), ('empty', b''),
                  (1, 'one'), (2.5, 'two and a half'), (True, 'bool key'),    # 1 and true are distinct Lua keys
                  ('list', [10, 20, 30]), ('nested', {'x': {'y': {'z': 'deep'}}})]),
        'numbers are float64 (integers too); booleans are int32 1/0; strings are raw bytes (may hold NUL); '
        'keys may be numbers, strings or booleans; a Lua array is a table with keys 1.0..n',
        None)
    cases['double_long'] = (
        {'d': Tensor.of('torch.DoubleTensor', np.array([[1.0 / 3, -0.0], [1e300, -7.5]])),
         'l': Tensor.of('torch.LongTensor', np.array([1, -2, 2 ** 40])),
         'ls': Storage('torch.LongStorage', [2, 3, 61, 67]),
         'cuda': Tensor.of('torch.CudaTensor', np.array([1.5, -2.5], np.float32)),
         'empty': Tensor.empty('torch.FloatTensor'),
         'zero_size': Tensor('torch.FloatTensor', Storage('torch.FloatStorage', []), (0, 3), (3, 1))},
        'DoubleTensor (f64), LongTensor/LongStorage (i64), CudaTensor (f32 on disk), an empty tensor '
        '(nDimension 0, storage nil) and a 0x3 tensor over an empty storage',
        None)
    legacy_st = Storage('torch.FloatStorage', np.array([1, 2, 3, 4, 5, 6], np.float32))
    cases['legacy'] = (
        {'t': Tensor('torch.FloatTensor', legacy_st, (2, 3)), 'again': legacy_st},
        'the legacy (pre-versioning) header: the class name is the first string, no "V n" string; '
        'Lua reads it as version 0',
        {'t': [[1, 2, 3], [4, 5, 6]]})
    return cases


def deep_table_bytes(depth):
    """{[true] = {[true] = ... {}}}: depth tables, 20 bytes a level."""
    out = io.BytesIO()
    for i in range(depth):
        out.write(struct.pack('<iii', TYPE_TABLE, i + 1, 1 if i < depth - 1 else 0))
        if i < depth - 1:
            out.write(struct.pack('<ii', TYPE_BOOLEAN, 1))
    return out.getvalue()


def hostile_cases(tiny_bytes, cut):
    """name -> (bytes, expected strict-reader kind, description)."""
    P = struct.pack
    H = {}

    def hdr(cls, idx):
        c = cls.encode()
        return P('<ii', TYPE_TORCH, idx) + P('<i', 3) + b'V 1' + P('<i', len(c)) + c

    def s(x):
        x = x.encode() if isinstance(x, str) else x
        return P('<ii', TYPE_STRING, len(x)) + x

    # 1. reference to an index that was never written: table #1 = {a = {} (#2), b = <#7>, c = 1}
    H['forward_reference'] = (
        P('<iii', TYPE_TABLE, 1, 3) + s('a') + P('<iii', TYPE_TABLE, 2, 0)
        + s('b') + P('<ii', TYPE_TABLE, 7) + s('c') + P('<id', TYPE_NUMBER, 1.0),
        'undefined_reference',
        'table #1 = {a = {} (#2), b = <table #7>, c = 1}: #7 is written as a bare reference (tag + '
        'index, no body) although no object #7 exists and the next fresh index is #3. Lua File.lua '
        'would treat it as a new object and misparse the following bytes as its body; a strict '
        'reader must reject indices that are neither already defined nor exactly the next one.')
    # 2. a table that contains itself (legal Lua, a cycle)
    H['self_reference'] = (
        P('<iii', TYPE_TABLE, 1, 1) + s('self') + P('<ii', TYPE_TABLE, 1),
        'cycle',
        'table #1 = {self = <#1>}: a reference to an object still being read. Lua builds the cycle; '
        'a tree-building reader must not recurse forever (reject, or keep it as a back reference).')
    # 3. tensors whose size x stride does not fit their storage
    st10 = hdr('torch.FloatStorage', 2) + P('<q', 10) + np.arange(10, dtype='<f4').tobytes()
    H['tensor_out_of_bounds'] = (
        hdr('torch.FloatTensor', 1) + P('<i', 2) + P('<qq', 4, 4) + P('<qq', 4, 1) + P('<q', 1) + st10,
        'tensor_out_of_bounds',
        'FloatTensor sizes [4,4] strides [4,1] offset 1 (1-based) over a FloatStorage of 10 floats: '
        'it needs element 15 (0-based). Torch7 itself does not check this at load time.')
    H['tensor_offset_out_of_bounds'] = (
        hdr('torch.FloatTensor', 1) + P('<i', 1) + P('<q', 2) + P('<q', 1) + P('<q', 101) + st10,
        'tensor_out_of_bounds',
        'FloatTensor size [2] stride [1] with 1-based storageOffset 101 over a storage of 10 floats.')
    H['tensor_size_overflow'] = (
        hdr('torch.FloatTensor', 1) + P('<i', 2) + P('<qq', 2 ** 62, 4) + P('<qq', 4, 1) + P('<q', 1) + st10,
        'tensor_out_of_bounds',
        'FloatTensor sizes [2^62, 4] strides [4, 1]: (size-1)*stride overflows int64 (a reader that '
        'multiplies in i64 without checks wraps around and may accept it).')
    H['tensor_negative_size'] = (
        hdr('torch.FloatTensor', 1) + P('<i', 1) + P('<q', -5) + P('<q', 1) + P('<q', 1) + st10,
        'tensor_out_of_bounds',
        'FloatTensor with size [-5].')
    H['tensor_huge_ndim'] = (
        hdr('torch.FloatTensor', 1) + P('<i', 0x7FFFFFFF) + P('<q', 1),
        'bad_tensor',
        'FloatTensor with nDimension 2^31-1 (would make a reader allocate 2 x 16 GiB of sizes/strides).')
    # 4. storage count larger than the file
    H['storage_count_exceeds_file'] = (
        hdr('torch.FloatStorage', 1) + P('<q', 2 ** 40) + np.ones(4, '<f4').tobytes(),
        'storage_exceeds_file',
        'FloatStorage claiming 2^40 elements (4 TiB) followed by 16 bytes: a reader must check the '
        'count against the bytes left before allocating.')
    H['storage_negative_count'] = (
        hdr('torch.FloatStorage', 1) + P('<q', -1),
        'storage_exceeds_file',
        'FloatStorage with element count -1.')
    # 5. classes and functions that must not be loaded
    H['class_not_allowed'] = (
        hdr('nn.Lambda', 1) + P('<iii', TYPE_TABLE, 2, 1) + s('output') + P('<i', TYPE_NIL),
        'class_not_allowed',
        'a torch object of class nn.Lambda (not a module of this network; in Lua an unknown class '
        'fails with "unknown Torch class", a registered one would run its read()).')
    bytecode = b'\x1bLJ\x01\x02' + b'\x00' * 11     # a LuaJIT bytecode header, not a real chunk
    H['function_bytecode'] = (
        hdr('nn.Identity', 1) + P('<iii', TYPE_TABLE, 2, 1) + s('updateOutput')
        + P('<ii', TYPE_RECUR_FUNCTION, 3) + P('<i', len(bytecode)) + bytecode
        + P('<iii', TYPE_TABLE, 4, 0),
        'function_not_allowed',
        'an nn.Identity whose field updateOutput is a serialized Lua function (tag 8, index 3, 16 bytes of '
        'LuaJIT bytecode header, empty upvalue table): torch.load would run loadstring() on it.')
    H['function_legacy_tag6'] = (
        P('<iii', TYPE_TABLE, 1, 1) + s('f') + P('<i', TYPE_FUNCTION) + P('<i', len(bytecode)) + bytecode
        + P('<iii', TYPE_TABLE, 2, 0),
        'function_not_allowed',
        'a TYPE_FUNCTION (tag 6) value: no reference index, then length + bytecode + upvalue table '
        '(File.lua reads it so; note the torchfile package wrongly reads an index for tag 6).')
    # 6. truncation
    H['truncated'] = (tiny_bytes[:cut], ['truncated', 'storage_exceeds_file'],
                      'tiny.t7 cut to its first %d of %d bytes, inside a storage\'s data (a reader may report '
                      'an unexpected end of file or a storage longer than the bytes left)' % (cut, len(tiny_bytes)))
    H['truncated_in_header'] = (tiny_bytes[:6], 'truncated',
                                'the first 6 bytes of tiny.t7: the file ends inside the root object\'s index')
    H['empty_file'] = (b'', 'truncated', 'a zero-byte file')
    # 7. nesting
    H['deep_nesting'] = (deep_table_bytes(10000), 'too_deep',
                         '10000 nested tables {[true] = {[true] = ... {}}} (a recursive reader without a depth '
                         'limit overflows its stack)')
    # 8. lengths
    H['huge_string_length'] = (
        P('<ii', TYPE_STRING, 0x7FFFFFFF) + b'abcdefgh', 'bad_length',
        'a string claiming 2^31-1 bytes followed by 8 bytes')
    H['negative_string_length'] = (
        P('<iii', TYPE_TABLE, 1, 1) + P('<ii', TYPE_STRING, -1) + b'xxxx' + P('<i', TYPE_NIL), 'bad_length',
        'a table key string with length -1')
    H['huge_class_name'] = (
        P('<ii', TYPE_TORCH, 1) + P('<i', 3) + b'V 1' + P('<i', 0x7FFFFFF0) + b'nn.Linear', 'bad_length',
        'a torch object whose class-name length is 0x7FFFFFF0')
    H['huge_table_count'] = (
        P('<iii', TYPE_TABLE, 1, 0x7FFFFFFF) + s('k') + P('<i', TYPE_NIL), 'bad_length',
        'a table claiming 2^31-1 pairs (a reader must not pre-allocate from the count)')
    H['unknown_type_tag'] = (P('<i', 9) + P('<i', 0), 'unknown_tag', 'type tag 9')
    return H


# ------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------

def file_info(path):
    data = open(path, 'rb').read()
    return {'bytes': len(data), 'sha256': hashlib.sha256(data).hexdigest()}


def versions():
    v = {'python': platform.python_version(), 'numpy': np.__version__}
    try:
        import torch
        v['torch'] = torch.__version__
    except ImportError:
        pass
    try:
        import importlib.metadata as md
        v['torchfile'] = md.version('torchfile')
    except Exception:
        pass
    try:
        import cv2
        v['opencv'] = cv2.__version__
    except ImportError:
        pass
    return v


def build(width, layers, classes, hw, batch, **kw):
    params = gen_params(width, layers, classes, WEIGHT_SEED)
    xcal = (common.rng(WEIGHT_SEED + 1).standard_normal((2, 3) + tuple(hw))).astype(np.float32)
    calibrate(params, width, layers, xcal, WEIGHT_SEED + 2)
    b = Builder(params, batch=batch, **kw)
    root = b.build(width, layers, classes, hw)
    return root, params, b


def check_roundtrip(path, builder):
    """Every weight read back by torchfile and by the strict reader equals what was written."""
    tf = tf_load(path)
    sv, _ = strict_load(path)

    def walk_tf(o, out):
        if hasattr(o, 'torch_typename'):
            out.append(o)
            for m in lua_list(o._obj.get(b'modules')):
                walk_tf(m, out)
        return out

    def walk_st(o, out):
        if isinstance(o, TObj):
            out.append(o)
            mods = o.fields.get(b'modules') or {}
            for k in sorted(mods):
                walk_st(mods[k], out)
        return out

    mods_tf, mods_st = walk_tf(tf, []), walk_st(sv, [])
    assert [m.torch_typename().decode() for m in mods_tf] == [m.cls for m in mods_st]
    got_tf, got_st = [], []
    for mt, ms in zip(mods_tf, mods_st):
        for key in (b'weight', b'bias'):
            if mt._obj.get(key) is not None and mt.torch_typename() not in (b'nn.Sequential',):
                got_tf.append(np.asarray(mt._obj[key]))
                got_st.append(ms.fields[key])
    want = [w.array() for _, w, _ in builder.param_tensors]
    assert len(want) == len(got_tf) == len(got_st), (len(want), len(got_tf), len(got_st))
    for w, a, s in zip(want, got_tf, got_st):
        assert w.shape == a.shape == s.shape and np.array_equal(w, a) and np.array_equal(w, s)
    return len(want)


def cmd_selftest(_args):
    tmp = '/tmp/torch7_selftest.t7'
    for name, (obj, desc, expect) in formats_cases().items():
        save(tmp, obj, legacy=(name == 'legacy'))
        tf = tf_load(tmp)
        sv, info = strict_load(tmp)
        if name == 'shared':
            assert tf[b'a'] is tf[b'b'], 'shared tensor not shared by torchfile'
            assert np.shares_memory(tf[b'a'], tf[b'c']) and np.shares_memory(tf[b'a'], tf[b'st'])
            assert tf[b'c'].tolist() == expect['c'] and tf[b'd'].tolist() == expect['d']
            assert sv[b'c'].tolist() == expect['c'] and sv[b'a'].tolist() == expect['a']
        if name == 'scalars':
            assert tf[b'num'] == 1.5 and tf[b'int'] == 3 and tf[b'big'] == 2 ** 53 and tf[b'tiny'] == 5e-324
            assert tf[b'yes'] is True and tf[b'no'] is False and tf[b'str'] == b'h\xc3\xa9llo\x00world'
            # torchfile folds the keys 1 and true into one Python key (1 == True); the strict reader keeps both
            assert tf[2.5] == b'two and a half' and tf[1] == b'bool key'
            assert sv[1.0] == b'one' and sv[('bool', True)] == b'bool key' and len(sv) == 14
            assert lua_list(tf[b'list']) == [10, 20, 30] and tf[b'nested'][b'x'][b'y'][b'z'] == b'deep'
            assert sv[b'list'] == {1.0: 10.0, 2.0: 20.0, 3.0: 30.0}
        if name == 'double_long':
            assert tf[b'd'].dtype == np.float64 and tf[b'd'][0, 0] == 1.0 / 3 and tf[b'd'][1, 0] == 1e300
            assert tf[b'l'].tolist() == [1, -2, 2 ** 40] and tf[b'ls'].tolist() == [2, 3, 61, 67]
            assert tf[b'cuda'].dtype == np.float32 and tf[b'cuda'].tolist() == [1.5, -2.5]
            assert tf[b'empty'].size == 0 and sv[b'zero_size'].shape == (0, 3)
        if name == 'legacy':
            assert tf[b't'].tolist() == [[1, 2, 3], [4, 5, 6]] and np.shares_memory(tf[b't'], tf[b'again'])
            assert sv[b't'].tolist() == [[1, 2, 3], [4, 5, 6]]
        print('selftest %-12s ok  (%d bytes, %d indexed objects)' % (name, info['bytes'], info['objects']))
    # byte-exact check of a hand-assembled encoding
    got = t7_bytes({'x': Tensor.of('torch.FloatTensor', np.array([1.0], np.float32))})
    want = (struct.pack('<iii', 3, 1, 1) + struct.pack('<ii', 2, 1) + b'x'
            + struct.pack('<iii', 4, 2, 3) + b'V 1' + struct.pack('<i', 17) + b'torch.FloatTensor'
            + struct.pack('<iqqq', 1, 1, 1, 1)
            + struct.pack('<iii', 4, 3, 3) + b'V 1' + struct.pack('<i', 18) + b'torch.FloatStorage'
            + struct.pack('<qf', 1, 1.0))
    assert got == want, 'byte layout differs'
    print('selftest byte layout ok')


def write_fixtures(_args):
    os.makedirs(OUT_DIR, exist_ok=True)
    W, L, C = common.TINY_WIDTH, common.TINY_LAYERS, common.TINY_CLASSES
    N, _, H, Wd = common.TINY_INPUT_SHAPE
    x = common.tiny_input(INPUT_SEED)
    np.save(os.path.join(OUT_DIR, 'input.npy'), x)

    variants = {
        'tiny.t7': dict(ttype='torch.CudaTensor', bn='var'),
        'tiny_float_oldbn.t7': dict(ttype='torch.FloatTensor', bn='std', grads='none'),
        'tiny_flat.t7': dict(ttype='torch.CudaTensor', bn='var', flat=True, type_field=True),
    }
    manifest = {'files': {}, 'width': W, 'layers': L, 'classes': C, 'input_shape': list(common.TINY_INPUT_SHAPE),
                'input_seed': INPUT_SEED, 'weight_seed': WEIGHT_SEED, 'versions': versions()}
    results = {}
    for fname, kw in variants.items():
        root, params, b = build(W, L, C, (H, Wd), N, **kw)
        path = os.path.join(OUT_DIR, fname)
        size = save(path, root)
        n = check_roundtrip(path, b)
        verdict, info = strict_verdict(path)
        assert verdict == 'ok', info
        assert reencode(path)[0], 'mirror re-encoding of %s differs' % fname
        y64 = forward_t7(tf_load(path), x)
        results[fname] = y64
        manifest['files'][fname] = dict(file_info(path), tensor_type=kw['ttype'],
                                        batchnorm='V2 running_var' if kw['bn'] == 'var' else 'V1 running_std (=1/sqrt(var+eps))',
                                        flat_parameters=bool(kw.get('flat')), params_checked=n,
                                        grad_tensors=kw.get('grads', 'full') == 'full', type_field=bool(kw.get('type_field')),
                                        indexed_objects=info['objects'])
        if fname == 'tiny.t7':
            manifest['module_tree'] = module_tree(tf_load(path))
            manifest['parameters'] = {k: list(v.shape) for k, v in params.items()}
            manifest['parameter_order'] = [nm for nm, _, _ in b.param_tensors]
            manifest['layout'] = [' '.join(s).strip() for s in b.summary]
        print('%-22s %7d bytes  %d params round-trip ok, strict reader ok, re-encoding identical' % (fname, size, n))

    y = results['tiny.t7']
    logits = y.astype(np.float32)
    np.save(os.path.join(OUT_DIR, 'logits.npy'), logits)
    np.save(os.path.join(OUT_DIR, 'logits_float_oldbn.npy'), results['tiny_float_oldbn.t7'].astype(np.float32))
    d_old = rel(results['tiny_float_oldbn.t7'], y)
    d_flat = rel(results['tiny_flat.t7'], y)
    assert d_flat == 0.0 and d_old < 1e-5, (d_flat, d_old)
    # float32 pass of the same tree (what a float32 engine computes)
    y32 = forward_t7(tf_load(os.path.join(OUT_DIR, 'tiny.t7')), x, np.float32)
    checks = {'logits_max_abs': float(np.abs(y).max()),
              'float32_vs_float64_rel': rel(y32, y),
              'float_oldbn_vs_tiny_rel': d_old, 'flat_vs_tiny_rel': d_flat}
    # OpenCV cross-check
    try:
        for fname in variants:
            yo = opencv_logits(os.path.join(OUT_DIR, fname), x)
            checks['opencv_%s_rel' % fname] = rel(yo, y)
    except Exception as e:   # report what OpenCV could not do
        checks['opencv_error'] = '%s: %s' % (type(e).__name__, str(e).strip().splitlines()[-1][:300])
    print(json.dumps(checks, indent=1))
    manifest['checks'] = checks
    manifest['files']['input.npy'] = dict(file_info(os.path.join(OUT_DIR, 'input.npy')), shape=list(x.shape), dtype='float32',
                                          made_by='common.tiny_input(%d)' % INPUT_SEED)
    manifest['files']['logits.npy'] = dict(file_info(os.path.join(OUT_DIR, 'logits.npy')), shape=list(logits.shape),
                                           made_by='torch7.py forward_t7 over torchfile.load(tiny.t7), float64, cast to float32; '
                                                   'also the logits of tiny_flat.t7 (bit-identical)')
    manifest['files']['logits_float_oldbn.npy'] = dict(file_info(os.path.join(OUT_DIR, 'logits_float_oldbn.npy')),
                                                       made_by='same over tiny_float_oldbn.t7 (running_std path)')

    # format edge cases
    fdir = os.path.join(OUT_DIR, 'formats')
    os.makedirs(fdir, exist_ok=True)
    manifest['formats'] = {}
    for name, (obj, desc, expect) in formats_cases().items():
        p = os.path.join(fdir, name + '.t7')
        save(p, obj, legacy=(name == 'legacy'))
        verdict, info = strict_verdict(p)
        assert verdict == 'ok', info
        manifest['formats']['formats/%s.t7' % name] = dict(file_info(p), description=desc, expect=expect)

    # hostile files
    hdir = os.path.join(OUT_DIR, 'hostile')
    os.makedirs(hdir, exist_ok=True)
    tiny_bytes = open(os.path.join(OUT_DIR, 'tiny.t7'), 'rb').read()
    w1 = gen_params(W, L, C, WEIGHT_SEED)['conv1.weight'].astype('<f4').tobytes()
    cut = tiny_bytes.index(w1) + len(w1) // 2        # in the middle of conv1's weight data
    manifest['hostile'] = {}
    for name, (data, kind, desc) in hostile_cases(tiny_bytes, cut).items():
        p = os.path.join(hdir, name + '.t7')
        with open(p, 'wb') as f:
            f.write(data)
        verdict, msg = strict_verdict(p)
        assert verdict in (kind if isinstance(kind, list) else [kind]), (name, verdict, msg, kind)
        manifest['hostile']['hostile/%s.t7' % name] = dict(file_info(p), expect_error=kind, description=desc,
                                                           strict_reader_says=msg)
        print('hostile %-30s -> %s' % (name, msg))
    manifest['allowed_classes'] = sorted(ALLOWED_CLASSES)
    manifest['notes'] = NOTES
    common.write_json(os.path.join(OUT_DIR, 'manifest.json'), manifest)
    print('wrote', OUT_DIR)


NOTES = [
    'Layout of the released resnet-50.t7 as established from public sources (the file itself was not '
    'available here): nn.Sequential of 11 modules: cudnn.SpatialConvolution(3->64,7x7,2,2,3,3), '
    'nn.SpatialBatchNormalization, cudnn.ReLU, nn.SpatialMaxPooling(3,3,2,2,1,1), 4 stage nn.Sequentials '
    '(3,4,6,3 blocks), cudnn.SpatialAveragePooling(7,7,1,1), nn.View(2048):setNumInputDims(3), nn.Linear(2048,1000).',
    'Block: nn.Sequential{ nn.ConcatTable{ nn.Sequential{conv1x1, SBN, ReLU, conv3x3(stride), SBN, ReLU, conv1x1}, '
    'shortcut }, nn.CAddTable(true), nn.SpatialBatchNormalization, cudnn.ReLU }. The residual branch ends with the '
    'convolution (its BN was moved after the addition); the shortcut of the first block of a stage is a bare '
    'cudnn.SpatialConvolution 1x1 (stride 2 from stage 2), the others nn.Identity. Every convolution has a bias.',
    'Torch7 tensors are NCHW; conv weight [out, in, kH, kW]; Linear weight [out, in]; pooling fields are kW,kH,dW,dH,'
    'padW,padH (W first). The tiny avg-pool is kW=3, kH=2 because the tiny final map is 2x3.',
    'Fields that are not parameters (output, gradInput, save_mean, save_std, std, iSize, addBuffer, indices) must be '
    'ignored: save_std/std are batch inverse stds, not running statistics.',
    'Sharing: each nn.Sequential.output is its last module\'s output tensor and nn.Identity.output is its input, '
    'so most of them are written as references; in tiny_flat.t7 every weight/bias is a view (storageOffset) of one '
    'CudaStorage and every gradWeight/gradBias of another (model:getParameters()).',
    'OpenCV cross-check: cv2.dnn.readNetFromTorch loads all three tiny files (it strips the nn./cudnn. prefixes, '
    'reads Cuda* storages as float32, turns running_std into running_var by x^-2 - eps, maps View to Reshape, '
    'ConcatTable+CAddTable to an Eltwise sum); its 3x3 Winograd path is disabled for the comparison.',
    'torchfile is run with use_list_heuristic=False: with numpy 2 its list heuristic raises on a Lua array of '
    'tensors (nn.ConcatTable.output); it also folds the Lua keys 1 and true together, misreads type tag 6 (it '
    'expects an index), and does not bounds-check strings or tensors (see the hostile files).',
]


def cmd_full(args):
    os.makedirs(args.out, exist_ok=True)
    root, _, b = build(64, [3, 4, 6, 3], 1000, (224, 224), 1, ttype='torch.CudaTensor', bn='var',
                       flat=args.flat, grads='none' if args.no_grads else 'full')
    path = os.path.join(args.out, 'resnet-50.t7')
    size = save(path, root)
    nparam = sum(w.array().size for _, w, _ in b.param_tensors)
    print('%s: %d bytes (%.1f MiB), %d parameter tensors, %d parameters' % (path, size, size / 2 ** 20,
                                                                           len(b.param_tensors), nparam))
    if args.check:
        verdict, info = strict_verdict(path)
        print('strict reader:', verdict, info)


def cmd_logits(args):
    x = np.load(args.input).astype(np.float32)
    y = torch_logits(args.t7, x)
    np.save(args.out, y)
    print('logits', y.shape, 'max |logit| %.4g' % np.abs(y).max())
    if args.opencv:
        yo = opencv_logits(args.t7, x)
        print('opencv: max |delta| / max |logit| = %.3g' % rel(yo, y))


def cmd_check(args):
    for p in args.files:
        verdict, info = strict_verdict(p)
        print('%s: %s %s' % (p, verdict, info))


def cmd_reencode(args):
    for p in args.files:
        try:
            same, n, diff = reencode(p)
            print('%s: %s (%d bytes)%s' % (p, 'byte-identical re-encoding' if same else 'DIFFERS', n,
                                         '' if same else ' first difference at offset %d' % diff))
        except T7Error as e:
            print('%s: not mirrored: %s' % (p, e))


def cmd_tree(args):
    print('\n'.join(module_tree(tf_load(args.t7))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    sub.add_parser('selftest', help='writer round trips (torchfile + strict reader)').set_defaults(fn=cmd_selftest)
    sub.add_parser('fixtures', help='write fixtures/frameworks/torch7/').set_defaults(fn=write_fixtures)
    p = sub.add_parser('full', help='full-size random ResNet-50 in the released layout')
    p.add_argument('--out', required=True)
    p.add_argument('--flat', action='store_true', help='getParameters()-style flat storages')
    p.add_argument('--no-grads', action='store_true', help='omit gradWeight/gradBias')
    p.add_argument('--check', action='store_true', help='run the strict reader over the result')
    p.set_defaults(fn=cmd_full)
    p = sub.add_parser('logits', help='logits of a .t7 for an NCHW float32 input')
    p.add_argument('--t7', required=True)
    p.add_argument('--input', required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--opencv', action='store_true', help='also run cv2.dnn.readNetFromTorch and compare')
    p.set_defaults(fn=cmd_logits)
    p = sub.add_parser('check', help='strict-reader verdict per file')
    p.add_argument('files', nargs='+')
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser('reencode', help='read a .t7 into writer objects, write it again, compare bytes')
    p.add_argument('files', nargs='+')
    p.set_defaults(fn=cmd_reencode)
    p = sub.add_parser('tree', help='module tree via torchfile')
    p.add_argument('t7')
    p.set_defaults(fn=cmd_tree)
    args = ap.parse_args()
    args.fn(args)


if __name__ == '__main__':
    main()
