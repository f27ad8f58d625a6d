"""Writes fixtures/images/torch_image_scale.json: test vectors of Lua Torch's
image.scale(src, W, H, 'bicubic') for torch.FloatTensor, computed by the ORIGINAL torch/image C
code (torch_image_scale.c, built by build.sh) and cross-checked against the numpy port.

    /opt/timmvenv/bin/python eval/reference/baselines/torch_image/make_scale_vectors.py

Inputs come from a generator that is trivial to re-implement (see GENERATORS in the JSON), so a
Rust test rebuilds every input and checks it against input_sha256 first.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402
import torch_image as ti  # noqa: E402

F32 = np.float32
OUT = os.path.join(common.IMAGES, 'torch_image_scale.json')
LIST_MAX = 4000          # outputs up to this many elements are stored in full

GENERATORS = {
    'lcg32': (
        'state: u32 = seed; for every element in C order (c, y, x): '
        'state = state * 1664525 + 1013904223 (mod 2^32); u = (state >> 8) as f32 * 2^-24 '
        '(exact, in [0, 1)). kind "unit": value = u. kind "centered": value = (u - 0.5f32) * '
        '4f32 (both float32 ops exact; in [-2, 2)). kind "photo": b = min(255, 40*c + 2*x + 3*y + '
        '(state >> 28)) as an integer, value = (b as f32) * ((1.0f64/255.0) as f32), i.e. an 8-bit '
        'image loaded by image.load(..., "float").'),
}


def lcg32(shape, seed, kind):
    c, h, w = shape
    n = c * h * w
    states = np.empty(n, dtype=np.uint64)
    s = seed & 0xFFFFFFFF
    for i in range(n):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        states[i] = s
    u = (states >> np.uint64(8)).astype(F32) * F32(2.0 ** -24)
    if kind == 'unit':
        v = u
    elif kind == 'centered':
        v = (u - F32(0.5)) * F32(4)
    elif kind == 'photo':
        cc, yy, xx = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing='ij')
        b = np.minimum(255, 40 * cc.ravel() + 2 * xx.ravel() + 3 * yy.ravel()
                       + (states >> np.uint64(28)).astype(np.int64))
        v = b.astype(F32) * F32(1 / 255)
    else:
        raise ValueError(kind)
    return v.astype(F32).reshape(shape)


# name, input [C, H, W], output (H, W), generator kind, seed, note
CASES = [
    ('down_5x7_to_4x3', (3, 5, 7), (4, 3), 'unit', 1, 'downscale both axes'),
    ('up_3x4_to_7x9', (1, 3, 4), (7, 9), 'centered', 2, 'upscale both axes, negative values'),
    ('same_size', (2, 4, 5), (4, 5), 'unit', 3, 'dst == src: both passes copy, output == input'),
    ('width_only', (3, 6, 6), (6, 11), 'unit', 4, 'height unchanged: vertical pass copies'),
    ('height_only', (2, 7, 5), (3, 5), 'unit', 5, 'width unchanged: horizontal pass copies'),
    ('src_w1', (3, 6, 1), (9, 4), 'unit', 6,
     'source 1 pixel wide: the C code never writes the last column (Torch: uninitialised '
     'memory; here null)'),
    ('src_h1', (2, 1, 5), (3, 8), 'unit', 7,
     'source 1 pixel tall: the last output row is never written (null)'),
    ('src_1x1', (3, 1, 1), (2, 3), 'unit', 8,
     '1x1 source: only out[:, 0, 0:2] is written, the last row and column are null'),
    ('src_1x1_same', (3, 1, 1), (1, 1), 'unit', 9, '1x1 -> 1x1: copy'),
    ('dst_1x1', (3, 5, 6), (1, 1), 'unit', 10,
     '1x1 output = the LAST source pixel src[:, H-1, W-1] (not the centre, not an average)'),
    ('dst_h1', (3, 7, 9), (1, 4), 'unit', 11, 'output 1 row = last (interpolated) row'),
    ('dst_w1', (3, 7, 9), (5, 1), 'unit', 12, 'output 1 column = last (interpolated) column'),
    ('up_2x2_to_5x5', (1, 2, 2), (5, 5), 'centered', 13,
     '2-pixel source: both p0 = 2*p1 - p2 and p3 = 2*p2 - p1 extrapolations'),
    ('odd_up', (3, 13, 17), (29, 31), 'unit', 14, 'odd sizes, upscale'),
    ('odd_down', (3, 31, 29), (7, 5), 'centered', 15, 'odd sizes, strong downscale (no antialias)'),
    ('mixed', (3, 9, 11), (14, 6), 'centered', 16, 'height up, width down'),
    ('extreme_ratio', (1, 2, 64), (64, 2), 'unit', 17, '2x64 -> 64x2'),
    ('photo_40x60', (3, 40, 60), (26, 39), 'photo', 18, 'photo-like [0,1] image, 3x40x60 -> 3x26x39'),
    ('photo_90x120', (3, 90, 120), (256, 341), 'photo', 19,
     'chelsea_small geometry: t.Scale(256) of a 120x90 image'),
    ('photo_300x451', (3, 300, 451), (256, 384), 'photo', 20,
     'chelsea_420 geometry: t.Scale(256) of a 451x300 image'),
    ('photo_60x1000', (3, 60, 1000), (256, 4266), 'photo', 21,
     'rocket_wide geometry: t.Scale(256) of a 1000x60 image'),
]


def tolist(a):
    return [None if np.isnan(v) else float(v) for v in a.ravel()]


def main():
    binary = ti.build()
    cases = []
    for name, shape, (oh, ow), kind, seed, note in CASES:
        x = lcg32(shape, seed, kind)
        y = ti.scale(x, ow, oh, 'bicubic', binary=binary)       # image.scale(x, W, H, 'bicubic')
        p = ti.port_scale_bicubic(x, ow, oh)
        assert np.array_equal(y.view(np.uint32), p.view(np.uint32)), name
        undefined = int(np.isnan(y).sum())
        case = {
            'name': name, 'note': note,
            'input_shape': list(shape), 'output_shape': [shape[0], oh, ow],
            'call': f'image.scale(src, {ow}, {oh}, "bicubic")',
            'generator': {'name': 'lcg32', 'kind': kind, 'seed': seed},
            'input_sha256': common.sha256_f32(x),
            'undefined_elements': undefined,
        }
        if x.size <= 120:
            case['input'] = tolist(x)
        if y.size <= LIST_MAX:
            case['output'] = tolist(y)
        if undefined == 0:
            case['output_sha256'] = common.sha256_f32(y)
        else:
            assert 'output' in case
        if y.size > LIST_MAX:
            flat = y.ravel()
            idx = sorted({0, 1, 2, ow - 1, ow, flat.size // 2, flat.size - 2, flat.size - 1})
            case['output_samples'] = {str(i): float(flat[i]) for i in idx}
        cases.append(case)

    doc = {
        'what': ("Lua Torch image.scale(src, W, H, 'bicubic') on torch.FloatTensor [C,H,W], i.e. "
                 "torch/image generic/image.c image_(Main_scaleBicubic) with real = float. "
                 "Outputs computed by that C code, copied verbatim and compiled with gcc "
                 "(eval/reference/baselines/torch_image/), and bit-identical to the numpy port "
                 "torch_image.port_scale_bicubic."),
        'source': {'repo': 'https://github.com/torch/image',
                   'commit': '5aa18819b6a7b44751f8a858bd232d1c07b67985',
                   'file': 'generic/image.c', 'lines': '5-338'},
        'generated_by': 'eval/reference/baselines/torch_image/make_scale_vectors.py',
        'generators': GENERATORS,
        'value_encoding': ("flat C-order lists; every number is the exact float32 value written "
                           "as a double (parse as f64, then 'as f32' is exact); null = an output "
                           "element the C code never writes (uninitialised in Torch)."),
        'sha256': 'common.sha256_f32: sha256 of the float32 C-order little-endian bytes',
        'cases': cases,
    }
    common.write_json(OUT, doc)
    print(f'wrote {OUT} ({os.path.getsize(OUT)} bytes, {len(cases)} cases)')


if __name__ == '__main__':
    main()
