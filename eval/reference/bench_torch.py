"""PyTorch side of the speed comparison: eval-mode forward throughput of the reference SN ResNet
(eval/reference/sn_reference.py) after a warm-up, the same measurement as `snzoo bench`.

    python3 eval/reference/bench_torch.py --arch resnet50v1 --batch-size 16 --threads 2 --seconds 10
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from sn_reference import build, randomize  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--arch', default='resnet50v1')
    ap.add_argument('--batch-size', type=int, default=16)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seconds', type=float, default=10)
    ap.add_argument('--dtype', default='f32', choices=['f32', 'bf16'])
    ap.add_argument('--device', default='cpu', help='cpu or cuda')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    depth, version = int(a.arch[6:-2]), a.arch[-2:]
    model = randomize(build(version, depth), 1).eval().to(a.device)
    x = torch.randn(a.batch_size, 3, 224, 224).to(a.device)
    if a.dtype == 'bf16':
        model, x = model.bfloat16(), x.bfloat16()

    def forward():
        # Copying the logits to the host waits for the device, as `snzoo bench` does.
        model(x).float().cpu()

    times = []
    with torch.no_grad():
        forward()
        start = time.time()
        while len(times) < 3 or time.time() - start < a.seconds:
            t = time.time()
            forward()
            times.append((time.time() - t) * 1000)
    times_sorted = sorted(times)
    print(json.dumps({'torch': torch.__version__, 'arch': a.arch + '-sn', 'batch_size': a.batch_size,
                      'threads': a.threads, 'dtype': a.dtype, 'device': a.device,
                      'images_per_second': len(times) * a.batch_size / (sum(times) / 1000),
                      'ms_per_batch': {'median': times_sorted[len(times) // 2], 'min': times_sorted[0],
                                       'max': times_sorted[-1]},
                      'peak_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == '__main__':
    main()
