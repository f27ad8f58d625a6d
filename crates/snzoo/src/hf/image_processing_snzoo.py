# Written by snzoo (https://github.com/snzoo/snzoo) next to every `snzoo export --hf` folder.
# Licence of this file: MIT OR Apache-2.0.
"""The evaluation preprocessing of an snzoo model, as its `preprocessor_config.json` describes it.

* `torchvision` (the SN release, torchvision, timm): Pillow resize of the shorter side, centre crop
  (offsets rounded as torchvision's `CenterCrop`), `ToTensor`, `Normalize` — the same float32
  operations as torchvision, so the same tensor as `snzoo classify --save-input`.
* `tf-slim`, `caffe`, `fbtorch` (the BN baselines): TensorFlow's legacy `resize_bilinear`,
  OpenCV's fixed-point `cv2.resize(INTER_LINEAR)` and torch/image's bicubic `image.scale`, written
  here in NumPy with the same arithmetic as snzoo's (which is bit-identical to TensorFlow's,
  OpenCV's and Torch's C code on the test photos); no OpenCV, TensorFlow or Torch7 needed.
The crops, channel order, value range, mean and mean image are the protocols' own. For the exact
tensor of any protocol, `snzoo classify --save-input`.
"""
import numpy as np
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature


def _to_pil(image):
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a * 255.0 if a.max() <= 1.0 else a), 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return Image.fromarray(a).convert("RGB")


def _legacy_bilinear(a, width, height):
    """TF1 `resize_bilinear(align_corners=False)`: in = out · (in_size / out_size), float32."""

    def axis(out, size):
        x = np.arange(out, dtype=np.float32) * np.float32(size / out)
        lo = np.floor(x).astype(np.int64)
        return np.minimum(lo, size - 1), np.minimum(lo + 1, size - 1), (x - lo).astype(np.float32)

    x0, x1, tx = axis(width, a.shape[1])
    y0, y1, ty = axis(height, a.shape[0])
    a = a.astype(np.float32)
    top = a[y0][:, x0] + (a[y0][:, x1] - a[y0][:, x0]) * tx[None, :, None]
    bottom = a[y1][:, x0] + (a[y1][:, x1] - a[y1][:, x0]) * tx[None, :, None]
    return top + (bottom - top) * ty[:, None, None]


def _opencv_table(dst, src, clamp):
    """One axis of OpenCV's INTER_LINEAR: source index and 11-bit weights per output sample."""
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = f - s.astype(np.float32)
    if clamp:
        f = np.where(s < 0, np.float32(0), f)
        s = np.maximum(s, 0)
        f = np.where(s >= src - 1, np.float32(0), f)
        s = np.minimum(s, src - 1)
    w0 = np.round((np.float32(1) - f) * np.float32(2048)).astype(np.int64)  # half to even, as OpenCV
    w1 = np.round(f * np.float32(2048)).astype(np.int64)
    return s, w0, w1


def _opencv_linear(a, width, height):
    """`cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)` of 8-bit RGB, in
    OpenCV's 11-bit fixed point (as snzoo's `opencv.rs`), and its exact-2× area path."""
    sh, sw = a.shape[:2]
    if (width, height) == (sw, sh):
        return a
    a = a.astype(np.int64)
    if sw == 2 * width and sh == 2 * height:
        total = a[0::2, 0::2] + a[0::2, 1::2] + a[1::2, 0::2] + a[1::2, 1::2]
        return ((total + 2) >> 2).astype(np.uint8)
    xs, a0, a1 = _opencv_table(width, sw, True)
    ys, b0, b1 = _opencv_table(height, sh, False)
    h = a[:, xs] * a0[None, :, None] + a[:, np.minimum(xs + 1, sw - 1)] * a1[None, :, None]
    r0, r1 = np.clip(ys, 0, sh - 1), np.clip(ys + 1, 0, sh - 1)
    v = ((b0[:, None, None] * (h[r0] >> 4)) >> 16) + ((b1[:, None, None] * (h[r1] >> 4)) >> 16)
    return np.clip((v + 2) >> 2, 0, 255).astype(np.uint8)


def _torch_cubic_axis(a, out, axis):
    """One pass of torch/image's `scaleCubic_rowcol` along `axis` (align corners, linear
    extrapolation past the edges, the polynomial in float32, the last step in float64)."""
    size = a.shape[axis]
    if out == size:
        return a
    a = np.moveaxis(a, axis, 0)
    if size == 1:
        return np.moveaxis(np.repeat(a, out, 0), 0, axis)
    scale = np.float32(size - 1) / np.float32(max(out - 1, 1)) if out > 1 else np.float32(size - 1)
    sf = np.arange(out - 1, dtype=np.float32) * scale
    si = np.minimum(sf.astype(np.int64), size - 2)
    t = (sf - si.astype(np.float32))[:, None, None]
    p1, p2 = a[si], a[si + 1]
    p0 = np.where((si > 0)[:, None, None], a[np.maximum(si - 1, 0)], np.float32(2) * p1 - p2)
    p3 = np.where((si + 2 < size)[:, None, None], a[np.minimum(si + 2, size - 1)], np.float32(2) * p2 - p1)
    a1 = p2 - p0
    a2 = np.float32(2) * p0 - np.float32(5) * p1 + np.float32(4) * p2 - p3
    a3 = np.float32(3) * (p1 - p2) + p3 - p0
    inner = a1 + t * (a2 + t * a3)
    body = (p1.astype(np.float64) + 0.5 * t.astype(np.float64) * inner.astype(np.float64)).astype(np.float32)
    return np.moveaxis(np.concatenate([body, a[-1:]], 0), 0, axis)


