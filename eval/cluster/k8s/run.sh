#!/usr/bin/env bash
# Run the evaluation on Kubernetes: the Indexed Job, then (once every index completed) the merge.
#   eval/cluster/k8s/run.sh [NAMESPACE]
# Needs kubectl with a context, the two PersistentVolumeClaims named in eval-job.yaml, and the
# image of Containerfile pushed where the cluster can pull it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ns=(--namespace "${1:-default}")
kubectl "${ns[@]}" apply -f "$here/eval-job.yaml"
kubectl "${ns[@]}" wait --for=condition=complete --timeout=48h job/snzoo-eval
kubectl "${ns[@]}" apply -f "$here/merge-job.yaml"
kubectl "${ns[@]}" wait --for=condition=complete --timeout=1h job/snzoo-merge
kubectl "${ns[@]}" logs job/snzoo-merge
echo "/work/merged/leaderboard.md (on the snzoo-work volume)"
