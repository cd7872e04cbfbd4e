"""Merging changed documents into earlier ranking windows gives exactly the candidates of a full search."""

import numpy as np
import polars as pl
import pytest

from retriever_assets.core.candidates import (
    candidates_from_ranking,
    dense_ranked_candidates,
    merge_ranking_windows,
    positives_per_query,
)
from retriever_assets.core.search import exact_top_k, pair_scores

K, RESERVE = 10, 16


def _corpus(rng, n, dim, ties):
    vectors = rng.integers(-2, 3, size=(n, dim)).astype(np.float32) if ties else rng.standard_normal((n, dim))
    return vectors.astype(np.float32)


def _edit(rng, doc_ids, docs, dim, ties):
    """Edit 3% of the documents, remove 2%, add 2% new ones (ids sorted, as the corpus keeps them)."""
    n = len(doc_ids)
    edited = rng.choice(n, n * 3 // 100, replace=False)
    removed = np.setdiff1d(rng.choice(n, n * 2 // 100, replace=False), edited)
    new_docs = docs.copy()
    new_docs[edited] = _corpus(rng, len(edited), dim, ties)
    keep = np.setdiff1d(np.arange(n), removed)
    added_ids = [f"d{i:05d}x" for i in rng.choice(n, n * 2 // 100, replace=False)]  # between existing ids
    ids = [doc_ids[i] for i in keep] + added_ids
    vectors = np.concatenate([new_docs[keep], _corpus(rng, len(added_ids), dim, ties)])
    order = np.argsort(ids, kind="stable")
    ids = [ids[i] for i in order]
    changed = sorted([doc_ids[i] for i in edited] + added_ids)
    dropped = [doc_ids[i] for i in edited] + [doc_ids[i] for i in removed]
    return ids, vectors[order], changed, dropped


@pytest.mark.parametrize("ties", [False, True], ids=["distinct scores", "many equal scores"])
def test_merged_windows_equal_a_full_search_of_the_edited_corpus(ties):
    rng = np.random.default_rng(7)
    dim, n_docs, n_q = 8, 2000, 150
    doc_ids = [f"d{i:05d}" for i in range(n_docs)]
    docs = _corpus(rng, n_docs, dim, ties)
    queries = _corpus(rng, n_q, dim, ties)
    query_ids = [f"q{i:03d}" for i in range(n_q)]
    pos_doc = rng.choice(n_docs, n_q, replace=False)
    positives = pl.DataFrame({"query_id": query_ids, "doc_id": [doc_ids[d] for d in pos_doc]})
    before = dense_ranked_candidates("t", query_ids, queries, doc_ids, docs, positives, k=K, reserve=RESERVE)

    ids, vectors, changed, dropped = _edit(rng, doc_ids, docs, dim, ties)
    positives = positives.filter(pl.col("doc_id").is_in(ids))  # a removed positive leaves its query
    full = dense_ranked_candidates("t", query_ids, queries, ids, vectors, positives, k=K, reserve=RESERVE)

    row = {d: i for i, d in enumerate(ids)}
    changed_rows = np.array([row[d] for d in changed])
    pos_count = positives_per_query(query_ids, ids, positives)
    width = K + int(pos_count.max()) + RESERVE
    s, i = exact_top_k(queries, vectors[changed_rows], width)
    merge = merge_ranking_windows(before.window, query_ids, ids, dropped, s, changed_rows[i], pos_count, k=K,
                                  width=width)
    assert len(merge.merged) > 0.8 * n_q  # most windows survive a 5% edit
    merged_ids = [query_ids[j] for j in merge.merged]
    merged = candidates_from_ranking(
        "t", merged_ids, ids, positives, merge.top_scores, merge.top_index,
        lambda qi, di: pair_scores(queries[merge.merged], vectors, qi, di), K)
    expected = full.candidates.filter(pl.col("query_id").is_in(merged_ids))
    assert merged.candidates.equals(expected)
    expected_pos = full.positives.filter(pl.col("query_id").is_in(merged_ids)).drop("rank")
    assert merged.positives.drop("rank").sort("query_id").equals(expected_pos.sort("query_id"))
    # a merged window is an exact prefix of the full search's window
    joined = merged.window.with_row_index("a").join(full.window.with_row_index("b"), on=["query_id", "doc_id"],
                                                    how="left")
    assert joined["b"].null_count() == 0 and (joined["score"] == joined["score_right"]).all()


def test_a_query_whose_window_the_edit_emptied_is_searched_again():
    rng = np.random.default_rng(1)
    doc_ids = [f"d{i:04d}" for i in range(300)]
    docs = rng.standard_normal((300, 8)).astype(np.float32)
    queries = rng.standard_normal((2, 8)).astype(np.float32)
    positives = pl.DataFrame({"query_id": ["q0", "q1"], "doc_id": ["d0000", "d0001"]})
    before = dense_ranked_candidates("t", ["q0", "q1"], queries, doc_ids, docs, positives, k=K, reserve=RESERVE)
    # every document in q0's window is edited away (moved far from every query): its window keeps nothing
    hit = before.window.filter(pl.col("query_id") == "q0")["doc_id"].to_list()
    rows = np.array([doc_ids.index(d) for d in hit])
    docs = docs.copy()
    docs[rows] = -10 * queries[0]
    pos_count = positives_per_query(["q0", "q1"], doc_ids, positives)
    s, i = exact_top_k(queries, docs[rows], K + 1 + RESERVE)
    merge = merge_ranking_windows(before.window, ["q0", "q1"], doc_ids, hit, s, rows[i], pos_count, k=K,
                                  width=K + 1 + RESERVE)
    assert merge.re_search.tolist() == [0]
    assert merge.merged.tolist() == [1] or merge.re_search.tolist() == [0, 1]
    # a query with no earlier window is searched in full
    fresh = merge_ranking_windows(before.window.filter(pl.col("query_id") == "q1"), ["q0", "q1"], doc_ids, [],
                                  np.zeros((2, 0), np.float32), np.zeros((2, 0), np.int64), pos_count, k=K,
                                  width=K + 1 + RESERVE)
    assert fresh.re_search.tolist() == [0] and fresh.merged.tolist() == [1]
