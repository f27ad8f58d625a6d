#!/usr/bin/env bash
# The Slurm recipe on a real scheduler: brings up a one-node Slurm (Debian slurm-wlm + munge) on
# this machine, submits a 3-shard array over a generated image set with the bundled tiny model via
# submit.sh, preempts one task part-way (scontrol requeue), cancels another part-way (scancel) and
# requeues it, runs the merge job, and checks that the merged report equals an unsharded
# `snzoo eval` exactly (counts, per-class counts, summed loss bits). Stops every daemon it started.
#
#   bash eval/cluster/slurm/test-local.sh        (as root; installs slurm-wlm and munge if missing)
#
# SNZOO_BIN: the snzoo to test (default: target/debug/snzoo, built if missing).
# IMAGES_PER_CLASS: the set's size is 4 x this (default 2250: a shard lasts ~10 s, long enough to
# interrupt part-way).
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
here=$root/eval/cluster/slurm
say() { echo "test-local: $*"; }
fail() { echo "test-local: FAILED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (it starts slurmctld, slurmd and munged)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
snzoo=${SNZOO_BIN:-$root/target/debug/snzoo}
if [ ! -x "$snzoo" ]; then
  say "building snzoo"
  (cd "$root" && cargo build -q -p snzoo)
fi
export SNZOO_BIN=$snzoo

T=$(mktemp -d /tmp/snzoo-slurm.XXXXXX)
started_munge=""
cleanup() {
  local rc=$?
  for d in slurmd slurmctld; do
    if [ -f "$T/$d.pid" ]; then kill "$(cat "$T/$d.pid")" 2>/dev/null || true; fi
  done
  sleep 1
  for d in slurmd slurmctld; do
    if [ -f "$T/$d.pid" ]; then kill -9 "$(cat "$T/$d.pid")" 2>/dev/null || true; fi
  done
  if [ -n "$started_munge" ] && [ -f /run/munge/munged.pid ]; then kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true; fi
  if [ $rc -eq 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$T"; else say "files kept in $T"; fi
  exit $rc
}
trap cleanup EXIT

# munge: a key and a daemon (ours only if none answers).
if ! (munge -n | unmunge) >/dev/null 2>&1; then
  mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
  chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key
  su -s /bin/sh munge -c /usr/sbin/munged
  started_munge=1
  for _ in $(seq 50); do (munge -n | unmunge) >/dev/null 2>&1 && break; sleep 0.1; done
  (munge -n | unmunge) >/dev/null 2>&1 || fail "munged does not answer"
fi

# A one-node cluster on ports of its own, state under $T.
host=$(hostname)
port=$((20000 + RANDOM % 20000))
mkdir -p "$T/state" "$T/spool"
cat > "$T/slurm.conf" <<CONF
ClusterName=snzootest
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ReturnToService=2
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
NodeName=$host CPUs=$(nproc) RealMemory=2000 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$T/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do sinfo -h -o %t 2>/dev/null | grep -q idle && break; sleep 0.2; done
sinfo -h -o %t | grep -q idle || fail "the node did not come up: $(tail -5 "$T/slurmd.log" "$T/slurmctld.log")"
say "Slurm $(sinfo -V | cut -d' ' -f2) up on $host"

# The image set: four labelled photos, hard-linked many times (ImageFolder).
per_class=${IMAGES_PER_CLASS:-2250}
i=0
for pair in "chelsea_420.jpg n03617480" "coffee_444.jpg n03617480" "rocket_gray.jpg n01443537" "coffee_cmyk.jpg n02051845"; do
  set -- $pair
  mkdir -p "$T/data/$2"
  for k in $(seq "$per_class"); do ln "$root/fixtures/images/$1" "$T/data/$2/p${i}_$k.JPEG"; done
  i=$((i + 1))
done
total=$((4 * per_class))
weights=$root/fixtures/models/tiny-resnet50v1-sn.pth

say "unsharded reference run over $total images"
"$snzoo" eval --weights "$weights" --data "$T/data" --output "$T/whole.json" --batch-size 16 --quiet

out=$("$here/submit.sh" --weights "$weights" --data "$T/data" --shards 3 --workdir "$T/work" --cpus-per-task 1 -- --batch-size 1)
echo "$out"
merged=$(tail -n 1 <<<"$out")
array=$(sed -n 's/^array job \([0-9]*\).*merge job \([0-9]*\)$/\1/p' <<<"$out")
merge=$(sed -n 's/^array job \([0-9]*\).*merge job \([0-9]*\)$/\2/p' <<<"$out")
[ -n "$array" ] && [ -n "$merge" ] || fail "submit.sh printed no job ids"
[ "$merged" = "$T/work/merged/tiny-resnet50v1-sn.json" ] || fail "submit.sh's last line is $merged"

state() { squeue -h -j "$1" -o %T 2>/dev/null | head -1; }
records() { # journal records of shard $1 (its lines but the header)
  local j="$T/work/shards/tiny-resnet50v1-sn.shard-$1-of-3.json.partial"
  if [ -f "$j" ]; then echo $(($(wc -l < "$j") - 1)); else echo 0; fi
}
wait_records() { # until shard $1 has journaled at least 50 images
  for _ in $(seq 600); do
    [ "$(state "${array}_$1")" = RUNNING ] && [ "$(records "$1")" -ge 50 ] && return 0
    sleep 0.1
  done
  fail "shard $1 never got going"
}
release() { # a requeued task waits for a begin time; start it now
  for _ in $(seq 300); do
    if [ "$(state "$1")" = PENDING ]; then scontrol update jobid="$1" StartTime=now && return 0; fi
    sleep 0.1
  done
  fail "$1 was not requeued"
}
shard_size=$(( (total + 2) / 3 ))

wait_records 0
n0=$(records 0)
scontrol requeue "${array}_0"
say "preempted shard 0 after $n0 of ~$shard_size images (scontrol requeue)"
wait_records 1
scancel "${array}_1"
sleep 1
n1=$(records 1)
[ "$n1" -lt "$shard_size" ] || fail "shard 1 finished before it was cancelled; raise IMAGES_PER_CLASS"
say "cancelled shard 1 after $n1 of ~$shard_size images (scancel), requeued it (scontrol requeue)"
scontrol requeue "${array}_1"
release "${array}_0"
release "${array}_1"

# The array, then the merge: Slurm holds a dependency on a cancelled task as never satisfied, so
# the merge is pointed at the requeued task once that has finished (as submit.sh says).
for _ in $(seq 1200); do [ -z "$(squeue -h -j "$array" 2>/dev/null)" ] && break; sleep 0.25; done
[ -z "$(squeue -h -j "$array")" ] || fail "the array did not finish"
scontrol update jobid="$merge" Dependency=afterok:"${array}_1"
for _ in $(seq 600); do [ -z "$(squeue -h -j "$merge" 2>/dev/null)" ] && break; sleep 0.25; done
[ -f "$merged" ] || fail "no merged report; merge log: $(cat "$T/work/logs/merge.log" 2>/dev/null)"

grep -q "restart 1" "$T/work/logs/shard-0.log" && grep -q "resuming from .*: [1-9][0-9]* of" "$T/work/logs/shard-0.log" \
  || fail "shard 0 did not resume from its journal: $(cat "$T/work/logs/shard-0.log")"
grep -q "resuming from .*: [1-9][0-9]* of" "$T/work/logs/shard-1.log" \
  || fail "shard 1 did not resume from its journal: $(cat "$T/work/logs/shard-1.log")"
say "shard 0: $(grep -h 'resuming from' "$T/work/logs/shard-0.log" | sed 's/.*: //')"
say "shard 1: $(grep -h 'resuming from' "$T/work/logs/shard-1.log" | sed 's/.*: //')"

# Exactly equal: the tallies (counts, per-class counts, summed loss in its exact and f64 forms)
# and what is derived from them.
field() { # the value of one JSON key (whole line) of a pretty-printed report's counts
  sed -n "/\"counts\"/,/\"per_class_top1\"/p" "$1"
}
[ "$(field "$T/whole.json")" = "$(field "$merged")" ] || fail "counts differ: $(diff <(field "$T/whole.json") <(field "$merged"))"
for key in top1 top5 loss images failed; do
  a=$(grep -m1 "^  \"$key\":" "$T/whole.json"); b=$(grep -m1 "^  \"$key\":" "$merged")
  [ "$a" = "$b" ] || fail "$key differs: $a vs $b"
done
pc() { sed -n '/"per_class_top1"/,$p' "$1"; }
[ "$(pc "$T/whole.json")" = "$(pc "$merged")" ] || fail "per-class rows differ"
say "merged report of 3 shards (one preempted, one cancelled and requeued) equals the unsharded run:"
grep -E '^  "(top1|top5|loss|images)":' "$merged" | tr -d ' \n' && echo
grep -E '"loss_sum(_fixed)?":' "$merged" | tr -d ' \n' && echo
say "PASSED"
