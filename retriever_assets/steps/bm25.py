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
from retriever_assets.steps.common import Log, ProgressLog
from retriever_assets.steps.teachers import CandidateRequest


class Bm25Teacher:
    """Lexical candidates; its scores are not cosines, so only scale-free rules (percpos) and rank rules apply."""

    scored_on_test = False  # not an encoder mteb can score

    def __init__(self, spec: EncoderSpec, models=None, compute=None):  # BM25 runs in this process on any backend
        self.spec = spec

    def refresh(self, artifacts: DatasetArtifacts, corpus: pl.DataFrame, items: pl.DataFrame, *, batch_size: int,
                chunk_size: int, log: Log, texts=None) -> dict:
        return index_bm25_teacher(artifacts.storage, artifacts.dataset, self.spec, corpus, log=log,
                                  batch_size=chunk_size)

    def candidates(self, artifacts: DatasetArtifacts, request: CandidateRequest, log: Log
                   ) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
        import bm25s

        spec, r = self.spec, request
        folder = artifacts.bm25_dir(spec.name)
        t0 = time.perf_counter()
        index = bm25s.BM25.load(str(folder), allow_pickle=False)
        if json.loads((folder / "doc_ids.json").read_text()) != r.doc_ids:
            raise RuntimeError(f"BM25 index of {spec.name!r} is stale: re-materialize teacher_embeddings")
        phases = {"load_index": time.perf_counter() - t0}
        progress = ProgressLog(f"{spec.name}: searched", len(r.query_ids), log, unit="queries")
        t0 = time.perf_counter()
        c, p = cand.bm25_candidates(spec.name, index, r.query_ids, r.query_texts, r.doc_ids, r.positives, k=r.top_k,
                                    on_progress=lambda done, total: progress.update(done))
        progress.finish()
        phases["search"] = time.perf_counter() - t0
        return c, p, {"search": "bm25", "phase_seconds": {k: round(v, 3) for k, v in phases.items()}}


def index_bm25_teacher(storage: StorageResource, dataset: str, spec: EncoderSpec, corpus: pl.DataFrame, *,
                       log: Log | None = None, batch_size: int = 65536) -> dict:
    """Build the BM25 index over the corpus (rebuilt when any document changed) in batches of `batch_size`
    documents read from the corpus parquet (`corpus` needs doc_id and content_hash only), and save it without
    pickle."""
    start = time.perf_counter()
    folder = DatasetArtifacts(storage, dataset).bm25_dir(spec.name)
    version = f"{spec.model}|{documents_version(corpus)}"
    marker, ids_file = folder / "version.txt", folder / "doc_ids.json"
    rebuilt = (not marker.exists() or marker.read_text() != version or not ids_file.exists()
               or json.loads(ids_file.read_text()) != corpus["doc_id"].to_list())  # same docs, another row order
    phases: dict[str, float] = {}
    if rebuilt:
        progress = ProgressLog(f"{spec.name}: indexed", corpus.height, log or (lambda m: None), unit="documents")

        def text_batches():  # read from the corpus parquet: one batch of document strings exists at a time
            import pyarrow.parquet as pq

            file = pq.ParquetFile(DatasetArtifacts(storage, dataset).corpus_dir / "corpus.parquet")
            for batch in file.iter_batches(batch_size=batch_size, columns=["title", "text"]):
                yield [document_text(t, x) for t, x in zip(batch.column("title").to_pylist(),
                                                           batch.column("text").to_pylist(), strict=True)]

        t0 = time.perf_counter()
        index = cand.build_bm25_index(text_batches(), batch_size=batch_size, on_progress=progress.update)
        progress.finish()
        phases["tokenize_and_index"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        index.save(str(folder), allow_pickle=False, show_progress=False)
        del index
        write_json(folder / "doc_ids.json", corpus["doc_id"].to_list())
        marker.write_text(version)
        phases["save"] = time.perf_counter() - t0
    return {
        "teacher": spec.name,
        "kind": "bm25",
        "rebuilt": rebuilt,
        "documents": corpus.height,
        "seconds": round(time.perf_counter() - start, 2),
        "phase_seconds": {k: round(v, 3) for k, v in phases.items()},
    }
