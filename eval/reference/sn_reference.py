"""PyTorch reference for Switchable Normalization ResNets (v1 and pre-activation v2).

Written from the paper (Luo et al., ICLR 2019) and the semantics stated in snzoo's issues, with the
released state-dict key names. Used only to make fixtures and to measure parity; snzoo itself never
runs Python.

    SwitchNorm2d: weight/bias (1,C,1,1); mean_weight/var_weight (3) or (2) without BN;
    running_mean/running_var (1,C,1) when using_bn. Instance statistics over H*W with the unbiased
    variance; layer statistics from the instance moments; in eval BN uses the running buffers;
    softmax mixing in the order (IN, LN, BN); y = (x - mean) / sqrt(var + eps) * weight + bias.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class SwitchNorm2d(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.9, using_moving_average=True,
                 using_bn=True, last_gamma=False):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.using_moving_average = using_moving_average
        self.using_bn = using_bn
        self.last_gamma = last_gamma
        self.weight = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        n = 3 if using_bn else 2
        self.mean_weight = nn.Parameter(torch.ones(n))
        self.var_weight = nn.Parameter(torch.ones(n))
        if using_bn:
            self.register_buffer('running_mean', torch.zeros(1, num_features, 1))
            self.register_buffer('running_var', torch.zeros(1, num_features, 1))
        if last_gamma:
            self.weight.data.fill_(0)

    def forward(self, x):
        N, C, H, W = x.size()
        x = x.view(N, C, -1)
        mean_in = x.mean(-1, keepdim=True)
        var_in = x.var(-1, keepdim=True)  # unbiased: divides by H*W - 1
        mean_ln = mean_in.mean(1, keepdim=True)
        temp = var_in + mean_in ** 2
        var_ln = temp.mean(1, keepdim=True) - mean_ln ** 2
        if self.using_bn:
            if self.training:
                mean_bn = mean_in.mean(0, keepdim=True)
                var_bn = temp.mean(0, keepdim=True) - mean_bn ** 2
                with torch.no_grad():
                    if self.using_moving_average:
                        self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean_bn)
                        self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var_bn)
                    else:
                        self.running_mean.add_(mean_bn)
                        self.running_var.add_(mean_bn ** 2 + var_bn)
            else:
                mean_bn = self.running_mean
                var_bn = self.running_var
        mw = F.softmax(self.mean_weight, 0)
        vw = F.softmax(self.var_weight, 0)
        if self.using_bn:
            mean = mw[0] * mean_in + mw[1] * mean_ln + mw[2] * mean_bn
            var = vw[0] * var_in + vw[1] * var_ln + vw[2] * var_bn
        else:
            mean = mw[0] * mean_in + mw[1] * mean_ln
            var = vw[0] * var_in + vw[1] * var_ln
        x = (x - mean) / (var + self.eps).sqrt()
        x = x.view(N, C, H, W)
        return x * self.weight + self.bias


def conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, 3, stride, 1, bias=False)


class BasicBlockV1(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, downsample, sn):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.sn1 = sn(planes)
        self.conv2 = conv3x3(planes, planes)
        self.sn2 = sn(planes, last_gamma=True)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.sn1(self.conv1(x)))
        out = self.sn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class BottleneckV1(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, downsample, sn):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.sn1 = sn(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.sn2 = sn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.sn3 = sn(planes * 4, last_gamma=True)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.sn1(self.conv1(x)))
        out = F.relu(self.sn2(self.conv2(out)))
        out = self.sn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class BasicBlockV2(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, downsample, sn):
        super().__init__()
        self.sn1 = sn(inplanes)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.sn2 = sn(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample

    def forward(self, x):
        pre = F.relu(self.sn1(x))
        residual = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.sn2(out)))
        return out + residual


class BottleneckV2(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, downsample, sn):
        super().__init__()
        self.sn1 = sn(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.sn2 = sn(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.sn3 = sn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.downsample = downsample

    def forward(self, x):
        pre = F.relu(self.sn1(x))
        residual = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.sn2(out)))
        out = self.conv3(F.relu(self.sn3(out)))
        return out + residual


DEPTHS = {18: ('basic', [2, 2, 2, 2]), 34: ('basic', [3, 4, 6, 3]), 50: ('bottleneck', [3, 4, 6, 3]),
          101: ('bottleneck', [3, 4, 23, 3]), 152: ('bottleneck', [3, 8, 36, 3])}


class ResNetSN(nn.Module):
    def __init__(self, version, block, layers, width=64, num_classes=1000, using_bn=True,
                 using_moving_average=True, dropout=0.5):
        super().__init__()
        self.version = version
        blocks = {('v1', 'basic'): BasicBlockV1, ('v1', 'bottleneck'): BottleneckV1,
                  ('v2', 'basic'): BasicBlockV2, ('v2', 'bottleneck'): BottleneckV2}
        Block = blocks[(version, block)]

        def sn(c, last_gamma=False):
            return SwitchNorm2d(c, using_bn=using_bn, using_moving_average=using_moving_average,
                                last_gamma=last_gamma)

        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.sn1 = sn(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, n in enumerate(layers):
            planes = width * 2 ** i
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or self.inplanes != planes * Block.expansion:
                conv = nn.Conv2d(self.inplanes, planes * Block.expansion, 1, stride, bias=False)
                downsample = conv if version == 'v2' else nn.Sequential(conv, sn(planes * Block.expansion))
            mods = [Block(self.inplanes, planes, stride, downsample, sn)]
            self.inplanes = planes * Block.expansion
            mods += [Block(self.inplanes, planes, 1, None, sn) for _ in range(1, n)]
            setattr(self, 'layer%d' % (i + 1), nn.Sequential(*mods))
        if version == 'v2':
            self.sn_out = sn(self.inplanes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(self.inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x):
        x = F.relu(self.sn1(self.conv1(x)))
        x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if self.version == 'v2':
            x = F.relu(self.sn_out(x))
        x = x.mean((2, 3))  # the original: AvgPool2d(7) at 224 input
        return self.fc(self.dropout(x))


def build(version, depth=None, block=None, layers=None, **kw):
    if depth is not None:
        block, layers = DEPTHS[depth]
    return ResNetSN(version, block, layers, **kw)


def randomize(model, seed):
    """Random but well-scaled weights: every SN parameter and buffer is perturbed so that all three
    statistics and both mixing vectors matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('mean_weight') or name.endswith('var_weight'):
                p.copy_(torch.randn(p.shape, generator=g))
            elif p.dim() == 4 and p.shape[0] == 1:  # SN weight / bias (1,C,1,1)
                if name.endswith('weight'):
                    p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif name == 'fc.weight':
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p.shape[1]) ** 0.5)
            elif name == 'fc.bias':
                p.copy_(0.01 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(0.5 * torch.randn(b.shape, generator=g))
            elif name.endswith('running_var'):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model


def build_torchvision_bn(depth_layers=(3, 4, 6, 3), width=64, num_classes=1000, norm_layer=None):
    """torchvision's own ResNet (Bottleneck blocks, BatchNorm, its key names and forward), with a
    configurable stem width so that tests can use tiny networks; width 64 is torchvision's resnet50.
    `norm_layer(channels)` replaces BatchNorm (e.g. timm's GroupNorm)."""
    norm = norm_layer or nn.BatchNorm2d
    import torchvision.models.resnet as tvr

    class TorchvisionResNet(tvr.ResNet):
        def __init__(self):
            nn.Module.__init__(self)
            self._norm_layer = norm
            self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = norm(width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(tvr.Bottleneck, width, depth_layers[0])
            self.layer2 = self._make_layer(tvr.Bottleneck, width * 2, depth_layers[1], stride=2)
            self.layer3 = self._make_layer(tvr.Bottleneck, width * 4, depth_layers[2], stride=2)
            self.layer4 = self._make_layer(tvr.Bottleneck, width * 8, depth_layers[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(width * 8 * 4, num_classes)

    return TorchvisionResNet()


def randomize_bn(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif name == 'fc.weight':
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p.shape[1]) ** 0.5)
            elif name.endswith('weight'):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(0.2 * torch.randn(b.shape, generator=g))
            elif name.endswith('running_var'):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model
