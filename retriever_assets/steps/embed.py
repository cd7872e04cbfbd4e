"""Stage 2, teacher_embeddings: bring every configured teacher's index up to date (dense vectors in LanceDB,
embedded incrementally; BM25 indexes)."""

from __future__ import annotations

import time

import polars as pl

from resources.artifacts import DatasetArtifacts
from resources.compute import ComputeResource
from resources.models import ModelsResource
from resources.storage import StorageResource
from retriever_assets.steps.common import Log, StepReport, training_queries
from retriever_assets.steps.teachers import configured_teachers


def _wanted_items(corpus: pl.DataFrame, queries: pl.DataFrame) -> pl.DataFrame:
    docs = corpus.select(
        item_id=pl.lit("d:") + pl.col("doc_id"),
        role=pl.lit("document"),
        content_hash="content_hash",
        title="title",
        text="text",  # each teacher makes its document string from title and text (EncoderSpec.document)
    )
    qs = queries.select(
        item_id=pl.lit("q:") + pl.col("query_id"), role=pl.lit("query"), content_hash="content_hash",
        title=pl.lit(None, pl.String), text="text",
    )
    return pl.concat([docs, qs])


def embed_teachers(
    storage: StorageResource, models: ModelsResource, dataset: str, *, batch_size: int, chunk_size: int, log: Log,
    compute: ComputeResource | None = None,
) -> StepReport:
    start = time.perf_counter()
    corpus, queries, qrels, manifest = DatasetArtifacts(storage, dataset).read_corpus()
    train_q = training_queries(queries, qrels, manifest["train_split"])
    items = _wanted_items(corpus, train_q)
    artifacts = DatasetArtifacts(storage, dataset)
    per_teacher = [teacher.refresh(artifacts, corpus, items, batch_size=batch_size, chunk_size=chunk_size, log=log)
                   for teacher in configured_teachers(models, compute)]
    return StepReport(
        time.perf_counter() - start,
        {"device": models.resolved_device(), "compute": (compute or ComputeResource()).describe(),
         "documents": corpus.height, "queries": train_q.height,
         "teachers": per_teacher},
    )

