"""Stage 2, teacher_embeddings: bring every configured teacher's index up to date (dense vectors in LanceDB,
embedded incrementally; BM25 indexes)."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from resources.artifacts import DatasetArtifacts
from resources.compute import ComputeResource
from resources.models import ModelsResource
from resources.storage import StorageResource
from retriever_assets.core.tables import SortedParquetReader
from retriever_assets.steps.common import Log, StepReport, training_queries
from retriever_assets.steps.teachers import configured_teachers


def _wanted_items(corpus: pl.DataFrame, queries: pl.DataFrame) -> pl.DataFrame:
    """item_id, role, content_hash of every document and training query: what the embedding plan compares (the
    texts are read per chunk, `ItemTexts`)."""
    docs = corpus.select(item_id=pl.lit("d:") + pl.col("doc_id"), role=pl.lit("document"),
                         content_hash="content_hash")
    qs = queries.select(item_id=pl.lit("q:") + pl.col("query_id"), role=pl.lit("query"), content_hash="content_hash")
    return pl.concat([docs, qs])


class ItemTexts:
    """Titles and texts of the items of one chunk at a time: documents read forward from the corpus parquet in
    batches of `batch_rows` (the corpus is stored in doc id order, and chunks come in that order), training queries
    from memory. Memory: one parquet batch and one chunk, never the corpus's texts.
    """

    def __init__(self, corpus_file: Path, queries: pl.DataFrame, *, batch_rows: int = 16384):
        self.file = corpus_file
        self.reader = SortedParquetReader(corpus_file, ["title", "text"], key="doc_id", batch_rows=batch_rows)
        self.queries = queries.select(item_id=pl.lit("q:") + pl.col("query_id"), title=pl.lit(None, pl.String),
                                      text="text")

    def _documents(self, ids: pl.Series) -> pl.DataFrame:
        found = self.reader.rows(ids)
        return found.select(item_id=pl.lit("d:") + pl.col("doc_id"), title="title", text="text")

    def attach(self, chunk: pl.DataFrame) -> pl.DataFrame:
        """`chunk` (item_id, role, ...) with its `title` and `text` columns, rows in the same order."""
        is_doc = chunk["item_id"].str.starts_with("d:")
        parts = [self.queries.join(chunk.filter(~is_doc).select("item_id"), on="item_id", how="semi")]
        if is_doc.any():
            parts.append(self._documents(chunk.filter(is_doc)["item_id"].str.slice(2)))
        with_texts = chunk.join(pl.concat(parts), on="item_id", how="left", maintain_order="left")
        if with_texts["text"].null_count():
            missing = with_texts.filter(pl.col("text").is_null())["item_id"].head(3).to_list()
            raise KeyError(f"no text for {missing} in {self.file}: materialize qa_corpus again")
        return with_texts


def embed_teachers(
    storage: StorageResource, models: ModelsResource, dataset: str, *, batch_size: int, chunk_size: int, log: Log,
    compute: ComputeResource | None = None,
) -> StepReport:
    start = time.perf_counter()
    artifacts = DatasetArtifacts(storage, dataset)
    # ids and content hashes only: each teacher reads the texts it needs chunk by chunk (ItemTexts, BM25 batches)
    corpus, queries, qrels, manifest = artifacts.read_corpus(document_columns=["doc_id", "content_hash"])
    train_q = training_queries(queries, qrels, manifest["train_split"])
    items = _wanted_items(corpus, train_q)
    texts = ItemTexts(artifacts.corpus_dir / "corpus.parquet", train_q)
    per_teacher = [teacher.refresh(artifacts, corpus, items, batch_size=batch_size, chunk_size=chunk_size, log=log,
                                   texts=texts)
                   for teacher in configured_teachers(models, compute)]
    return StepReport(
        time.perf_counter() - start,
        {"device": models.resolved_device(), "compute": (compute or ComputeResource()).describe(),
         "documents": corpus.height, "queries": train_q.height,
         "teachers": per_teacher},
    )
