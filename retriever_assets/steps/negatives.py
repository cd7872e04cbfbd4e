"""Stage 4, hard_negatives: one recipe's filter, sampling and ensemble over the shared candidates, and its exports."""

from __future__ import annotations

import time

import polars as pl

from resources.artifacts import DatasetArtifacts
from resources.models import ModelsResource
from resources.storage import StorageResource, write_json, write_parquet
from retriever_assets.core.corpus import document_text, positives_of
from retriever_assets.core.export import (
    TRIPLET_SCHEMA,
    ntuple_batches,
    ntuple_schema,
    save_dataset,
    triplet_batches,
    write_flag_jsonl,
)
from retriever_assets.core.mining import MiningRecipe, MiningResult, mine_hard_negatives, training_positives
from retriever_assets.steps.common import Log, StepReport, training_queries


def mine_negatives(
    storage: StorageResource, models: ModelsResource, dataset: str, recipe: MiningRecipe, *, log: Log
) -> tuple[MiningResult, StepReport]:
    recipe.validate(models.kinds())  # before any work
    start = time.perf_counter()
    phases: dict[str, float] = {}
    artifacts = DatasetArtifacts(storage, dataset)
    _, queries, qrels, manifest = artifacts.read_corpus(document_columns=["doc_id"])  # texts: only those exported
    candidates, positive_scores = artifacts.read_candidates()
    missing = set(recipe.teachers) - set(candidates["teacher"].unique().to_list())
    if missing:
        raise RuntimeError(f"candidate_lists has no candidates for teacher(s) {sorted(missing)}: re-materialize it")
    train_q = training_queries(queries, qrels, manifest["train_split"])
    phases["read"] = time.perf_counter() - start
    t0 = time.perf_counter()
    result = mine_hard_negatives(candidates, positive_scores, recipe, query_ids=train_q["query_id"].to_list())
    del candidates
    out = artifacts.negatives_dir(recipe.name)
    write_parquet(result.negatives, artifacts.negatives_file(recipe.name))
    write_parquet(result.filtered, out / "filtered_candidates.parquet")
    write_json(artifacts.mining_stats_file(recipe.name), result.stats)
    phases["mine"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    positives = training_positives(positives_of(qrels, manifest["train_split"]), result.negatives,
                                   recipe.short_queries)  # `short_queries: drop`: dropped queries are not exported
    q_text = dict(train_q.select("query_id", "text").iter_rows())
    # only the documents the exports name: ~(n + 1) per query, not the corpus
    docs = artifacts.read_documents(pl.concat([result.negatives["doc_id"], positives["doc_id"]]))
    d_text = {d: document_text(t, x) for d, t, x in docs.select("doc_id", "title", "text").iter_rows()}
    del docs
    phases["read_texts"] = time.perf_counter() - t0
    n = recipe.num_negatives
    t0 = time.perf_counter()
    ntuple = save_dataset(ntuple_batches(result.negatives, positives, q_text, d_text, n), ntuple_schema(n),
                          out / "ntuple")
    # triplets keep every negative, including those of queries short of n
    triplets = save_dataset(triplet_batches(result.negatives, positives, q_text, d_text), TRIPLET_SCHEMA,
                            out / "triplet")
    flag_lines = write_flag_jsonl(out / "flag_embedding.jsonl", result.negatives, positives, q_text, d_text)
    phases["export"] = time.perf_counter() - t0
    log(f"{recipe.name}: {result.negatives.height} negatives, {result.stats['queries_short']} queries short; "
        f"exported {ntuple} n-tuples, {triplets} triplets, {flag_lines} FlagEmbedding lines")
    return result, StepReport(
        time.perf_counter() - start,
        result.stats | {"ntuple_rows": ntuple, "triplet_rows": triplets, "flag_jsonl_lines": flag_lines,
                        "folder": str(out), "phase_seconds": {k: round(v, 3) for k, v in phases.items()}},
    )
