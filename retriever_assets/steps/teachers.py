"""Teachers as objects: what the embed and candidates steps ask of any teacher, and the kinds that exist.

A new kind of teacher (e.g. a dense teacher whose encoding runs on a Ray cluster) implements `Teacher` and is
registered in `TEACHER_KINDS`; no step branches on the kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from resources.artifacts import DatasetArtifacts
from resources.compute import ComputeResource
from resources.models import ModelsResource
from retriever_assets.core.encoding import EncoderSpec
from retriever_assets.steps.common import Log


@dataclass(frozen=True)
class CandidateRequest:
    """What the candidate_lists step asks every teacher for: top_k non-positive candidates per training query."""

    query_ids: list[str]
    query_texts: list[str]
    doc_ids: list[str]  # in corpus (id) order
    positives: pl.DataFrame  # query_id, doc_id of the training split
    top_k: int
    query_chunk: int = 4096
    doc_chunk: int = 65536
    search: str = "exact"  # exact | ann | auto (dense teachers)
    ann: dict = field(default_factory=dict)
    device: str = "cpu"


class Teacher(Protocol):
    spec: EncoderSpec
    scored_on_test: bool  # also scored on the test split next to the students

    def refresh(self, artifacts: DatasetArtifacts, corpus: pl.DataFrame, items: pl.DataFrame, *, batch_size: int,
                chunk_size: int, log: Log, texts) -> dict:
        """Bring the teacher's index of this dataset up to date (embed / re-index what changed); a report row.

        `corpus` and `items` hold ids and content hashes, no text: `texts.attach(chunk)` adds a chunk's titles and
        texts (steps/embed.py ItemTexts), and the corpus parquet can be read in batches."""

    def candidates(self, artifacts: DatasetArtifacts, request: CandidateRequest, log: Log
                   ) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
        """(candidates, positives' scores, report fields) for the request."""


def teacher_kinds() -> dict[str, type]:
    from retriever_assets.steps.bm25 import Bm25Teacher
    from retriever_assets.steps.dense import DenseTeacher

    return {"dense": DenseTeacher, "bm25": Bm25Teacher}


def configured_teachers(models: ModelsResource, compute: ComputeResource | None = None) -> list[Teacher]:
    """One Teacher per configured spec, in configuration order, running on `compute` (default: local)."""
    kinds = teacher_kinds()
    return [kinds[spec.kind](spec, models, compute) for spec in models.specs().values()]
