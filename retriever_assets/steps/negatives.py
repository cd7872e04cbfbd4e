"""Stage 4, hard_negatives: one recipe's filter, sampling and ensemble over the shared candidates, and its exports."""

from __future__ import annotations

import shutil
import time

from resources.artifacts import DatasetArtifacts
from resources.models import ModelsResource
from resources.storage import StorageResource, write_json, write_parquet
from retriever_assets.core.corpus import positives_of
from retriever_assets.core.export import ntuple_rows, to_ntuple_dataset, to_triplet_dataset, write_flag_jsonl
from retriever_assets.core.mining import MiningRecipe, MiningResult, mine_hard_negatives, training_positives
from retriever_assets.core.training import build_training_examples
from retriever_assets.steps.common import Log, StepReport, doc_texts, training_queries


def mine_negatives(
    storage: StorageResource, models: ModelsResource, dataset: str, recipe: MiningRecipe, *, log: Log
) -> tuple[MiningResult, StepReport]:
    recipe.validate(models.kinds())  # before any work
    start = time.perf_counter()
    artifacts = DatasetArtifacts(storage, dataset)
    corpus, queries, qrels, manifest = artifacts.read_corpus()
    candidates, positive_scores = artifacts.read_candidates()
    missing = set(recipe.teachers) - set(candidates["teacher"].unique().to_list())
    if missing:
        raise RuntimeError(f"candidate_lists has no candidates for teacher(s) {sorted(missing)}: re-materialize it")
    train_q = training_queries(queries, qrels, manifest["train_split"])
    result = mine_hard_negatives(candidates, positive_scores, recipe, query_ids=train_q["query_id"].to_list())
    out = artifacts.negatives_dir(recipe.name)
    write_parquet(result.negatives, artifacts.negatives_file(recipe.name))
    write_parquet(result.filtered, out / "filtered_candidates.parquet")
    write_json(artifacts.mining_stats_file(recipe.name), result.stats)

    positives = training_positives(positives_of(qrels, manifest["train_split"]), result.negatives,
                                   recipe.short_queries)  # `short_queries: drop`: dropped queries are not exported
    q_text = dict(train_q.select("query_id", "text").iter_rows())
    d_text = doc_texts(corpus)
    rows = ntuple_rows(result.negatives, positives, q_text, d_text, recipe.num_negatives)
    ntuple_dir = out / "ntuple"
    shutil.rmtree(ntuple_dir, ignore_errors=True)
    import datasets

    datasets.disable_progress_bars()  # "Saving the dataset" bars are noise on a user's console and in the run log
    to_ntuple_dataset(rows, recipe.num_negatives).save_to_disk(str(ntuple_dir))
    # triplets keep every negative, including those of queries short of n
    all_rows = build_training_examples(result.negatives, positives, q_text, d_text)
    triplet_dir = out / "triplet"
    shutil.rmtree(triplet_dir, ignore_errors=True)
    to_triplet_dataset([r for group in all_rows.values() for r in group], recipe.num_negatives).save_to_disk(
        str(triplet_dir))
    flag_lines = write_flag_jsonl(out / "flag_embedding.jsonl", result.negatives, positives, q_text, d_text)
    log(f"{recipe.name}: {result.negatives.height} negatives, {result.stats['queries_short']} queries short")
    return result, StepReport(
        time.perf_counter() - start,
        result.stats | {"ntuple_rows": len(rows), "flag_jsonl_lines": flag_lines, "folder": str(out)},
    )


