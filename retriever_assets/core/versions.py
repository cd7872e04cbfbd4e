"""Versions and cache keys: short hashes that change exactly when what they stand for changes."""

from __future__ import annotations

import hashlib

import polars as pl

from retriever_assets.core.encoding import EncoderSpec


def hash_rows(rows) -> str:
    """A 24-hex-digit hash of rows of values (each row joined by \x1f, one row per line)."""
    h = hashlib.blake2b(digest_size=12)
    for row in rows:
        h.update(("\x1f".join(map(str, row)) + "\n").encode())
    return h.hexdigest()


def queries_version(queries: pl.DataFrame) -> str:
    """Changes when a query is added, removed or edited."""
    return hash_rows(queries.sort("query_id").select("query_id", "content_hash").iter_rows())

def documents_version(corpus: pl.DataFrame) -> str:
    """Changes when a document is added, removed or edited."""
    return hash_rows(corpus.sort("doc_id").select("doc_id", "content_hash").iter_rows())


def corpus_version(corpus: pl.DataFrame, queries: pl.DataFrame, qrels: pl.DataFrame) -> str:
    """A data version that changes when any document, query or judgement changes."""
    parts = (
        documents_version(corpus),
        queries_version(queries),
        hash_rows(qrels.sort("split", "query_id", "doc_id").iter_rows()),
    )
    return hash_rows([parts])



def split_key(qrels: pl.DataFrame) -> str:
    """Which query is in which split (train, test, dev, ...): changes when a dev share, a seed, a split name or a
    query's split changes, so a student or score made under other splits can be told apart."""
    return hash_rows(qrels.select("split", "query_id").unique().sort("split", "query_id").iter_rows())[:16]


def test_split_key(corpus: pl.DataFrame, queries: pl.DataFrame, split_qrels: pl.DataFrame) -> str:
    """Changes when the documents, the queries or the split's judgements change."""
    return hash_rows([
        (documents_version(corpus),),
        (queries_version(queries),),
        (hash_rows(split_qrels.sort("query_id", "doc_id").iter_rows()),),
    ])[:16]


def model_score_key(fingerprint: str, spec: EncoderSpec, split_key: str, scoring_env: str = "") -> str:
    """What decides a model's test score: its weights, how it encodes (length, prompts, backend, device and dtype),
    the evaluator's version, and the test split's data. It names the score cache and mteb's result folder."""
    row = (fingerprint, spec.max_seq_length, spec.query_prompt, spec.document_prompt, split_key)
    if spec.backend != "torch":  # torch keys stay what they were before backends existed
        row = (*row, spec.backend)
    if scoring_env:
        row = (*row, scoring_env)
    return hash_rows([row])


def scoring_environment(device: str) -> str:
    """Device kind, encode dtype and mteb version: a score computed under other ones is another score."""
    from importlib.metadata import version

    dtype = "fp16" if device.startswith("cuda") else "fp32"  # load_sentence_transformer halves models on CUDA
    return f"{device.split(':')[0]}-{dtype}|mteb {version('mteb')}"

