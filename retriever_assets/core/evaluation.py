"""Retrieval scores with mteb's own evaluator (pytrec_eval metrics) over a local BEIR split."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

import polars as pl

REPORTED = ("ndcg_at_10", "recall_at_100", "mrr_at_10", "map_at_10")


def _local_task_class(dataset: str, splits: dict[str, dict]):
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    class LocalBeirRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name=f"Local-{dataset}",
            dataset={"path": f"local/{dataset}", "revision": "local"},
            description=f"Retrieval on the local BEIR folder '{dataset}' (splits {', '.join(splits)}).",
            reference=None,
            type="Retrieval",
            category="t2t",
            modalities=["text"],
            eval_splits=list(splits),
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
            self.dataset = {"default": {split: data | {"top_ranked": None} for split, data in splits.items()}}
            self.data_loaded = True

    return LocalBeirRetrieval()


@cache
def _encoder_wrapper_class():
    """mteb's sentence-transformers wrapper that encodes a given set of texts once per call of `evaluate_retrieval`.

    mteb encodes the corpus again for every split; the texts (and prompt type) of a repeated encode are the same,
    so the first result is returned. (mteb's own CachedEmbeddingWrapper re-collates the documents and changed
    the scores of the same model, so it is not used.)
    """
    from mteb.models import SentenceTransformerEncoderWrapper

    class EncodeOnce(SentenceTransformerEncoderWrapper):
        def encode(self, inputs, *, prompt_type=None, **kwargs):
            h = hashlib.blake2b(str(prompt_type).encode(), digest_size=16)
            for row in inputs.dataset:
                h.update(json.dumps(row, sort_keys=True, default=str).encode() + b"\x1e")
            memo = self.__dict__.setdefault("_encoded", {})
            key = h.hexdigest()
            if key not in memo:
                memo[key] = super().encode(inputs, prompt_type=prompt_type, **kwargs)
            return memo[key]

    return EncodeOnce


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
    extra_splits: tuple[str, ...] = (),
) -> dict:
    """nDCG@10, Recall@100, MRR@10, MAP@10 (and the path of mteb's result JSON) for `model` on `split`.

    Every model gets its own name/revision and results are always recomputed, so a checkpoint never
    reuses another's cached result. `extra_splits` (e.g. the held-out dev split) are scored in the same mteb run,
    their metrics under `splits`; the corpus is encoded once for all of them.
    """
    import mteb  # importing it creates MTEB_CACHE: the CLI and tests point that at a project folder
    from datasets import Dataset

    corpus_ds = Dataset.from_dict(
        {"id": corpus["doc_id"].to_list(), "title": corpus["title"].to_list(), "text": corpus["text"].to_list()}
    )
    splits = {}
    for name in (split, *extra_splits):
        split_qrels = qrels.filter(pl.col("split") == name)
        if split_qrels.height == 0:
            raise ValueError(f"split {name!r} has no judgements to score")
        q = queries.filter(pl.col("query_id").is_in(split_qrels["query_id"].unique().implode()))
        relevant: dict[str, dict[str, int]] = {}
        for qid, did, score in split_qrels.select("query_id", "doc_id", "score").iter_rows():
            relevant.setdefault(qid, {})[did] = int(score)
        splits[name] = {"corpus": corpus_ds, "relevant_docs": relevant,
                        "queries": Dataset.from_dict({"id": q["query_id"].to_list(), "text": q["text"].to_list()})}
    task = _local_task_class(dataset, splits)

    prompts = {}
    if query_prompt:
        prompts["query"] = query_prompt
    if document_prompt:
        prompts["document"] = document_prompt
    if prompts:
        model.prompts = prompts
    wrapped = _encoder_wrapper_class()(model)
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
    scores = result.task_results[0].scores
    metrics = {k: float(scores[split][0][k]) for k in REPORTED}
    if extra_splits:
        metrics["splits"] = {name: {k: float(scores[name][0][k]) for k in REPORTED} for name in extra_splits}
    found = sorted(output_dir.rglob(f"{task.metadata.name}.json"), key=lambda p: p.stat().st_mtime)
    metrics["result_json"] = str(found[-1]) if found else None
    if found:
        metrics["mteb_result"] = json.loads(found[-1].read_text())
    return metrics
