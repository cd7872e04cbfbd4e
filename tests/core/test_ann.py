"""The ANN path: a LanceDB IVF_RQ index on the embeddings table, its recall against exact search, and upkeep."""

import numpy as np
import polars as pl
import pytest

from resources import StorageResource
from retriever_assets.core.candidates import dense_candidates
from retriever_assets.core.search import exact_top_k, hits_by_query, rescore_top_k, top_k_recall


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write(store, prefix: str, role: str, vectors: np.ndarray, start: int = 0) -> None:
    ids = [f"{prefix}{i}" for i in range(start, start + len(vectors))]
    items = pl.DataFrame({"item_id": ids, "role": [role] * len(ids), "content_hash": ids,
                          "cache_key": ["k"] * len(ids)})
    store.write(items, vectors, model="synthetic")


def test_top_k_recall_counts_shared_items():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    assert top_k_recall(np.array([[3, 2, 1], [4, -1, 9]]), exact) == (3 + 1) / 6
    assert top_k_recall(np.zeros((0, 3), dtype=int), np.zeros((0, 3), dtype=int)) == 1.0


def test_hits_by_query_orders_each_querys_hits_and_fills_the_rest():
    qi = np.array([1, 0, 1, 1, 0])
    dist = np.array([0.3, 0.5, 0.1, 0.2, 0.4], dtype=np.float32)
    ids = np.array([10, 20, 30, 40, 50])
    d, v = hits_by_query(qi, dist, ids, 3, 2, -1)
    assert v.tolist() == [[50, 20], [30, 40], [-1, -1]]  # nearest first; query 1's third hit dropped
    assert d[0].tolist() == pytest.approx([0.4, 0.5]) and np.isposinf(d[2]).all()


def test_rescore_top_k_orders_candidates_by_exact_score_and_skips_empty_slots():
    docs, queries = clustered(200, 16, 2), clustered(7, 16, 3)
    exact_scores, exact_rows = exact_top_k(queries, docs, 5)
    rng = np.random.default_rng(0)
    # candidates: the true top-5 hidden among 20 shuffled rows, with empty slots (-1)
    cands = np.full((7, 25), -1, dtype=np.int64)
    for i in range(7):
        others = rng.choice(np.setdiff1d(np.arange(200), exact_rows[i]), 15, replace=False)
        cands[i, :20] = rng.permutation(np.concatenate([exact_rows[i], others]))
    scores, rows = rescore_top_k(queries, docs, cands, 5, query_chunk=3)
    np.testing.assert_array_equal(rows, exact_rows)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-6)
    # fewer candidates than k: -inf and -1 fill the tail
    scores, rows = rescore_top_k(queries[:1], docs, np.array([[4, -1, 9]]), 5)
    assert rows[0, 2:].tolist() == [-1, -1, -1] and np.isneginf(scores[0, 2:]).all()
    assert sorted(rows[0, :2].tolist()) == [4, 9] and scores[0, 0] >= scores[0, 1]


def test_ann_index_finds_documents_only_with_high_recall_and_is_kept_up_to_date(tmp_path):
    store = StorageResource(root=str(tmp_path)).embedding_store("ds", "t")
    docs, queries = clustered(3000, 32, 0), clustered(50, 32, 1)
    write(store, "d:", "document", docs)
    write(store, "q:", "query", queries)  # queries live in the same table: the search must skip them
    assert store.ensure_vector_index() == "created"
    assert store.ensure_vector_index() == "reused"
    _, exact = exact_top_k(queries, docs, 10)

    def found(items):
        assert all(str(i).startswith("d:") for row in items for i in row if i is not None)
        return np.array([[int(str(i)[2:]) if i is not None else -1 for i in row] for row in items])

    scores, items = store.search_documents(queries, 10, nprobes=64, refine_factor=5)  # re-ranked exactly
    assert top_k_recall(found(items), exact) > 0.95
    true = np.take_along_axis(queries @ docs.T, found(items), axis=1)
    np.testing.assert_allclose(scores, true, atol=1e-4)  # refined scores are the exact cosines
    write(store, "d:", "document", clustered(1500, 32, 2), start=3000)  # 1/3 of the rows are new
    assert store.ensure_vector_index() == "updated"


