#!/usr/bin/env bash
# Reproduce docs/results.md's dev-split recipe selection (issue 17): 20% of each dataset's training queries are
# held out as a dev split (never mined, never trained on); every student is scored on dev and test, and on the
# other dataset's test split; the leaderboard marks the best recipe by dev and best_student points to it.
#   scripts/reproduce_dev_selection.sh [DATA_ROOT]      (logs in .retriever_logs/dev-*.log; storage .retriever_dev)
#   SCIFACT_RECIPES="naive" SQUAD_RECIPES= scripts/reproduce_dev_selection.sh     (a subset; empty = none)
# Protocol as the recipe ablation (2-core CPU box): students trained 1 epoch at max_seq_length 128, every model
# scored at 256; SQuAD students train on a fixed subset of 500 of the training queries left after the hold-out.
set -u
DATA_ROOT=$(realpath "${1:-$(dirname "$0")/../../shared/data}")
cd "$(dirname "$0")/.."
. scripts/_env.sh "$DATA_ROOT" .retriever_dev
SCIFACT=${SCIFACT_RECIPES-naive naive-seed2 percpos-intra-minilm-bm25 percpos-intra-minilm-bm25-seed2}
SQUAD=${SQUAD_RECIPES-percpos-bm25 percpos-bm25-seed2 naive-bm25 naive-bm25-seed2}
log() { echo "$(date -u +%FT%TZ) $*" >> .retriever_logs/queue.log; }
# both corpora first (with their dev splits), so every student is also scored on the other's test split
"$PY" -m retriever_assets.cli ingest --dataset scifact --dataset squad-dev > .retriever_logs/dev-ingest.log 2>&1
COMMON=(--data-root "$DATA_ROOT" --max-seq-length 128 --eval-max-seq-length 256)
run() {  # dataset recipe [extra args]
  local ds=$1 recipe=$2; shift 2
  log "start $ds $recipe (dev share $RETRIEVER_DEV_SHARE)"
  "$PY" -m retriever_assets.cli run --dataset "$ds" --recipe "$recipe" "${COMMON[@]}" "$@" \
    > ".retriever_logs/dev-$ds-$recipe.log" 2>&1
  log "end $ds $recipe exit $?"
}
for r in $SQUAD; do run squad-dev "$r" --max-train-queries 500; done
# SciFact second seeds skip the cross-dataset score (SQuAD test, ~2 min each) to fit the 2-core session; the first
# seeds show the forgetting check (docs/results.md)
for r in $SCIFACT; do
  case $r in *seed2) run scifact "$r" --cross-datasets none ;; *) run scifact "$r" ;; esac
done
# one leaderboard and best_student per dataset over all its recipes
board() {  # dataset recipes...
  local ds=$1; shift
  log "start leaderboard $ds"
  RETRIEVER_RECIPE_NAMES=$(echo "$@" | tr ' ' ',') .venv/bin/dagster asset materialize \
    -m retriever_assets.definitions --select leaderboard,best_student --partition "$ds" \
    > ".retriever_logs/dev-$ds-leaderboard.log" 2>&1
  log "end leaderboard $ds exit $?"
}
[ -n "$SQUAD" ] && board squad-dev $SQUAD
[ -n "$SCIFACT" ] && board scifact $SCIFACT
