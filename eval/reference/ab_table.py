#!/usr/bin/env python3
"""Summarises eval/reference/ab_bench.sh's JSON lines: per batch size and build, the median images/s
over the rounds (with its range), the images/s of the fastest single forward of any round (the
build's speed in the host's quietest moment), and the peak RSS range.

    python3 eval/reference/ab_table.py ab.jsonl
"""
import collections
import json
import statistics
import sys


def main(path):
    runs = collections.defaultdict(list)
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                runs[(r["batch"], r["step"])].append(r)
    print("| batch | build | rounds | images/s, median (range) | fastest forward, images/s | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for (batch, step), rs in sorted(runs.items()):
        ips = [r["images_per_second"] for r in rs]
        fastest = 1000.0 * batch / min(r["min_ms"] for r in rs)
        rss = [r["peak_rss_kb"] // 1024 for r in rs]
        print(f"| {batch} | {step} | {len(rs)} | {statistics.median(ips):.2f} ({min(ips):.2f}–{max(ips):.2f}) "
              f"| {fastest:.2f} | {min(rss)}–{max(rss)} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
