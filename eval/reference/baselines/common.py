"""Conventions shared by the BN-baseline fixture generators (slim.py, caffe.py, torch7.py).

The tiny networks are ResNet v1 bottleneck networks in each framework's own layout:
width 4 (the stem's channels; stage s has planes 4 << s and 4 * (4 << s) output channels),
blocks per stage TINY_LAYERS, TINY_CLASSES classes. Their input is TINY_INPUT_SHAPE (odd sizes,
so that the frameworks' pooling conventions differ and are exercised).

Each generator writes fixtures/frameworks/<framework>/ with the model file(s), input.npy
(NCHW float32 in the framework's value convention), logits.npy ([N, classes] float32 computed
by the framework's own code) and manifest.json.
"""
import hashlib
import json
import os

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
FIXTURES = os.path.join(ROOT, 'fixtures')
FRAMEWORKS = os.path.join(FIXTURES, 'frameworks')
IMAGES = os.path.join(FIXTURES, 'images')

TINY_WIDTH = 4
TINY_LAYERS = [2, 1, 2, 1]
TINY_CLASSES = 10
TINY_INPUT_SHAPE = (2, 3, 61, 67)

# The real photos of the preprocessing parity checks (fixtures/images/).
PHOTOS = ['chelsea_420.jpg', 'coffee_444.jpg', 'astronaut_progressive.jpg', 'astronaut_tall.jpg',
          'chelsea_small.jpg', 'hubble_odd.jpg', 'rocket_wide.jpg', 'rocket_gray.jpg',
          'coffee_palette.png', 'astronaut_rgba.png', 'chelsea_png.JPEG']
# Full-size parity runs on these three.
PARITY_PHOTOS = ['chelsea_420.jpg', 'coffee_444.jpg', 'hubble_odd.jpg']


def rng(seed):
    return np.random.default_rng(seed)


def tiny_input(seed, scale=1.0):
    """The tiny networks' input: N(0, scale²), float32."""
    return (rng(seed).standard_normal(TINY_INPUT_SHAPE) * scale).astype(np.float32)


def he(r, shape, fan_in):
    return (r.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def bn_params(r, c):
    """gamma, beta, mean, var of a random BatchNorm with sane statistics."""
    return ((1 + 0.2 * r.standard_normal(c)).astype(np.float32),
            (0.1 * r.standard_normal(c)).astype(np.float32),
            (0.2 * r.standard_normal(c)).astype(np.float32),
            (0.5 + r.random(c)).astype(np.float32))


def sha256_f32(arr):
    """sha256 of an array's float32 C-order bytes (how the protocol fixtures name tensors)."""
    return hashlib.sha256(np.ascontiguousarray(arr, dtype=np.float32).tobytes()).hexdigest()


def write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write('\n')
