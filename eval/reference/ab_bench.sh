#!/usr/bin/env bash
# Interleaved A/B rounds of `snzoo bench` for several builds on one model: in each round every
# batch size runs every build once, one after the other, so a slow stretch of a shared host hits
# all builds alike. One JSON line per run: images/s, the median and fastest forward (ms per
# batch) and the peak RSS. Summarise with eval/reference/ab_table.py.
#
#   bash eval/reference/ab_bench.sh WEIGHTS.safetensors base=/tmp/snzoo-base new=target/release/snzoo > ab.jsonl
#
# ROUNDS (default 5), BATCHES ("1 16"), SECS per run (6), THREADS (2), DTYPE (f32).
# Peak RSS is taken by GNU time (/usr/bin/time, Debian package `time`).
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,10p' "$0" >&2
  exit 2
fi
WEIGHTS=$1
shift
for build in "$@"; do
  case $build in
    *=*) [ -x "${build#*=}" ] || { echo "ab_bench: ${build#*=} is not an executable" >&2; exit 2; } ;;
    *) echo "ab_bench: '$build' is not NAME=BINARY" >&2; exit 2 ;;
  esac
done
[ -r "$WEIGHTS" ] || { echo "ab_bench: cannot read $WEIGHTS" >&2; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for round in $(seq 1 "${ROUNDS:-5}"); do
  for bs in ${BATCHES:-1 16}; do
    for build in "$@"; do
      name=${build%%=*}
      /usr/bin/time -f "%M" -o "$out.rss" "${build#*=}" bench -w "$WEIGHTS" --batch-size "$bs" --seconds "${SECS:-6}" \
        --threads "${THREADS:-2}" --dtype "${DTYPE:-f32}" --json > "$out"
      python3 - "$out" "$out.rss" "$round" "$name" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
rss_kb = int(open(sys.argv[2]).read().split()[-1])
print(json.dumps({"round": int(sys.argv[3]), "step": sys.argv[4], "batch": run["batch_size"], "dtype": run["dtype"],
                  "threads": run["threads"], "images_per_second": run["images_per_second"],
                  "median_ms": run["ms_per_batch"]["median"], "min_ms": run["ms_per_batch"]["min"], "peak_rss_kb": rss_kb}))
PY
      rm -f "$out.rss"
    done
  done
done
