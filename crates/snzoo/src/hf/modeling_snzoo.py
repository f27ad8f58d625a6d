# Written by snzoo (https://github.com/snzoo/snzoo) next to every `snzoo export --hf` folder.
# Licence of this file: MIT OR Apache-2.0. The weights beside it carry their own licence (README.md).
"""A plain PyTorch ResNet with Switchable, Batch or Group Normalization, whose state-dict keys are
exactly snzoo's (and the SN release's): `conv1`, `sn1`/`bn1`, `layer1.0.conv1`, ..., `fc`.

It computes what `snzoo classify` computes:

* SwitchNorm2d (Luo et al., ICLR 2019): instance moments over H×W with the unbiased variance, layer
  moments from them, the batch moments from the running buffers in eval mode (from the batch while
  training, with the release's moving average), mixed by softmax(mean_weight), softmax(var_weight)
  in the order (IN, LN, BN); y = (x − mean) / sqrt(var + eps) · weight + bias.
* BatchNorm2d and GroupNorm as in PyTorch.
* v1 (post-activation) and v2 (pre-activation, with `sn_out`/`bn_out` before the pool) networks.
* The BN baselines' layouts (config `layout`): `slim` (stride on the 3×3 of a stage's last block,
  identity shortcuts subsampled, TF 'SAME' stem pool), `msra` (stride on the first 1×1, biased
  conv1, ceil-mode stem pool), `fbtorch` (biased convolutions, the block's last norm after the
  addition, unnormalized projection shortcuts).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutputWithNoAttention

from .configuration_snzoo import SnzooResNetConfig


class SwitchNorm2d(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.9, using_moving_average=True, using_bn=True):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.using_moving_average = using_moving_average
        self.using_bn = using_bn
        self.weight = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        n = 3 if using_bn else 2
        self.mean_weight = nn.Parameter(torch.ones(n))
        self.var_weight = nn.Parameter(torch.ones(n))
        if using_bn:
            self.register_buffer("running_mean", torch.zeros(1, num_features, 1))
            self.register_buffer("running_var", torch.zeros(1, num_features, 1))

    def forward(self, x):
        n, c, h, w = x.shape
        x = x.reshape(n, c, -1)
        mean_in = x.mean(-1, keepdim=True)
        var_in = x.var(-1, keepdim=True)  # unbiased: ÷ (H·W − 1)
        mean_ln = mean_in.mean(1, keepdim=True)
        temp = var_in + mean_in**2
        var_ln = temp.mean(1, keepdim=True) - mean_ln**2
        mw = F.softmax(self.mean_weight, 0)
        vw = F.softmax(self.var_weight, 0)
        mean = mw[0] * mean_in + mw[1] * mean_ln
        var = vw[0] * var_in + vw[1] * var_ln
        if self.using_bn:
            if self.training:
                mean_bn = mean_in.mean(0, keepdim=True)
                var_bn = temp.mean(0, keepdim=True) - mean_bn**2
                with torch.no_grad():
                    if self.using_moving_average:
                        self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean_bn)
                        self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var_bn)
                    else:
                        self.running_mean.add_(mean_bn)
                        self.running_var.add_(mean_bn**2 + var_bn)
            else:
                mean_bn, var_bn = self.running_mean, self.running_var
            mean = mean + mw[2] * mean_bn
            var = var + vw[2] * var_bn
        x = (x - mean) / (var + self.eps).sqrt()
        return x.reshape(n, c, h, w) * self.weight + self.bias


def make_norm(config, channels):
    spec = config.normalization
    eps = spec.get("eps", 1e-5)
    kind = spec["type"]
    if kind == "switchable":
        return SwitchNorm2d(
            channels,
            eps=eps,
            using_moving_average=spec.get("using_moving_average", True),
            using_bn=spec.get("using_bn", True),
        )
    if kind == "batch":
        return nn.BatchNorm2d(channels, eps=eps)
    if kind == "group":
        return nn.GroupNorm(spec["groups"], channels, eps=eps)
    raise ValueError(f"unknown normalization {spec!r}")


def norm_prefix(config):
    return "sn" if config.normalization["type"] == "switchable" else "bn"


class Block(nn.Module):
    """One residual block; attribute names are the checkpoint's keys."""

    def __init__(self, config, stage, index, blocks, c_in):
        super().__init__()
        layout, self.version = config.layout, config.version
        self.prefix = p = norm_prefix(config)
        planes = config.width << stage
        expansion = 4 if config.block == "bottleneck" else 1
        c_out = planes * expansion
        if layout == "slim":
            stride = 2 if stage < 3 and index + 1 == blocks else 1
        else:
            stride = 2 if stage > 0 and index == 0 else 1
        self.stride = stride
        first, middle = (stride, 1) if layout == "msra" else (1, stride)
        if config.block == "bottleneck":
            convs = [(c_in, planes, 1, first), (planes, planes, 3, middle), (planes, c_out, 1, 1)]
        else:
            convs = [(c_in, planes, 3, stride), (planes, planes, 3, 1)]
        self.n = len(convs)
        bias = layout == "fbtorch"
        self.norm_after_add = layout == "fbtorch"
        for i, (ci, co, k, s) in enumerate(convs, 1):
            setattr(self, f"conv{i}", nn.Conv2d(ci, co, k, s, k // 2, bias=bias and self.version == "v1"))
            if self.version == "v1":
                setattr(self, f"{p}{i}", make_norm(config, co))
            else:
                setattr(self, f"{p}{i}", make_norm(config, ci))
        # The projection shortcut: first block of a stage whose width changes.
        width = config.width
        inplanes = width if stage == 0 else (width << (stage - 1)) * expansion
        has_down = index == 0 and (stage != 0 or inplanes != width * expansion)
        self.downsample = None
        if has_down:
            conv = nn.Conv2d(c_in, c_out, 1, stride, 0, bias=bias and self.version == "v1")
            if self.version == "v2":
                self.downsample = conv
            elif layout == "fbtorch":
                self.downsample = nn.Sequential(conv)
            else:
                self.downsample = nn.Sequential(conv, make_norm(config, c_out))
        self.subsample = not has_down and stride > 1  # slim: identity shortcut, 1×1/2 max-pool

    def conv(self, i):
        return getattr(self, f"conv{i}")

    def norm(self, i):
        return getattr(self, f"{self.prefix}{i}")

    def forward(self, x):
        if self.version == "v2":
            pre = F.relu(self.norm(1)(x))
            residual = self.downsample(pre) if self.downsample is not None else x
            y = pre
            for i in range(1, self.n + 1):
                if i > 1:
                    y = F.relu(self.norm(i)(y))
                y = self.conv(i)(y)
            return y + residual
        y = x
        for i in range(1, self.n + 1):
            y = self.conv(i)(y)
            if i == self.n and self.norm_after_add:
                break
            y = self.norm(i)(y)
            if i != self.n:
                y = F.relu(y)
        if self.downsample is not None:
            residual = self.downsample(x)
        elif self.subsample:
            residual = x[:, :, ::2, ::2]
        else:
            residual = x
        y = y + residual
        if self.norm_after_add:
            y = self.norm(self.n)(y)
        return F.relu(y)


class SnzooResNetPreTrainedModel(PreTrainedModel):
    config_class = SnzooResNetConfig
    # No key starts with this prefix: the checkpoint's keys are the model's, as they are.
    base_model_prefix = "snzoo_resnet"
    main_input_name = "pixel_values"
    # The running-statistics counter of PyTorch's BatchNorm is not stored by snzoo, and a protocol's
    # mean image (`eval.mean_image`) belongs to the image processor.
    _keys_to_ignore_on_load_missing = [r"num_batches_tracked"]
    _keys_to_ignore_on_load_unexpected = [r"num_batches_tracked", r"^eval\."]

    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            bound = 1 / math.sqrt(module.in_features)
            nn.init.uniform_(module.weight, -bound, bound)
            nn.init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, SwitchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            if isinstance(module, SwitchNorm2d):
                nn.init.ones_(module.mean_weight)
                nn.init.ones_(module.var_weight)


class SnzooResNetForImageClassification(SnzooResNetPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.layout = config.layout
        p = norm_prefix(config)
        width = config.width
        stem_bias = config.layout in ("msra", "fbtorch")
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=stem_bias)
        setattr(self, f"{p}1", make_norm(config, width))
        self._stem_norm = f"{p}1"
        expansion = 4 if config.block == "bottleneck" else 1
        c_in = width
        for stage, blocks in enumerate(config.layers):
            layer = nn.Sequential(*[Block(config, stage, b, blocks, c_in if b == 0 else (width << stage) * expansion) for b in range(blocks)])
            setattr(self, f"layer{stage + 1}", layer)
            c_in = (width << stage) * expansion
        self._out_norm = None
        if config.version == "v2":
            self._out_norm = f"{p}_out"
            setattr(self, self._out_norm, make_norm(config, c_in))
        self.num_features = c_in
        self.fc = nn.Linear(c_in, config.num_labels)
        self.post_init()

    def stem_pool(self, x):
        if self.layout == "slim":
            # TensorFlow 'SAME': pad so that the output is ⌈n/2⌉, the smaller half before.
            pads = []
            for n in (x.shape[3], x.shape[2]):
                total = max((math.ceil(n / 2) - 1) * 2 + 3 - n, 0)
                pads += [total // 2, total - total // 2]
            return F.max_pool2d(F.pad(x, pads, value=float("-inf")), 3, 2)
        if self.layout == "msra":
            return F.max_pool2d(x, 3, 2, 0, ceil_mode=True)
        return F.max_pool2d(x, 3, 2, 1)

    def stages(self, pixel_values):
        """The outputs of the stem and of layer1..layer4 (the last one after `*_out` in v2)."""
        x = F.relu(getattr(self, self._stem_norm)(self.conv1(pixel_values)))
        x = self.stem_pool(x)
        out = [x]
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            out.append(x)
        if self._out_norm is not None:
            out[-1] = F.relu(getattr(self, self._out_norm)(out[-1]))
        return out

    def forward_features(self, pixel_values):
        """The globally pooled penultimate features (as timm's `forward_features` + pool; `snzoo embed`)."""
        return self.stages(pixel_values)[-1].mean((2, 3))

    def forward(self, pixel_values=None, labels=None, output_hidden_states=None, return_dict=None):
        return_dict = return_dict if return_dict is not None else self.config.use_return_dict
        output_hidden_states = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        hidden = self.stages(pixel_values)
        logits = self.fc(hidden[-1].mean((2, 3)))
        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.float())
            else:
                loss = F.cross_entropy(logits, labels)
        hidden_states = tuple(hidden) if output_hidden_states else None
        if not return_dict:
            out = (logits,) + ((hidden_states,) if hidden_states is not None else ())
            return ((loss,) + out) if loss is not None else out
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits, hidden_states=hidden_states)
