"""Lua Torch `image` (torch/image) + fb.resnet.torch evaluation preprocessing, without Lua.

* scale(src, width, height, mode): runs the ORIGINAL torch/image C code (generic/image.c,
  image_(Main_scaleBicubic) / image_(Main_scaleBilinear), real = float) compiled by build.sh
  from torch_image_scale.c + driver.c. Note the argument order of image.scale: width first.
* port_scale_bicubic(src, width, height): a numpy re-implementation of the same arithmetic,
  operation by operation (the specification a Rust port follows); --selftest checks it is
  bit-identical to the C code.
* fbtorch_eval(path): fb.resnet.torch's 'val' transform of datasets/imagenet.lua:
  image.load(path, 3, 'float') -> t.Scale(256) -> t.ColorNormalize(meanstd) -> t.CenterCrop(224).

CLI:
  python torch_image.py --selftest        C (-O2) vs C (-O3, -O0) vs numpy port, many shapes
  python torch_image.py --check-decode    PIL decode == libjpeg/libpng decode (decode_check.c)
"""
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402

BUILD = os.path.join(HERE, 'build')
BIN = os.path.join(BUILD, 'torch_image_scale')
SOURCES = ['torch_image_scale.c', 'driver.c', 'build.sh']

F32 = np.float32
F64 = np.float64

# datasets/imagenet.lua
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# the compiled original code
# --------------------------------------------------------------------------------------------

