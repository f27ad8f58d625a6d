#!/usr/bin/env bash
# Submit an snzoo evaluation to Slurm: a job array of N shards and a merge job after it.
#
#   eval/cluster/slurm/submit.sh (--weights W | --models NAME,...) --data DIR [--labels FILE]
#       --shards N --workdir DIR [--cpus-per-task C] [--partition P] [--time T] [-- extra snzoo eval flags]
#
# Uses the `sbatch` on PATH and the `snzoo` on PATH (or $SNZOO_BIN, which the jobs inherit).
# WORKDIR must be on storage that every node sees: shard reports and their resume journals go to
# WORKDIR/shards, the merged reports and the leaderboard to WORKDIR/merged, logs to WORKDIR/logs.
# Returns once both jobs are submitted; prints the array and merge job ids, and as its last line
# the path where the merged report will appear (WORKDIR/merged/NAME.json for --weights,
# WORKDIR/merged/leaderboard.md for --models).
#
# If you scancel a task, requeue it (`scontrol requeue JOB_TASK`) and, once it has finished,
# release the merge (`scontrol update jobid=MERGE dependency=afterok:JOB_TASK`): Slurm marks an
# afterok dependency on a cancelled task as never satisfied. Preempted tasks (--requeue) need
# nothing: they resume from their journals and the merge waits for them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage() {
  sed -n '4,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
weights="" models="" data="" labels="" shards="" workdir="" cpus="" partition="" time_limit=""
while [ $# -gt 0 ]; do
  case $1 in
    --weights) weights=${2:?}; shift 2 ;;
    --models) models=${2:?}; shift 2 ;;
    --data) data=${2:?}; shift 2 ;;
    --labels) labels=${2:?}; shift 2 ;;
    --shards) shards=${2:?}; shift 2 ;;
    --workdir) workdir=${2:?}; shift 2 ;;
    --cpus-per-task) cpus=${2:?}; shift 2 ;;
    --partition) partition=${2:?}; shift 2 ;;
    --time) time_limit=${2:?}; shift 2 ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "submit.sh: unknown argument $1" >&2; usage ;;
  esac
done
if { [ -z "$weights" ] && [ -z "$models" ]; } || { [ -n "$weights" ] && [ -n "$models" ]; }; then
  echo "submit.sh: give one of --weights W or --models NAME,..." >&2; usage
fi
[ -n "$data" ] && [ -n "$shards" ] && [ -n "$workdir" ] || usage
case $shards in ''|*[!0-9]*|0) echo "submit.sh: --shards must be a positive integer" >&2; exit 2 ;; esac
command -v sbatch >/dev/null || { echo "submit.sh: no sbatch on PATH" >&2; exit 1; }
snzoo=${SNZOO_BIN:-$(command -v snzoo || true)}
[ -n "$snzoo" ] || { echo "submit.sh: no snzoo on PATH (or set SNZOO_BIN)" >&2; exit 1; }
export SNZOO_BIN=$snzoo
abs() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }
workdir=$(abs "$workdir")
mkdir -p "$workdir/shards" "$workdir/merged" "$workdir/logs"
args=(--data "$(abs "$data")")
[ -n "$labels" ] && args+=(--labels "$(abs "$labels")")
if [ -n "$weights" ]; then
  [ -e "$weights" ] && weights=$(abs "$weights")
  args+=(--weights "$weights")
  # The report's name: the weights file's stem, or the zoo name (as `snzoo eval --output-dir`).
  base=$(basename "$weights")
  [ -e "$weights" ] && base=${base%.*}
  name=$(printf '%s' "$base" | LC_ALL=C sed 's/[^A-Za-z0-9._+-]/_/g')
  result=$workdir/merged/$name.json
else
  args+=(--models "$models")
  result=$workdir/merged/leaderboard.md
fi
args+=("$@")
opts=(--parsable --export=ALL)
[ -n "$cpus" ] && opts+=(--cpus-per-task="$cpus")
[ -n "$partition" ] && opts+=(--partition="$partition")
[ -n "$time_limit" ] && opts+=(--time="$time_limit")
array=$(sbatch "${opts[@]}" --array=0-$((shards - 1)) --output="$workdir/logs/shard-%a.log" \
  "$here/eval-shard.sbatch" "$workdir" "$shards" "${args[@]}")
array=${array%%;*}
merge=$(sbatch "${opts[@]}" --dependency=afterok:"$array" --output="$workdir/logs/merge.log" \
  "$here/merge.sbatch" "$workdir" "$shards")
merge=${merge%%;*}
echo "array job $array ($shards shards), merge job $merge"
echo "$result"
