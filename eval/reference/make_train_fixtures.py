"""Training-mode fixtures: gradients, running statistics and 3 SGD steps of tiny SN ResNets,
computed by the PyTorch reference (eval/reference/sn_reference.py).

    PYTHONPATH=DIR_WITH_SAFETENSORS /usr/bin/python3 eval/reference/make_train_fixtures.py

For each model: `NAME.pth` (the starting weights, torch.save zip), and `NAME.expected.safetensors`:
  grad.<param>               gradients of the batch-mean cross-entropy (train mode, dropout 0)
  forward_ma.<buffer>        running statistics after one training forward, moving average (momentum 0.9)
  forward_acc.<buffer>       the same with using_moving_average off (accumulation)
  step3_ma.<param|buffer>    weights and statistics after 3 SGD steps (lr 0.01, momentum 0.9,
                             weight decay 1e-4) on the same batch, moving average
  step3_acc.<buffer>         running statistics after those steps, accumulation
plus `input.npy` [6, 3, 48, 48] and `labels.json`.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from sn_reference import ResNetSN, SwitchNorm2d, randomize  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'train')
MODELS = [
    # name, version, block, layers, using_bn
    ('v1_bottleneck_bn', 'v1', 'bottleneck', [1, 1, 1, 1], True),
    ('v1_bottleneck_nobn', 'v1', 'bottleneck', [1, 1, 1, 1], False),
    ('v2_basic_bn', 'v2', 'basic', [1, 1, 1, 1], True),
]
LR, MOMENTUM, WD = 0.01, 0.9, 1e-4


def sgd_steps(model, x, y, steps):
    """`steps` steps of torch.optim.SGD (LR, MOMENTUM, WD) on cross-entropy for one batch."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

def set_moving_average(model, on):
    for m in model.modules():
        if isinstance(m, SwitchNorm2d):
            m.using_moving_average = on


def buffers(model, prefix):
    return {prefix + k: v.detach().clone().contiguous() for k, v in model.named_buffers()}


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(99)
    x = torch.randn(6, 3, 48, 48, generator=g)
    y = torch.tensor([3, 1, 4, 1, 5, 9])
    np.save(os.path.join(OUT, 'input.npy'), x.numpy())
    with open(os.path.join(OUT, 'labels.json'), 'w') as f:
        json.dump(y.tolist(), f)
    losses = {}
    for i, (name, version, block, layers, using_bn) in enumerate(MODELS):
        base = randomize(ResNetSN(version, block, layers, width=4, num_classes=10, using_bn=using_bn, dropout=0.0), 500 + i)
        start = {k: v.clone() for k, v in base.state_dict().items()}
        torch.save(start, os.path.join(OUT, name + '.pth'))
        out = {}
        # Gradients and running statistics of one training forward, in both modes.
        for ma, tag in ((True, 'ma'), (False, 'acc')):
            base.load_state_dict(start)
            set_moving_average(base, ma)
            base.train()
            base.zero_grad()
            loss = F.cross_entropy(base(x), y)
            loss.backward()
            if ma:
                out.update({'grad.' + k: p.grad.detach().clone() for k, p in base.named_parameters()})
                losses[name] = loss.item()
            out.update(buffers(base, 'forward_%s.' % tag))
        # Three SGD steps on the same batch.
        for ma, tag in ((True, 'ma'), (False, 'acc')):
            base.load_state_dict(start)
            set_moving_average(base, ma)
            base.train()
            sgd_steps(base, x, y, 3)
            if ma:
                out.update({'step3_ma.' + k: v.detach().clone() for k, v in base.state_dict().items()})
            else:
                out.update(buffers(base, 'step3_acc.'))
        save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, name + '.expected.safetensors'))
    with open(os.path.join(OUT, 'losses.json'), 'w') as f:
        json.dump(losses, f, indent=1)
    print('written', OUT, losses)


FINETUNE_IMAGES = [('chelsea_420.jpg', 3), ('coffee_444.jpg', 1), ('rocket_gray.jpg', 4),
                   ('coffee_cmyk.jpg', 1), ('hubble_odd.jpg', 5), ('astronaut_progressive.jpg', 9)]


def make_finetune_fixture():
    """`snzoo finetune` end to end: the r18v1_bn_zip fixture model, six fixture photos with the
    evaluation preprocessing (torchvision), 3 epochs of one batch of 6, SGD lr 0.01, momentum 0.9,
    weight decay 1e-4, dropout 0, no shuffle, moving average; the final state dict."""
    from make_fixtures import EVAL, NORMALIZE, pil_loader
    from sn_reference import build
    root = os.path.join(OUT, '..')
    with open(os.path.join(OUT, 'finetune_labels.txt'), 'w') as f:
        f.write(''.join('images/%s %d\n' % (n, l) for n, l in FINETUNE_IMAGES))
    x = torch.stack([NORMALIZE(EVAL(pil_loader(os.path.join(root, 'images', n)))) for n, _ in FINETUNE_IMAGES])
    y = torch.tensor([l for _, l in FINETUNE_IMAGES])
    model = build('v1', 18, width=4, num_classes=10, using_bn=True, dropout=0.0)
    model.load_state_dict(torch.load(os.path.join(root, 'models', 'r18v1_bn_zip.pth')))
    model.train()
    sgd_steps(model, x, y, 3)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
              os.path.join(OUT, 'finetune_r18v1_3steps.safetensors'))


if __name__ == '__main__':
    main()
    make_finetune_fixture()