def build(outdir=BUILD, opt='-O2'):
    """Compiles the C code with build.sh (if needed) and returns the binary's path."""
    binary = os.path.join(outdir, 'torch_image_scale')
    newest = max(os.path.getmtime(os.path.join(HERE, s)) for s in SOURCES)
    if not os.path.exists(binary) or os.path.getmtime(binary) < newest or outdir != BUILD:
        env = dict(os.environ, OPT=opt)
        subprocess.run(['sh', os.path.join(HERE, 'build.sh'), outdir], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    return binary


def scale(src, width, height, mode='bicubic', binary=None):
    """image.scale(src, width, height, mode) for a FloatTensor with INTEGER width/height
    (the Lua side truncates non-integer sizes, see lua_size()). src: float32 [C,H,W] or [H,W].
    Output elements the C code never writes (src_len == 1 case) come back as NaN."""
    binary = binary or build()
    src = np.ascontiguousarray(src, dtype=F32)
    if src.ndim == 2:
        c, (h, w) = 0, src.shape
    else:
        c, h, w = src.shape
    width, height = int(width), int(height)
    with tempfile.TemporaryDirectory() as d:
        fin, fout = os.path.join(d, 'in.f32'), os.path.join(d, 'out.f32')
        src.tofile(fin)
        subprocess.run([binary, mode, str(c), str(h), str(w), str(height), str(width), fin, fout],
                       check=True)
        out = np.fromfile(fout, dtype=F32)
    return out.reshape((height, width) if c == 0 else (c, height, width))


# --------------------------------------------------------------------------------------------
# numpy port (bit-exact specification)
# --------------------------------------------------------------------------------------------

def _cubic(p0, p1, p2, p3, x):
    """image_(Main_cubicInterpolate) with temp_t = float. All operands float32 arrays;
    the last line mixes in the double literal 0.5, so it is evaluated in double and rounded
    to float once at the end (return type temp_t)."""
    a0 = p1
    a1 = p2 - p0
    a2 = ((F32(2) * p0 - F32(5) * p1) + F32(4) * p2) - p3
    a3 = (F32(3) * (p1 - p2) + p3) - p0
    inner = a1 + x * (a2 + x * a3)                       # float32
    return (a0.astype(F64) + (F64(0.5) * x.astype(F64)) * inner.astype(F64)).astype(F32)


def _rowcol(src, dst_len):
    """image_(Main_scaleCubic_rowcol) applied along axis 0 of src (float32 [src_len, ...]);
    every other index is an independent line. Returns float32 [dst_len, ...]."""
    src_len = src.shape[0]
    out = np.full((dst_len,) + src.shape[1:], np.nan, dtype=F32)
    if dst_len == src_len:
        out[:] = src
        return out
    if src_len == 1:
        out[:dst_len - 1] = src[0]      # the last element is NOT written (uninitialised in Torch)
        return out
    if dst_len == 1:
        scale_ = F32(src_len - 1)
    else:
        scale_ = F32(src_len - 1) / F32(dst_len - 1)
    for di in range(dst_len - 1):
        si_f = F32(di) * scale_
        si_i = int(si_f)                 # (long) truncation; si_f >= 0
        t = si_f - F32(si_i)
        p1 = src[si_i]
        p2 = src[si_i + 1]
        p0 = src[si_i - 1] if si_i > 0 else F32(2) * p1 - p2
        p3 = src[si_i + 2] if si_i + 2 < src_len else F32(2) * p2 - p1
        out[di] = _cubic(p0, p1, p2, p3, np.full_like(p1, t))
    out[dst_len - 1] = src[src_len - 1]
    return out


def port_scale_bicubic(src, width, height):
    """numpy port of image_(Main_scaleBicubic): horizontal pass first (each source row,
    src W -> dst W, into a float32 temporary [H_src, W_dst]), then the vertical pass (each
    temporary column, H_src -> H_dst)."""
    src = np.asarray(src, dtype=F32)
    two_d = src.ndim == 2
    if two_d:
        src = src[None]
    tmp = np.moveaxis(_rowcol(np.moveaxis(src, 2, 0), int(width)), 0, 2)   # [C, H_src, W_dst]
    out = np.moveaxis(_rowcol(np.moveaxis(tmp, 1, 0), int(height)), 0, 1)  # [C, H_dst, W_dst]
    return out[0] if two_d else out


# --------------------------------------------------------------------------------------------
# fb.resnet.torch eval pipeline
# --------------------------------------------------------------------------------------------

def lua_size(x):
    """How a Lua number size reaches TH: src.new(c, height, width) -> luaL_checklong ->
    (LuaJIT 2.1, 64-bit) (lua_Integer)n: C truncation toward zero."""
    return int(math.trunc(x))


def scale_size(w, h, size=256):
    """t.Scale(size) of datasets/transforms.lua: returns None when the input is returned
    unchanged, else (out_w, out_h) as image.scale receives them after truncation.
    Lua: if w < h: image.scale(input, size, h/w * size) else image.scale(input, w/h * size, size)
    ((h/w) * size evaluated in double, left to right)."""
    if (w <= h and w == size) or (h <= w and h == size):
        return None
    if w < h:
        ow, oh = size, (h / w) * size
    else:
        ow, oh = (w / h) * size, size
    oh, ow = max(oh, 1), max(ow, 1)             # image.scale: math.max(height, 1) ...
    return lua_size(ow), lua_size(oh)


def decode_u8(path):
    """8-bit RGB HWC as Image.open(p).convert('RGB'), which for the fixture photos equals what
    torch/image's libjpeg / libpng loaders + todepth(img, 3) produce (see --check-decode):
    gray -> 3 copies, RGBA -> first 3 channels (alpha dropped, no compositing), palette ->
    expanded RGB."""
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert('RGB'))


def load_float(path):
    """image.load(path, 3, 'float'): FloatTensor of the 8-bit samples, then img:mul(1/MAXVAL)
    with MAXVAL = 255: the Lua double 1/255 is converted to float by the cwrap argument reader
    ((float)lua_tonumber), then y = x * c in float. Returns float32 CHW."""
    u8 = decode_u8(path)
    return np.ascontiguousarray(u8.transpose(2, 0, 1)).astype(F32) * F32(1 / 255)


def color_normalize(img):
    """t.ColorNormalize(meanstd): per channel img[i]:add(-mean[i]) then img[i]:div(std[i]),
    both with the constant converted to float: y = x + (float)(-mean); y = y / (float)std."""
    out = np.empty_like(img)
    for i in range(3):
        out[i] = (img[i] + F32(-MEAN[i])) / F32(STD[i])
    return out


def center_crop_offsets(w, h, size=224):
    """t.CenterCrop: w1 = math.ceil((W - size)/2), h1 = math.ceil((H - size)/2) (Lua '/' is a
    float division); image.crop(input, w1, h1, w1 + size, h1 + size) copies columns
    [w1, w1 + size) and rows [h1, h1 + size) (end exclusive, 0-based)."""
    return math.ceil((w - size) / 2), math.ceil((h - size) / 2)


