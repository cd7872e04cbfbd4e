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


# ----------------------------------------------------------------- ties: score descending, then doc id


def _tied_problem(seed: int = 0):
    """Queries and documents on a coarse grid, so many scores are exactly equal (duplicated documents too)."""
    rng = np.random.default_rng(seed)
    docs = rng.integers(-2, 3, size=(40, 4)).astype(np.float32)
    docs[20:30] = docs[0:10]  # exact duplicates: identical scores for every query
    queries = rng.integers(-2, 3, size=(9, 4)).astype(np.float32)
    return queries, docs


def _reference_top_k(q: np.ndarray, d: np.ndarray, k: int) -> np.ndarray:
    full = q.astype(np.float64) @ d.T.astype(np.float64)
    cols = np.arange(d.shape[0])
    return np.stack([np.lexsort((cols, -row))[:k] for row in full])  # score desc, then lower row


@pytest.mark.parametrize(("q_chunk", "d_chunk"), [(1, 1), (2, 3), (4, 7), (9, 16), (100, 1000)])
def test_equal_scores_are_ordered_by_row_whatever_the_chunks(q_chunk, d_chunk):
    q, d = _tied_problem()
    _, index = exact_top_k(q, d, 12, query_chunk=q_chunk, doc_chunk=d_chunk)
    assert (index == _reference_top_k(q, d, 12)).all()


def test_deterministic_numpy_top_k_takes_the_lowest_columns_at_the_cut():
    from retriever_assets.core.search import top_k_row_numpy

    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.5, 0.1, 0.5], dtype=np.float32)
    assert top_k_row_numpy(scores, 4).tolist() == [1, 3, 0, 2]
    for k in range(0, 9):
        assert top_k_row_numpy(scores, k).tolist() == np.lexsort((np.arange(7), -scores))[:k].tolist()


def test_candidate_order_among_ties_is_by_doc_id_on_exact_and_ann_paths():
    from retriever_assets.core.search import rescore_top_k

    q, d = _tied_problem(1)
    doc_ids = [f"doc{i:03d}" for i in range(len(d))]  # rows in id order, as load_beir_folder returns them
    query_ids = [f"q{i}" for i in range(len(q))]
    positives = pl.DataFrame({"query_id": ["q0"], "doc_id": ["doc005"]})
    frames = []
    for q_chunk, d_chunk in [(1, 1), (3, 5), (64, 4096)]:
        frames.append(dense_candidates("t", query_ids, q, doc_ids, d, positives, k=10, query_chunk=q_chunk,
                                       doc_chunk=d_chunk)[0])
    rng = np.random.default_rng(3)

    def ann_like(query_vectors, width):  # an index that proposes every document, in a shuffled order
        proposals = np.stack([rng.permutation(len(d)) for _ in range(len(query_vectors))])
        return rescore_top_k(query_vectors, d, proposals, width)

    frames.append(dense_candidates("t", query_ids, q, doc_ids, d, positives, k=10, search=ann_like)[0])
    for other in frames[1:]:
        assert other.equals(frames[0])
    by_query = frames[0].group_by("query_id", maintain_order=True).agg("score", "doc_id")
    for scores, ids in by_query.select("score", "doc_id").iter_rows():
        assert list(zip([-s for s in scores], ids, strict=True)) == sorted(zip([-s for s in scores], ids, strict=True))


def test_loaded_corpus_rows_are_in_id_order_whatever_the_file_order(tmp_path):
    import json

    from retriever_assets.core.corpus import load_beir_folder

    (tmp_path / "qrels").mkdir()
    docs = [{"_id": i, "title": "", "text": f"text {i}"} for i in ("d3", "d1", "d2")]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(x) for x in docs))
    (tmp_path / "queries.jsonl").write_text('{"_id": "qb", "text": "b"}\n{"_id": "qa", "text": "a"}\n')
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nqa\td1\t1\nqb\td3\t1\n")
    data = load_beir_folder(tmp_path, splits=("train",))
    assert data.corpus["doc_id"].to_list() == ["d1", "d2", "d3"]
    assert data.queries["query_id"].to_list() == ["qa", "qb"]