def _torch_image_scale(a, width, height):
    """fb.resnet.torch: `image.load` (× (float)(1/255)) then `image.scale(..., 'bicubic')`."""
    x = a.astype(np.float32) * np.float32(1.0 / 255.0)
    return _torch_cubic_axis(_torch_cubic_axis(x, width, 1), height, 0)


class SnzooImageProcessor(BaseImageProcessor):
    model_input_names = ["pixel_values"]

    def __init__(
        self,
        pipeline="torchvision",
        resize_shorter_side=256,
        crop_size=224,
        interpolation="bilinear",
        image_mean=(0.485, 0.456, 0.406),
        image_std=(0.229, 0.224, 0.225),
        channel_order="rgb",
        value_range="unit",
        mean_image=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if pipeline not in ("torchvision", "tf-slim", "caffe", "fbtorch"):
            raise ValueError(f"unknown pipeline {pipeline!r}")
        self.pipeline = pipeline
        self.resize_shorter_side = int(resize_shorter_side)
        self.crop_size = int(crop_size)
        self.interpolation = interpolation
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.channel_order = channel_order
        self.value_range = value_range
        # A per-pixel mean protocol's mean image (3 × crop × crop, in the input's channel order).
        self.mean_image = mean_image
        self._mean_image = None if mean_image is None else np.asarray(mean_image, dtype=np.float64).astype(np.float32)
        if self._mean_image is not None and self._mean_image.shape != (3, self.crop_size, self.crop_size):
            raise ValueError(f"the mean image is {self._mean_image.shape}, not 3×{self.crop_size}×{self.crop_size}")

    def to_dict(self):
        d = super().to_dict()
        d.pop("_mean_image", None)
        return d

    def _resized_dims(self, w, h):
        s = self.resize_shorter_side
        if self.pipeline == "tf-slim":
            scale = np.float32(s) / np.float32(w if h > w else h)
            return int(np.float32(w) * scale), int(np.float32(h) * scale)
        if self.pipeline == "fbtorch":
            if (w <= h and w == s) or (h <= w and h == s):
                return w, h
            return (s, int(h / w * s)) if w < h else (int(w / h * s), s)
        return (s, s * h // w) if w <= h else (s * w // h, s)

    def _crop_offsets(self, w, h):
        c = self.crop_size
        if self.pipeline == "torchvision":
            return int(round((w - c) / 2.0)), int(round((h - c) / 2.0))
        if self.pipeline == "fbtorch":
            return -(-(w - c) // 2), -(-(h - c) // 2)
        return (w - c) // 2, (h - c) // 2

    def _one(self, image):
        img = _to_pil(image)
        w, h = self._resized_dims(*img.size)
        if self.pipeline == "tf-slim":
            a = _legacy_bilinear(np.asarray(img), w, h)
        elif self.pipeline == "caffe":
            a = _opencv_linear(np.asarray(img), w, h)
        elif self.pipeline == "fbtorch":
            a = _torch_image_scale(np.asarray(img), w, h)
        else:
            flt = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[self.interpolation]
            a = np.asarray(img.resize((w, h), flt))
        c = self.crop_size
        if w < c or h < c:
            raise ValueError(f"the image resizes to {w}×{h}, smaller than the {c}×{c} crop")
        left, top = self._crop_offsets(w, h)
        a = a[top : top + c, left : left + c]
        if self.channel_order == "bgr":
            a = a[..., ::-1]
        x = np.ascontiguousarray(a.transpose(2, 0, 1)).astype(np.float32)
        if self.value_range == "unit" and self.pipeline != "fbtorch":  # fbtorch: scaled on loading
            x = x / np.float32(255)
        if self._mean_image is not None:
            x = x - self._mean_image
        else:
            mean = np.asarray(self.image_mean, dtype=np.float32)[:, None, None]
            std = np.asarray(self.image_std, dtype=np.float32)[:, None, None]
            x = (x - mean) / std
        return x

    def preprocess(self, images, return_tensors=None, **kwargs):
        if not isinstance(images, (list, tuple)):
            images = [images]
        pixel_values = np.stack([self._one(im) for im in images])
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)
