"""A random-weight full-size SN ResNet saved like the release (legacy torch.save, `state_dict` with
the `module.` prefix), for the speed comparisons.

    python3 eval/reference/make_bench_model.py resnet50v1 OUT.pth
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from sn_reference import build, randomize  # noqa: E402
from make_fixtures import prefixed  # noqa: E402


def main():
    arch, out = sys.argv[1], sys.argv[2]
    depth, version = int(arch[6:-2]), arch[-2:]
    model = randomize(build(version, depth), 1)
    torch.save({'state_dict': prefixed(model.state_dict())}, out, _use_new_zipfile_serialization=False)


if __name__ == '__main__':
    main()
