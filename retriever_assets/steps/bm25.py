"""The BM25 teacher (the paper's sparse teacher, bm25s): an index saved without pickle, rebuilt on document changes."""

from __future__ import annotations

import json
import time

import polars as pl

from resources.artifacts import DatasetArtifacts
from resources.storage import StorageResource, write_json
from retriever_assets.core import candidates as cand
from retriever_assets.core.corpus import document_text
from retriever_assets.core.encoding import EncoderSpec
from retriever_assets.core.versions import documents_version
from retriever_assets.steps.common import Log
from retriever_assets.steps.teachers import CandidateRequest


class Bm25Teacher:
    """Lexical candidates; its scores are not cosines, so only scale-free rules (percpos) and rank rules apply."""

    scored_on_test = False  # not an encoder mteb can score

    def __init__(self, spec: EncoderSpec, models=None, compute=None):  # BM25 runs in this process on any backend
        self.spec = spec

    def refresh(self, artifacts: DatasetArtifacts, corpus: pl.DataFrame, items: pl.DataFrame, *, batch_size: int,
                chunk_size: int, log: Log) -> dict:
        return index_bm25_teacher(artifacts.storage, artifacts.dataset, self.spec, corpus)

    def candidates(self, artifacts: DatasetArtifacts, request: CandidateRequest, log: Log
                   ) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
        import bm25s

        spec, r = self.spec, request
        folder = artifacts.bm25_dir(spec.name)
        index = bm25s.BM25.load(str(folder), allow_pickle=False)
        if json.loads((folder / "doc_ids.json").read_text()) != r.doc_ids:
            raise RuntimeError(f"BM25 index of {spec.name!r} is stale: re-materialize teacher_embeddings")
        c, p = cand.bm25_candidates(spec.name, index, r.query_ids, r.query_texts, r.doc_ids, r.positives, k=r.top_k)
        return c, p, {"search": "bm25"}


def index_bm25_teacher(storage: StorageResource, dataset: str, spec: EncoderSpec, corpus: pl.DataFrame) -> dict:
    """Build the BM25 index over the corpus (cheap; rebuilt when any document changed) and save it without pickle."""
    start = time.perf_counter()
    folder = DatasetArtifacts(storage, dataset).bm25_dir(spec.name)
    version = f"{spec.model}|{documents_version(corpus)}"
    marker, ids_file = folder / "version.txt", folder / "doc_ids.json"
    rebuilt = (not marker.exists() or marker.read_text() != version or not ids_file.exists()
               or json.loads(ids_file.read_text()) != corpus["doc_id"].to_list())  # same docs, another row order
    if rebuilt:
        texts = [document_text(t, x) for t, x in corpus.select("title", "text").iter_rows()]
        index = cand.build_bm25_index(texts)
        index.save(str(folder), allow_pickle=False, show_progress=False)
        write_json(folder / "doc_ids.json", corpus["doc_id"].to_list())
        marker.write_text(version)
    return {
        "teacher": spec.name,
        "kind": "bm25",
        "rebuilt": rebuilt,
        "documents": corpus.height,
        "seconds": round(time.perf_counter() - start, 2),
    }