def fbtorch_eval(path, binary=None):
    """Returns a dict with every intermediate of fb.resnet.torch's val transform."""
    img = load_float(path)
    _, h, w = img.shape
    sz = scale_size(w, h, 256)
    scaled = img if sz is None else scale(img, sz[0], sz[1], 'bicubic', binary=binary)
    norm = color_normalize(scaled)
    _, sh, sw = scaled.shape
    x1, y1 = center_crop_offsets(sw, sh, 224)
    crop = np.ascontiguousarray(norm[:, y1:y1 + 224, x1:x1 + 224])
    assert crop.shape == (3, 224, 224)
    return dict(loaded=img, scaled=scaled, normalized=norm, crop=crop, decoded_hw=(h, w),
                scaled_hw=(sh, sw), crop_xy=(x1, y1))


# --------------------------------------------------------------------------------------------
# self-checks
# --------------------------------------------------------------------------------------------

def _same(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def selftest():
    b2 = build()
    b3 = build('/tmp/torch_image_O3', '-O3')
    b0 = build('/tmp/torch_image_O0', '-O0')
    r = common.rng(1234)
    shapes = [((3, 5, 7), (3, 4)), ((1, 3, 4), (9, 7)), ((2, 4, 5), (5, 4)), ((3, 6, 1), (4, 9)),
              ((2, 1, 5), (8, 3)), ((3, 5, 6), (1, 1)), ((3, 7, 9), (4, 1)), ((3, 7, 9), (1, 5)),
              ((1, 2, 2), (5, 5)), ((3, 13, 17), (31, 29)), ((3, 31, 29), (5, 7)),
              ((3, 40, 60), (39, 26)), ((2, 300, 451), (384, 256)), ((1, 60, 1000), (4266, 256)),
              ((3, 90, 120), (341, 256)), ((1, 2, 3), (2, 3)), ((1, 1, 1), (3, 2))]
    n = 0
    for (c, h, w), (ow, oh) in shapes:
        for kind in ('unit', 'wide'):
            x = r.random((c, h, w), dtype=F32)
            if kind == 'wide':
                x = (x - F32(0.5)) * F32(1e3)
            a = scale(x, ow, oh, binary=b2)
            assert _same(a, scale(x, ow, oh, binary=b3)), ('O3', c, h, w, ow, oh)
            assert _same(a, scale(x, ow, oh, binary=b0)), ('O0', c, h, w, ow, oh)
            p = port_scale_bicubic(x, ow, oh)
            assert _same(a, p), ('port', c, h, w, ow, oh, np.nanmax(np.abs(a - p)))
            n += 1
    # 2-D tensors take the same path
    x = r.random((7, 9), dtype=F32)
    assert _same(scale(x, 5, 4, binary=b2), scale(x[None], 5, 4, binary=b2)[0])
    print(f'selftest: {n} cases, C -O2 == C -O3 == C -O0 == numpy port (bitwise, NaN included)')


def check_decode():
    out = os.path.join(BUILD, 'decode_check')
    subprocess.run(['gcc', '-O2', '-o', out, os.path.join(HERE, 'decode_check.c'), '-ljpeg',
                    '-lpng'], check=True)
    ok = True
    for p in common.PHOTOS:
        path = os.path.join(common.IMAGES, p)
        with tempfile.TemporaryDirectory() as d:
            f = os.path.join(d, 'o.u8')
            c, h, w = map(int, subprocess.run([out, path, f], check=True, capture_output=True,
                                              text=True).stdout.split())
            lib = np.fromfile(f, dtype=np.uint8).reshape(c, h, w)
        # todepth(img, 3): 1 channel -> 3 copies, 4 channels -> first 3
        lib = np.concatenate([lib] * 3) if c == 1 else lib[:3]
        pil = decode_u8(path).transpose(2, 0, 1)
        same = lib.shape == pil.shape and np.array_equal(lib, pil)
        ok &= same
        print(f'{p:28s} C={c} {h}x{w}  libjpeg/libpng == PIL: {same}')
    return ok


if __name__ == '__main__':
    if '--selftest' in sys.argv:
        selftest()
    if '--check-decode' in sys.argv:
        sys.exit(0 if check_decode() else 1)
