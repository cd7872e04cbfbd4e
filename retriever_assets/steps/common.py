"""What every step shares: its report, the log callback, and small readers of the corpus frames."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from resources.models import ModelsResource
from retriever_assets.core.corpus import document_text, positives_of
from retriever_assets.core.encoding import EncoderSpec

Log = Callable[[str], None]


@dataclass
class StepReport:
    seconds: float = 0.0
    values: dict = field(default_factory=dict)


def doc_texts(corpus: pl.DataFrame) -> dict[str, str]:
    """doc_id -> the text models see (title and text)."""
    return {d: document_text(t, x) for d, t, x in corpus.select("doc_id", "title", "text").iter_rows()}


def training_queries(queries: pl.DataFrame, qrels: pl.DataFrame, split: str) -> pl.DataFrame:
    """Queries with at least one positive in the training split, in id order."""
    ids = positives_of(qrels, split).select("query_id").unique()
    return queries.join(ids, on="query_id", how="semi").sort("query_id")


def teachers_path(models: ModelsResource, spec: EncoderSpec) -> str:
    """The folder (or hub id) a spec's model resolves to, without loading it."""
    from retriever_assets.core.encoding import resolve_model_path

    return resolve_model_path(spec.model, cache_dir=Path(models.model_cache_dir))
