"""Teacher diagnostics from hand-built candidate lists: positive ranks, train nDCG@10, empty shares, verdict."""

import math

import polars as pl
import pytest

from retriever_assets.core.diagnostics import positive_rank_shares, teacher_diagnostics, train_ndcg_at_10

P_SCHEMA = {"query_id": pl.String, "teacher": pl.String, "doc_id": pl.String, "score": pl.Float32, "rank": pl.Int32}
C_SCHEMA = {"query_id": pl.String, "teacher": pl.String, "rank": pl.Int32, "doc_id": pl.String, "score": pl.Float32}


def test_positive_rank_shares_and_train_ndcg():
    # q1: positive first; q2: positive at 5; q3: two positives at 2 and 40 (below the window: null); q4: none found
    pos = pl.DataFrame([("q1", "t", "a", 0.9, 1), ("q2", "t", "b", 0.5, 5), ("q3", "t", "c", 0.8, 2),
                        ("q3", "t", "d", 0.1, None), ("q4", "t", "e", 0.1, None)], schema=P_SCHEMA, orient="row")
    queries = ["q1", "q2", "q3", "q4"]
    assert positive_rank_shares(pos, queries) == {"share_positive_in_top_1": 0.25, "share_positive_in_top_10": 0.75,
                                                  "share_positive_in_top_30": 0.75}
    ideal2 = 1 + 1 / math.log2(3)
    expected = (1 + 1 / math.log2(6) + (1 / math.log2(3)) / ideal2 + 0) / 4
    assert train_ndcg_at_10(pos, queries) == pytest.approx(expected, abs=1e-4)


def test_a_teacher_that_ranks_positives_low_is_called_weak_with_the_remedy():
    queries = [f"q{i}" for i in range(10)]
    # every candidate scores above the positive: percpos and marginpos keep nothing
    cands = pl.DataFrame([(q, "t", r, f"{q}d{r}", 0.9 - 0.01 * r) for q in queries for r in range(1, 6)],
                         schema=C_SCHEMA, orient="row")
    pos = pl.DataFrame([(q, "t", f"{q}p", 0.5, 8) for q in queries], schema=P_SCHEMA, orient="row")
    [row] = teacher_diagnostics(cands, pos, queries, {"t": "cosine"})
    assert row["empty_share_percpos"] == 1.0 and row["empty_share_naive"] == 0.0
    assert row["verdict"].startswith("weak: a positive-aware rule leaves 100%") and "stronger teacher" in row["verdict"]
    strong = pos.with_columns(score=pl.lit(0.99, dtype=pl.Float32), rank=pl.lit(1, dtype=pl.Int32))
    [ok] = teacher_diagnostics(cands, strong, queries, {"t": "cosine"})
    assert ok["verdict"] == "ok" and ok["share_positive_in_top_1"] == 1.0 and ok["train_ndcg_at_10"] == 1.0
    [bm25] = teacher_diagnostics(cands.with_columns(teacher=pl.lit("b")), strong.with_columns(teacher=pl.lit("b")),
                                 queries, {"b": "bm25"})
    assert "empty_share_abs" not in bm25 and "empty_share_percpos" in bm25  # cosine-only rules skipped for BM25
    [dot] = teacher_diagnostics(cands, strong, queries, {"t": "dot"})  # normalize=False: refused by validate too
    assert "empty_share_marginpos" not in dot and "empty_share_percpos" in dot