def test_dense_candidates_accept_another_search():
    docs, queries = clustered(200, 16, 3), clustered(5, 16, 4)
    positives = pl.DataFrame({"query_id": ["q0"], "doc_id": ["d7"]})
    q_ids, d_ids = [f"q{i}" for i in range(5)], [f"d{i}" for i in range(200)]
    exact = dense_candidates("t", q_ids, queries, d_ids, docs, positives, k=8)
    calls = []

    def search(q, width):
        calls.append(width)
        return exact_top_k(q, docs, width)

    via_hook = dense_candidates("t", q_ids, queries, d_ids, docs, positives, k=8, search=search)
    assert calls == [9]  # k + the largest number of positives of a query
    assert via_hook[0].equals(exact[0]) and via_hook[1].equals(exact[1])


def _indexed_store(tmp_path, n_docs: int = 3000, dim: int = 32):
    """Unclustered vectors: one IVF partition holds few of a query's neighbours."""
    store = StorageResource(root=str(tmp_path)).embedding_store("ds", "t")
    rng = np.random.default_rng(0)
    docs, queries = (x / np.linalg.norm(x, axis=1, keepdims=True)
                     for x in (rng.standard_normal((n, dim), dtype=np.float32) for n in (n_docs, 60)))
    write(store, "d:", "document", docs)
    assert store.ensure_vector_index() == "created"
    return store, [str(i) for i in range(n_docs)], docs, queries


def test_ann_candidate_scores_are_exact_even_without_refine(tmp_path):
    """refine_factor 0: the index's distances are quantized; the candidates' scores must still be the exact cosines
    (float64, rounded), like the positives' scores the rules compare them with (issue 27, item 9)."""
    from retriever_assets.steps.dense import _ann_search

    store, doc_ids, docs, queries = _indexed_store(tmp_path)
    search, report = _ann_search(store, doc_ids, docs, {"nprobes": 20, "refine_factor": 0}, lambda m: None)
    scores, rows = search(queries, 10)
    exact = np.einsum("qd,qkd->qk", queries.astype(np.float64), docs[rows].astype(np.float64)).astype(np.float32)
    finite = np.isfinite(scores)
    assert finite.mean() > 0.9
    np.testing.assert_array_equal(scores[finite], exact[finite])
    assert (np.diff(scores, axis=1)[np.isfinite(np.diff(scores, axis=1))] <= 0).all()  # best first


def test_ann_recall_under_the_floor_widens_nprobes_or_searches_exactly(tmp_path):
    from retriever_assets.steps.dense import _ann_search_with_recall_floor

    store, doc_ids, docs, queries = _indexed_store(tmp_path, n_docs=20000)  # ~140 partitions
    ann = {"nprobes": 1, "refine_factor": 5, "recall_sample": 60}
    lines = []
    # a floor that one partition cannot reach: nprobes is doubled until it holds
    search, report = _ann_search_with_recall_floor(store, doc_ids, queries, docs, ann | {"recall_floor": 0.97}, 10,
                                                   "cpu", lines.append)
    checks = report["ann_recall_checks"]
    assert search is not None and checks[0]["nprobes"] == 1 and checks[0]["recall_at_k"] < 0.97
    assert report["ann_recall_at_k"] >= 0.97 and report["ann_nprobes"] == checks[-1]["nprobes"] > 1
    assert "widened" in report["ann_warning"]
    # a floor no width can reach: warned, and the caller searches exactly
    search, report = _ann_search_with_recall_floor(store, doc_ids, queries, docs, ann | {"recall_floor": 1.01}, 10,
                                                   "cpu", lines.append)
    assert search is None and "searched exactly" in report["ann_warning"]
    # a floor reached at once: no warning
    search, report = _ann_search_with_recall_floor(store, doc_ids, queries, docs,
                                                   ann | {"nprobes": 64, "recall_floor": 0.5}, 10, "cpu", lines.append)
    assert search is not None and "ann_warning" not in report and len(report["ann_recall_checks"]) == 1
