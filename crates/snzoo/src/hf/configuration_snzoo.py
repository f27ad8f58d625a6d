# Written by snzoo (https://github.com/snzoo/snzoo) next to every `snzoo export --hf` folder.
# Licence of this file: MIT OR Apache-2.0. The weights beside it carry their own licence (README.md).
"""The configuration of an snzoo ResNet: Switchable Normalization (Luo et al., ICLR 2019), BatchNorm
and GroupNorm ResNets, v1 and pre-activation v2, in torchvision's layout or one of the BN baselines'
(TF-Slim, MSRA Caffe, fb.resnet.torch)."""
from transformers import PretrainedConfig


class SnzooResNetConfig(PretrainedConfig):
    model_type = "snzoo_resnet"

    def __init__(
        self,
        version="v1",
        block="bottleneck",
        layers=(3, 4, 6, 3),
        width=64,
        layout="torchvision",
        normalization=None,
        snzoo_arch=None,
        preprocessing=None,
        **kwargs,
    ):
        if version not in ("v1", "v2"):
            raise ValueError(f"version must be v1 or v2, not {version!r}")
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be basic or bottleneck, not {block!r}")
        if layout not in ("torchvision", "slim", "msra", "fbtorch"):
            raise ValueError(f"unknown layout {layout!r}")
        if len(layers) != 4:
            raise ValueError(f"layers must list four stage sizes, not {layers!r}")
        normalization = dict(normalization or {"type": "switchable", "using_bn": True})
        if normalization.get("type") not in ("switchable", "batch", "group"):
            raise ValueError(f"unknown normalization {normalization!r}")
        normalization.setdefault("eps", 1e-5)
        self.version = version
        self.block = block
        self.layers = list(layers)
        self.width = int(width)
        self.layout = layout
        self.normalization = normalization
        self.snzoo_arch = snzoo_arch
        self.preprocessing = preprocessing
        super().__init__(**kwargs)


# `pipeline("image-classification", model=folder, trust_remote_code=True)` loads an image processor
# only for configurations that AutoImageProcessor knows: register ours (`register`'s signature changed
# in transformers 4.42).
from transformers import AutoImageProcessor  # noqa: E402

from .image_processing_snzoo import SnzooImageProcessor  # noqa: E402

try:
    AutoImageProcessor.register(SnzooResNetConfig, slow_image_processor_class=SnzooImageProcessor, exist_ok=True)
except TypeError:  # transformers before 4.42
    AutoImageProcessor.register(SnzooResNetConfig, SnzooImageProcessor, exist_ok=True)
