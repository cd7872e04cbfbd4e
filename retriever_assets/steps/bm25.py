"""The BM25 teacher (the paper's sparse teacher, bm25s): an index saved without pickle, rebuilt on document changes."""

from __future__ import annotations

import json
import time

import numpy as np
import polars as pl
import pyarrow as pa

from resources.artifacts import DatasetArtifacts
from resources.storage import StorageResource, write_json
from retriever_assets.core import candidates as cand
from retriever_assets.core.corpus import document_text
from retriever_assets.core.encoding import EncoderSpec
from retriever_assets.core.tables import SortedParquetReader
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
    documents (`corpus` needs doc_id and content_hash only), and save it without pickle.

    Each document's terms are cached by content hash (`terms.parquet`, ids of the append-only `terms_vocab.json`):
    a rebuild tokenizes only new or edited documents, reading their texts forward from the corpus parquet, and
    recomputes the scores (they depend on the whole corpus's statistics) from the cached terms."""
    start = time.perf_counter()
    artifacts = DatasetArtifacts(storage, dataset)
    folder = artifacts.bm25_dir(spec.name)
    version = f"{spec.model}|{documents_version(corpus)}"
    marker, ids_file = folder / "version.txt", folder / "doc_ids.json"
    rebuilt = (not marker.exists() or marker.read_text() != version or not ids_file.exists()
               or json.loads(ids_file.read_text()) != corpus["doc_id"].to_list())  # same docs, another row order
    phases: dict[str, float] = {}
    counts = {"tokenized": 0, "terms_reused": 0}
    if rebuilt:
        progress = ProgressLog(f"{spec.name}: indexed", corpus.height, log or (lambda m: None), unit="documents")
        t0 = time.perf_counter()
        vocab, cache = _load_terms_cache(folder)
        texts = SortedParquetReader(artifacts.corpus_dir / "corpus.parquet", ["title", "text"])
        staged = folder / (TERMS_FILE + ".tmp")

        def batches(writer):  # one batch of terms (and of the texts tokenized) at a time
            for offset in range(0, corpus.height, batch_size):
                part = corpus.slice(offset, batch_size).select("doc_id", "content_hash")
                hits = (cache.rows(part["doc_id"]).join(part, on=["doc_id", "content_hash"], how="semi")
                        if cache is not None else _terms_frame([], [], None))
                missing = part.join(hits.select("doc_id"), on="doc_id", how="anti")
                frames = [hits]
                if missing.height:
                    found = missing.join(texts.rows(missing["doc_id"]), on="doc_id", how="left",
                                         maintain_order="left")
                    if found["text"].null_count():
                        raise RuntimeError(f"BM25 {spec.name!r}: documents without a text in the corpus parquet, "
                                           f"e.g. {found.filter(pl.col('text').is_null())['doc_id'][0]!r}: "
                                           "materialize qa_corpus again")
                    strings = [document_text(t, x) for t, x in found.select("title", "text").iter_rows()]
                    frames.append(_terms_frame(found["doc_id"], found["content_hash"],
                                               cand.tokenize_bm25_batch(strings, vocab)))
                counts["tokenized"] += missing.height
                counts["terms_reused"] += hits.height
                batch = part.select("doc_id").join(pl.concat(frames), on="doc_id", how="left", maintain_order="left")
                writer.write_table(batch.to_arrow().cast(TERMS_SCHEMA))
                yield _doc_terms(batch)

        import pyarrow.parquet as pq

        with pq.ParquetWriter(str(staged), TERMS_SCHEMA) as writer:
            index = cand.bm25_index_from_terms(batches(writer), vocab, on_progress=progress.update)
        progress.finish()
        phases["tokenize_and_index"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        index.save(str(folder), allow_pickle=False, show_progress=False)
        del index
        # the vocabulary only grows, so the cached terms stay valid whichever of the two files a crash leaves new
        write_json(folder / VOCAB_FILE, {"tokenizer": _tokenizer_key(), "tokens": list(vocab)})
        staged.replace(folder / TERMS_FILE)
        write_json(folder / "doc_ids.json", corpus["doc_id"].to_list())
        marker.write_text(version)
        phases["save"] = time.perf_counter() - t0
    return {
        "teacher": spec.name,
        "kind": "bm25",
        "rebuilt": rebuilt,
        "documents": corpus.height,
        **(counts if rebuilt else {}),
        "seconds": round(time.perf_counter() - start, 2),
        "phase_seconds": {k: round(v, 3) for k, v in phases.items()},
    }


TERMS_FILE, VOCAB_FILE = "terms.parquet", "terms_vocab.json"
TOKENIZER_KEY = "bm25s tokenize, stopwords en"  # and the bm25s version: terms are reused by the same tokenizer only
TERMS_SCHEMA = pa.schema([("doc_id", pa.string()), ("content_hash", pa.string()), ("length", pa.int64()),
                          ("terms", pa.large_list(pa.int32())), ("tf", pa.large_list(pa.float32()))])


def _tokenizer_key() -> str:
    import bm25s

    return f"{TOKENIZER_KEY}, bm25s {getattr(bm25s, '__version__', '?')}"


def _load_terms_cache(folder) -> tuple[dict[str, int], SortedParquetReader | None]:
    """The cached vocabulary and a forward reader of the cached terms, or ({}, None) when there is no usable cache."""
    vocab_file, terms_file = folder / VOCAB_FILE, folder / TERMS_FILE
    if not (vocab_file.exists() and terms_file.exists()):
        return {}, None
    saved = json.loads(vocab_file.read_text())
    if saved.get("tokenizer") != _tokenizer_key():
        return {}, None
    vocab = {token: i for i, token in enumerate(saved["tokens"])}
    return vocab, SortedParquetReader(terms_file, ["content_hash", "length", "terms", "tf"])


def _terms_frame(doc_ids, hashes, terms: cand.DocTerms | None) -> pl.DataFrame:
    """DocTerms of some documents as cache rows: doc_id, content_hash, length, terms, tf (lists)."""
    if terms is None:
        return pl.from_arrow(TERMS_SCHEMA.empty_table())
    offsets = pa.array(terms.offsets, pa.int64())
    return pl.from_arrow(pa.table({
        "doc_id": pa.array(list(doc_ids), pa.string()), "content_hash": pa.array(list(hashes), pa.string()),
        "length": pa.array(terms.lengths, pa.int64()),
        "terms": pa.LargeListArray.from_arrays(offsets, pa.array(terms.terms, pa.int32())),
        "tf": pa.LargeListArray.from_arrays(offsets, pa.array(terms.tf, pa.float32())),
    }, schema=TERMS_SCHEMA))


def _doc_terms(frame: pl.DataFrame) -> cand.DocTerms:
    """Cache rows (in corpus order) as the DocTerms the index is built from."""
    counts = frame["terms"].list.len().to_numpy().astype(np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = lambda column: frame[column].to_arrow().flatten().to_numpy(zero_copy_only=False)  # noqa: E731
    return cand.DocTerms(lengths=frame["length"].to_numpy().astype(np.int64), offsets=offsets,
                         terms=flat("terms").astype(np.int32), tf=flat("tf").astype(np.float32))
