#!/usr/bin/env bash
# Issue 23: the MiniLM student mined by EmbeddingGemma (a much stronger teacher) vs by MiniLM itself, two seeds per
# recipe, dev share 0.2, chosen on dev. Needs `make gemma` and the cached embeddings of scripts/gemma_embeddings.sh.
#   scripts/reproduce_gemma.sh [DATA_ROOT]            (logs in .retriever_logs/gemma-*.log; storage .retriever_gemma)
#   SCIFACT_RECIPES="naive-gemma" SQUAD_RECIPES= scripts/reproduce_gemma.sh      (a subset; empty = none)
# Protocol as the earlier recipe comparisons (2-core CPU box): students trained 1 epoch at max_seq_length 128,
# scored at 256 on test and dev; teachers are not scored on test (gemma would re-encode the corpus through mteb:
# ~40 min; its train-split diagnostics are in candidate_lists); SQuAD students train on 500 fixed training queries.
set -u
DATA_ROOT=$(realpath "${1:-$(dirname "$0")/../../shared/data}")
cd "$(dirname "$0")/.."
. scripts/_env.sh "$DATA_ROOT" .retriever_gemma
export RETRIEVER_TEACHERS=${RETRIEVER_TEACHERS:-minilm,gemma,bm25}
SCIFACT=${SCIFACT_RECIPES-naive naive-seed2 naive-gemma naive-gemma-seed2 percpos-gemma percpos-gemma-seed2}
SQUAD=${SQUAD_RECIPES-naive naive-seed2 naive-gemma naive-gemma-seed2 percpos-gemma percpos-gemma-seed2}
log() { echo "$(date -u +%FT%TZ) $*" >> .retriever_logs/gemma-queue.log; }
COMMON=(--data-root "$DATA_ROOT" --max-seq-length 128 --eval-max-seq-length 256 --skip-teacher-scores
        --cross-datasets none)
run() {  # dataset recipe [extra args]
  local ds=$1 recipe=$2; shift 2
  log "start $ds $recipe"
  "$PY" -m retriever_assets.cli run --dataset "$ds" --recipe "$recipe" "${COMMON[@]}" "$@" \
    > ".retriever_logs/gemma-$ds-$recipe.log" 2>&1
  log "end $ds $recipe exit $?"
}
for r in $SCIFACT; do run scifact "$r"; done
for r in $SQUAD; do run squad-dev "$r" --max-train-queries 500; done
board() {  # dataset recipes...: one leaderboard (false-negative audit judged by gemma) and best_student
  local ds=$1; shift
  log "start leaderboard $ds"
  RETRIEVER_RECIPE_NAMES=$(echo "$@" | tr ' ' ',') RETRIEVER_JUDGE_MODEL=${JUDGE:-gemma} \
    .venv/bin/dagster asset materialize -m retriever_assets.definitions --select leaderboard,best_student \
    --partition "$ds" > ".retriever_logs/gemma-$ds-leaderboard.log" 2>&1
  log "end leaderboard $ds exit $?"
}
[ -n "$SCIFACT" ] && board scifact $SCIFACT
[ -n "$SQUAD" ] && board squad-dev $SQUAD
