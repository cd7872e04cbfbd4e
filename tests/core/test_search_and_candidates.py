"""Chunked exact search equals brute force; candidate lists exclude positives and keep k per query."""

import numpy as np
import polars as pl
import pytest

from retriever_assets.core.candidates import bm25_candidates, build_bm25_index, dense_candidates
from retriever_assets.core.search import exact_top_k


@pytest.mark.parametrize(("q_chunk", "d_chunk"), [(3, 7), (100, 1000), (1, 1)])
def test_chunked_search_equals_brute_force(q_chunk, d_chunk):
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(13, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    scores, index = exact_top_k(q, d, 5, query_chunk=q_chunk, doc_chunk=d_chunk)
    full = q @ d.T
    expect = np.argsort(-full, axis=1)[:, :5]
    assert (index == expect).all()
    assert np.allclose(scores, np.take_along_axis(full, expect, 1), atol=1e-5)


def test_k_larger_than_corpus():
    scores, index = exact_top_k(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), 10)
    assert index.shape == (2, 2)


def test_dense_candidates_multi_positive_query_still_gets_k():
    # query 0 has 3 positives ranked at the top; it must still get k=4 non-positive candidates
    docs = np.array([[1, 0], [0.99, 0.1], [0.98, 0.2], [0.9, 0.4], [0.8, 0.6], [0.7, 0.7], [0.5, 0.8], [0, 1]],
                    dtype=np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = np.array([[1, 0], [0, 1]], dtype=np.float32)
    doc_ids = [f"d{i}" for i in range(8)]
    positives = pl.DataFrame({"query_id": ["q0", "q0", "q0", "q1"], "doc_id": ["d0", "d1", "d2", "d5"]})
    c, p = dense_candidates("t", ["q0", "q1"], queries, doc_ids, docs, positives, k=4)
    q0 = c.filter(pl.col("query_id") == "q0")
    assert q0["doc_id"].to_list() == ["d3", "d4", "d5", "d6"] and q0["rank"].to_list() == [1, 2, 3, 4]
    assert "d5" not in c.filter(pl.col("query_id") == "q1")["doc_id"].to_list()
    assert sorted(p.filter(pl.col("query_id") == "q0")["rank"].to_list()) == [1, 2, 3]
    assert p.filter(pl.col("doc_id") == "d0")["score"][0] == pytest.approx(1.0)


def test_bm25_candidates_score_positives_and_skip_zero_scores():
    texts = ["the harbour ferry leaves at nine", "ferry tickets cost four pounds", "library opens at ten",
             "bakery bread", "harbour festival in june"]
    index = build_bm25_index(texts)
    positives = pl.DataFrame({"query_id": ["q"], "doc_id": ["d0"]})
    c, p = bm25_candidates("bm25", index, ["q"], ["when does the harbour ferry leave"],
                           [f"d{i}" for i in range(5)], positives, k=10)
    assert "d0" not in c["doc_id"].to_list()
    assert set(c["doc_id"]) == {"d1", "d4"}  # the others share no term with the query
    assert p["score"][0] > c["score"].max()
