"""snzoo next to the engines a user would pick instead: ONNX Runtime and OpenVINO running snzoo's
own ONNX export of the same model, back to back, interleaved, best of R rounds per cell.

    /opt/onnxvenv/bin/python eval/reference/peer_bench.py --snzoo target/release/snzoo \
        [--arch resnet50v1] [--batches 1,16] [--seconds 10] [--threads 2] [--rounds 2] \
        [--out eval/results/peer_bench.json]

(/opt/onnxvenv: --system-site-packages over Debian's PyTorch 1.13; pip install "numpy<2" onnx
onnxruntime openvino. A plain venv with PyPI's torch torchvision onnx onnxruntime openvino works
too: PyTorch 2.15 and numpy 2.4 on the Zen 3 run.)

The model is a random-weight full-size SN ResNet (throughput does not depend on the weights),
saved like the release and converted by snzoo; `snzoo export --onnx` gives the graph both peers
run (opset 17). Engines: `snzoo bench` (f32, and bf16 where the CPU has AVX-512 BF16); ONNX
Runtime (ORT_ENABLE_ALL, intra_op_num_threads = threads, f32); OpenVINO (CPU plugin,
INFERENCE_NUM_THREADS = threads, PERFORMANCE_HINT LATENCY, INFERENCE_PRECISION_HINT f32 / bf16).
Each measurement runs for --seconds after a warm-up; each round measures every engine in every
cell, so slow phases of the shared machine hit all engines alike, and the best round counts.

The arithmetic limit is measured on the machine by eval/reference/peak/fma_peak.c (a pure
FMA loop (zmm or ymm, whichever the CPU runs faster) and vdpbf16ps loop where the CPU has it, on all threads, best of three) and divided by the model's flops per
image (2 x the multiply-adds of its convolutions and classifier, counted with forward hooks).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from sn_reference import build, randomize  # noqa: E402
from make_fixtures import prefixed  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def flops_per_image(model):
    total = [0]

    def conv(m, i, o):
        total[0] += 2 * o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def fc(m, i, o):
        total[0] += 2 * m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks += [m.register_forward_hook(fc) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    return total[0]


def peak(threads):
    exe = os.path.join(tempfile.gettempdir(), 'snzoo_fma_peak')
    subprocess.run(['cc', '-O3', '-funroll-all-loops', '-pthread', os.path.join(HERE, 'peak', 'fma_peak.c'), '-o', exe],
                   check=True)
    return json.loads(subprocess.run([exe, str(threads)], check=True, capture_output=True, text=True).stdout)


def timed(run, seconds):
    run()  # warm-up
    n, t0 = 0, time.perf_counter()
    while True:
        run()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and n >= 3:
            return n, dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--snzoo', required=True)
    ap.add_argument('--arch', default='resnet50v1')
    ap.add_argument('--batches', default='1,16')
    ap.add_argument('--seconds', type=float, default=10)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--out', default=None)
    a = ap.parse_args()
    import onnxruntime as ort
    import openvino as ov

    work = tempfile.mkdtemp(prefix='snzoo-peers-')
    depth, version = int(a.arch[6:-2]), a.arch[-2:]
    model = randomize(build(version, depth), 1).eval()
    flops = flops_per_image(model)
    pth, st, onnx_path = (os.path.join(work, n) for n in ('m.pth', 'm.safetensors', 'm.onnx'))
    torch.save({'state_dict': prefixed(model.state_dict())}, pth, _use_new_zipfile_serialization=False)
    del model
    subprocess.run([a.snzoo, 'convert', pth, st], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([a.snzoo, 'export', '--weights', st, '--onnx', onnx_path], check=True, stdout=subprocess.DEVNULL)
    flags = open('/proc/cpuinfo').read()
    has_bf16 = ' avx512_bf16' in flags
    dtypes = ['f32', 'bf16'] if has_bf16 else ['f32']
    limit = peak(a.threads)

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_path, so, providers=['CPUExecutionProvider'])
    core = ov.Core()
    compiled = {d: core.compile_model(onnx_path, 'CPU', {'INFERENCE_NUM_THREADS': a.threads, 'PERFORMANCE_HINT': 'LATENCY',
                                                          'INFERENCE_PRECISION_HINT': d}) for d in dtypes}

    def snzoo(bs, dtype):
        out = subprocess.run([a.snzoo, 'bench', '-w', st, '--batch-size', str(bs), '--seconds', str(a.seconds),
                              '--threads', str(a.threads), '--dtype', dtype, '--json'], check=True, capture_output=True, text=True)
        return json.loads(out.stdout)['images_per_second']

    def onnxruntime(bs, dtype):
        x = np.random.default_rng(0).standard_normal((bs, 3, 224, 224), dtype=np.float32)
        n, dt = timed(lambda: sess.run(None, {'input': x}), a.seconds)
        return n * bs / dt

    def openvino(bs, dtype):
        x = np.random.default_rng(0).standard_normal((bs, 3, 224, 224), dtype=np.float32)
        req = compiled[dtype].create_infer_request()
        n, dt = timed(lambda: req.infer({0: x}), a.seconds)
        return n * bs / dt

    engines = [('snzoo', snzoo, dtypes), ('onnxruntime %s' % ort.__version__, onnxruntime, ['f32']),
               ('openvino %s' % ov.__version__.split('-')[0], openvino, dtypes)]
    cells = [(int(b), d) for b in a.batches.split(',') for d in dtypes]
    best = {}
    runs = []
    for r in range(a.rounds):
        for bs, dtype in cells:
            for name, fn, supported in engines:
                if dtype not in supported:
                    continue
                v = fn(bs, dtype)
                runs.append({'round': r, 'engine': name, 'batch': bs, 'dtype': dtype, 'images_per_second': v})
                print(json.dumps(runs[-1]), flush=True)
                best[(name, bs, dtype)] = max(best.get((name, bs, dtype), 0), v)
    gflop = flops / 1e9
    lim = {'f32': limit['f32_gflops'] / gflop, 'bf16': limit['bf16_gflops'] / gflop}
    rows = []
    print('\n| batch | dtype | engine | images/s | snzoo / best peer | % of the arithmetic limit |')
    print('|---|---|---|---|---|---|')
    for bs, dtype in cells:
        peers = [v for (n, b, d), v in best.items() if b == bs and d == dtype and n != 'snzoo']
        for name, _, supported in engines:
            if dtype not in supported:
                continue
            v = best[(name, bs, dtype)]
            ratio = best[('snzoo', bs, dtype)] / max(peers) if name == 'snzoo' and peers else None
            rows.append({'batch': bs, 'dtype': dtype, 'engine': name, 'images_per_second': v,
                         'snzoo_over_best_peer': ratio, 'percent_of_limit': 100 * v / lim[dtype]})
            print('| %d | %s | %s | %.1f | %s | %.0f %% |' % (bs, dtype, name, v, '%.2f' % ratio if ratio else '', 100 * v / lim[dtype]))
    out = {'arch': a.arch, 'threads': a.threads, 'seconds': a.seconds, 'rounds': a.rounds,
           'gflop_per_image': gflop, 'peak': limit, 'limit_images_per_second': lim,
           'cpu': flags.split('model name')[1].split('\n')[0].split(':', 1)[1].strip(),
           'cpu_family': flags.split('cpu family')[1].split('\n')[0].split(':', 1)[1].strip(),
           'amx_bf16': ' amx_bf16' in flags,
           'snzoo_commit': subprocess.run(['git', '-C', HERE, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip(),
           'best': rows, 'runs': runs}
    if a.out:
        with open(a.out, 'w') as fh:
            json.dump(out, fh, indent=1)


if __name__ == '__main__':
    main()
