#!/usr/bin/env bash
# The long fuzz run: each property of the checkpoint readers (torch.save, the zip container,
# TensorFlow tables and protos, Caffe, Torch7), the bombs and the weights files, one at a time,
# in the `fuzz` profile (release optimisation with overflow checks and debug assertions, as in
# the debug builds CI tests), with its case count, wall time and peak RSS.
# Usage: bash eval/reference/fuzz_long.sh [PATTERN] > eval/results/fuzz.txt
# (10^6 cases per property; PATTERN, a grep -E pattern, runs only the properties whose
# test::property name matches it.)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --profile fuzz -p snzoo-convert --test fuzz --test bombs --test fuzz_frameworks --no-run >/dev/null 2>&1
cargo test --profile fuzz -p snzoo --test fuzz_weights --no-run >/dev/null 2>&1
echo "# snzoo fuzz run, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "# property | cases | wall seconds | peak RSS (MB) | result"
only=${1:-.}
run() {
  local pkg=$1 test=$2 prop=$3 cases=$4
  echo "$test::$prop" | grep -qE "$only" || return 0
  local log; log=$(mktemp)
  local start; start=$(date +%s.%N)
  if PROPTEST_CASES=$cases /usr/bin/time -f '%M' -o "$log.rss" cargo test --profile fuzz -q -p "$pkg" --test "$test" -- --exact "$prop" >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
  fi
  local end; end=$(date +%s.%N)
  printf '%s::%s | %s | %.0f | %.0f | %s\n' "$test" "$prop" "$cases" "$(echo "$end - $start" | bc)" "$(echo "$(cat "$log.rss") / 1024" | bc -l)" "$result"
  if [ "$result" != ok ]; then sed 's/^/    /' "$log"; fi
  rm -f "$log" "$log.rss"
}
run snzoo-convert fuzz arbitrary_bytes_never_panic 1000000
run snzoo-convert fuzz opcode_soup_never_panics 1000000
run snzoo-convert fuzz mutated_checkpoints_never_panic 1000000
run snzoo-convert fuzz generated_zip_archives_never_panic 1000000
run snzoo-convert fuzz deep_nesting_is_harmless 1
run snzoo-convert bombs a_deflated_pickle_cannot_inflate_beyond_the_file 1
run snzoo-convert bombs stack_objects_and_items_are_bounded 1
run snzoo-convert bombs large_dicts_are_fast 1
run snzoo-convert fuzz_frameworks arbitrary_bytes_never_panic_any_reader 1000000
run snzoo-convert fuzz_frameworks edited_tf_v1_files_never_panic 1000000
run snzoo-convert fuzz_frameworks resealed_tf_v1_records_never_panic 1000000
run snzoo-convert fuzz_frameworks generated_tf_v1_tables_never_panic 1000000
run snzoo-convert fuzz_frameworks edited_caffe_files_never_panic 1000000
run snzoo-convert fuzz_frameworks edited_torch7_files_never_panic 1000000
run snzoo fuzz_weights architecture_metadata_never_misleads 1000000
run snzoo fuzz_weights edited_safetensors_never_panic 1000000
run snzoo fuzz_weights edited_framework_checkpoints_never_panic 1000000
