"""Retrieval scores with mteb's own evaluator (pytrec_eval metrics) over a local BEIR split."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

REPORTED = ("ndcg_at_10", "recall_at_100", "mrr_at_10", "map_at_10")


def _local_task_class(dataset: str, split: str, corpus, queries, relevant_docs):
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    class LocalBeirRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name=f"Local-{dataset}",
            dataset={"path": f"local/{dataset}", "revision": "local"},
            description=f"Retrieval on the local BEIR folder '{dataset}' (split {split}).",
            reference=None,
            type="Retrieval",
            category="t2t",
            modalities=["text"],
            eval_splits=[split],
            eval_langs=["eng-Latn"],
            main_score="ndcg_at_10",
            date=None,
            domains=None,
            task_subtypes=None,
            license=None,
            annotations_creators=None,
            dialect=None,
            sample_creation=None,
            bibtex_citation="",
        )

        def load_data(self, **kwargs) -> None:
            if self.data_loaded:
                return
            self.dataset = {
                "default": {
                    split: {"corpus": corpus, "queries": queries, "relevant_docs": relevant_docs, "top_ranked": None}
                }
            }
            self.data_loaded = True

    return LocalBeirRetrieval()


def evaluate_retrieval(
    model,  # a SentenceTransformer
    *,
    corpus: pl.DataFrame,  # doc_id, title, text
    queries: pl.DataFrame,  # query_id, text
    qrels: pl.DataFrame,  # split, query_id, doc_id, score
    split: str,
    dataset: str,
    model_name: str,
    revision: str,
    output_dir: Path,
    batch_size: int = 64,
    query_prompt: str = "",
    document_prompt: str = "",
) -> dict:
    """nDCG@10, Recall@100, MRR@10, MAP@10 (and the path of mteb's result JSON) for `model` on `split`.

    Every model gets its own name/revision and results are always recomputed, so a checkpoint never
    reuses another's cached result.
    """
    import mteb  # importing it creates MTEB_CACHE: the CLI and tests point that at a project folder
    from datasets import Dataset

    split_qrels = qrels.filter(pl.col("split") == split)
    wanted = split_qrels["query_id"].unique()
    q = queries.filter(pl.col("query_id").is_in(wanted.implode()))
    relevant: dict[str, dict[str, int]] = {}
    for qid, did, score in split_qrels.select("query_id", "doc_id", "score").iter_rows():
        relevant.setdefault(qid, {})[did] = int(score)
    corpus_ds = Dataset.from_dict(
        {"id": corpus["doc_id"].to_list(), "title": corpus["title"].to_list(), "text": corpus["text"].to_list()}
    )
    queries_ds = Dataset.from_dict({"id": q["query_id"].to_list(), "text": q["text"].to_list()})
    task = _local_task_class(dataset, split, corpus_ds, queries_ds, relevant)

    prompts = {}
    if query_prompt:
        prompts["query"] = query_prompt
    if document_prompt:
        prompts["document"] = document_prompt
    if prompts:
        model.prompts = prompts
    from mteb.models import SentenceTransformerEncoderWrapper

    wrapped = SentenceTransformerEncoderWrapper(model)
    wrapped.mteb_model_meta = wrapped.mteb_model_meta.model_copy(update={"name": model_name, "revision": revision})
    output_dir.mkdir(parents=True, exist_ok=True)
    cache = mteb.ResultCache(cache_path=output_dir)
    result = mteb.evaluate(
        wrapped,
        task,
        cache=cache,
        overwrite_strategy="always",
        encode_kwargs={"batch_size": batch_size},
        show_progress_bar=False,
        co2_tracker=False,
    )
    scores = result.task_results[0].scores[split][0]
    metrics = {k: float(scores[k]) for k in REPORTED}
    found = sorted(output_dir.rglob(f"{task.metadata.name}.json"), key=lambda p: p.stat().st_mtime)
    metrics["result_json"] = str(found[-1]) if found else None
    if found:
        metrics["mteb_result"] = json.loads(found[-1].read_text())
    return metrics
