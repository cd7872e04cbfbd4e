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


class ProgressLog:
    """Progress lines for long loops: one when another 10% is done or 30 s have passed (whichever comes first,
    never more than one per 1%), each with the rate and the ETA, so 1M items log ~10-20 lines, not 1,000."""

    def __init__(self, what: str, total: int, log: Log, *, unit: str = "items", every_share: float = 0.1,
                 every_seconds: float = 30.0, clock: Callable[[], float] | None = None):
        import time

        self.what, self.total, self.log, self.unit = what, total, log, unit
        self.every_share, self.every_seconds = every_share, every_seconds
        self.clock = clock or time.perf_counter
        self.start = self.last_time = self.clock()
        self.last_done, self.lines = 0, 0

    def update(self, done: int) -> None:
        if done <= self.last_done:  # nothing new since the last line
            return
        now, total = self.clock(), max(self.total, 1)
        share = (done - self.last_done) / total
        if done >= self.total or share >= self.every_share or (
                now - self.last_time >= self.every_seconds and share >= 0.01):
            self._line(done, now)

    def _line(self, done: int, now: float) -> None:
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        self.log(f"{self.what} {done:,}/{self.total:,} {self.unit} ({100 * done / max(self.total, 1):.0f}%, "
                 f"{rate:,.1f} {self.unit}/s, ETA {eta:,.0f} s)")
        self.last_done, self.last_time, self.lines = done, now, self.lines + 1

    def finish(self) -> None:
        if self.total and self.last_done < self.total:
            self._line(self.total, self.clock())


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
