#!/usr/bin/env bash
# Ray backend vs local on a real cluster (e.g. GPU nodes): run on a node of the cluster, from the repository root,
# after `make setup` on every node and `ray start --head --port 6379 --num-cpus 0` / `ray start --address ...`.
#
#   scripts/ray_cluster_benchmark.sh <head-ip>:6379 [dataset] [data-root]
#
# Uses every GPU of the cluster (one encoder actor and one DDP worker per GPU; CPUs when there is none), times
# teacher_embeddings, candidate_lists and one training epoch on both sides, and appends the printed table to
# docs/benchmarks-cluster-<date>.txt. The local side runs on this node alone (its own GPU if it has one).
set -euo pipefail
cd "$(dirname "$0")/.."
ADDRESS="${1:?usage: $0 <head-ip>:6379 [dataset] [data-root]}"
DATASET="${2:-scifact}"
DATA_ROOT="${3:-../shared/data}"
GPUS="$(.venv/bin/python -c "import ray; ray.init(address='$ADDRESS', logging_level='ERROR'); print(int(ray.cluster_resources().get('GPU', 0)))")"
WORKERS="$(( GPUS > 0 ? GPUS : 2 ))"
OUT="docs/benchmarks-cluster-$(date -u +%Y-%m-%d).txt"
echo "cluster at $ADDRESS: $GPUS GPUs -> $WORKERS actors / DDP workers" | tee -a "$OUT"
HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ray_vs_local.py --address "$ADDRESS" --dataset "$DATASET" \
  --data-root "$DATA_ROOT" --actors "$WORKERS" --train-workers "$WORKERS" --train \
  --train-batch-size "$(( 16 * WORKERS ))" --batch-size 256 | tee -a "$OUT"
