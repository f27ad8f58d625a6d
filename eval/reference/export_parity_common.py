"""What onnx_parity.py and hf_parity.py share: the photos, the error measure and top-5."""
import os

import numpy as np

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
PHOTOS = ['chelsea_420.jpg', 'coffee_444.jpg', 'hubble_odd.jpg', 'rocket_wide.jpg', 'astronaut_tall.jpg']


def rel(a, b):
    """max |a − b| / max |b|."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def top5(x):
    return np.argsort(-x, axis=1, kind='stable')[:, :5]
