#!/usr/bin/env bash
# Issue 23: EmbeddingGemma (plus MiniLM and BM25) embeddings of SciFact and SQuAD through Dagster, cached in
# LanceDB so every later recipe run reuses them (~40 min per dataset for gemma on 2 CPU cores).
#   scripts/gemma_embeddings.sh [DATA_ROOT]    (needs `make gemma`; logs in .retriever_logs/gemma-*.log)
set -eu
DATA_ROOT=$(realpath "${1:-$(dirname "$0")/../../shared/data}")
cd "$(dirname "$0")/.."
. scripts/_env.sh "$DATA_ROOT" .retriever_gemma
export RETRIEVER_TEACHERS=${RETRIEVER_TEACHERS:-minilm,gemma,bm25}
.venv/bin/python -m retriever_assets.cli ingest --dataset scifact --dataset squad-dev > .retriever_logs/gemma-ingest.log 2>&1
for ds in ${DATASETS:-scifact squad-dev}; do
  .venv/bin/dagster asset materialize -m retriever_assets.definitions --select teacher_embeddings \
    --partition "$ds" > ".retriever_logs/gemma-embed-$ds.log" 2>&1
done
