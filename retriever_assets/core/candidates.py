"""Candidate lists: each training query's top-K teacher candidates (positives excluded) plus its positives' scores."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import bm25s
import numpy as np
import polars as pl

from retriever_assets.core.search import exact_top_k, pair_scores, top_k_row_numpy

CANDIDATE_SCHEMA = {
    "query_id": pl.String,
    "teacher": pl.String,
    "rank": pl.Int32,  # 1-based rank among the query's non-positive candidates
    "doc_id": pl.String,
    "score": pl.Float32,
}
POSITIVE_SCHEMA = {
    "query_id": pl.String,
    "teacher": pl.String,
    "doc_id": pl.String,
    "score": pl.Float32,
    "rank": pl.Int32,  # 1-based rank of the positive in the teacher's full ranking (None when below the window)
}


def _positive_index(query_ids: Sequence[str], doc_ids: Sequence[str], positives: pl.DataFrame):
    """Map positives to row indices; returns (q_idx, d_idx, per-query positive sets as doc indices)."""
    q_pos = {q: i for i, q in enumerate(query_ids)}
    d_pos = {d: i for i, d in enumerate(doc_ids)}
    pairs = [(q_pos[q], d_pos[d]) for q, d in positives.iter_rows() if q in q_pos and d in d_pos]
    q_idx = np.array([p[0] for p in pairs], dtype=np.int64)
    d_idx = np.array([p[1] for p in pairs], dtype=np.int64)
    sets: list[set[int]] = [set() for _ in query_ids]
    for qi, di in pairs:
        sets[qi].add(di)
    return q_idx, d_idx, sets


def _frames_from_ranking(
    teacher: str,
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    top_scores: np.ndarray,  # (n_queries, k + max_positives)
    top_index: np.ndarray,  # (n_queries, k + max_positives)
    pos_q: np.ndarray,
    pos_d: np.ndarray,
    pos_scores: np.ndarray,
    k: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    # where each positive pair sits in its query's ranking (vectorised: one row of the ranking per positive)
    is_pos = np.zeros(top_index.shape, dtype=bool)
    hit_pair, hit_col = np.nonzero(top_index[pos_q] == pos_d[:, None]) if len(pos_q) else ((), ())
    hit_pair, hit_col = np.asarray(hit_pair, dtype=np.int64), np.asarray(hit_col, dtype=np.int64)
    hit_pair_ok = np.isfinite(top_scores[pos_q[hit_pair], hit_col]) if len(hit_pair) else np.zeros(0, bool)
    hit_pair, hit_col = hit_pair[hit_pair_ok], hit_col[hit_pair_ok]
    is_pos[pos_q[hit_pair], hit_col] = True
    rank_of_pair = np.zeros(len(pos_q), dtype=np.int64)  # 0: below the window
    rank_of_pair[hit_pair] = hit_col + 1
    # rank among non-positives, then keep the first k of them
    neg_rank = np.cumsum(~is_pos, axis=1)
    keep = (~is_pos) & (neg_rank <= k) & np.isfinite(top_scores)
    rows_q, rows_c = np.nonzero(keep)
    doc_col = pl.Series("doc_id", list(doc_ids), dtype=pl.String)  # gather by row: no per-row Python objects
    query_col = pl.Series("query_id", list(query_ids), dtype=pl.String)
    candidates = pl.DataFrame(
        {
            "query_id": query_col.gather(rows_q),
            "teacher": pl.repeat(teacher, len(rows_q), dtype=pl.String, eager=True),
            "rank": neg_rank[rows_q, rows_c].astype(np.int32),
            "doc_id": doc_col.gather(top_index[rows_q, rows_c]),
            "score": top_scores[rows_q, rows_c].astype(np.float32),
        },
        schema=CANDIDATE_SCHEMA,
    )
    positives = pl.DataFrame(
        {
            "query_id": query_col.gather(pos_q),
            "teacher": pl.repeat(teacher, len(pos_q), dtype=pl.String, eager=True),
            "doc_id": doc_col.gather(pos_d),
            "score": pos_scores.astype(np.float32),
            "rank": pl.Series(rank_of_pair, dtype=pl.Int32).replace(0, None),
        },
        schema=POSITIVE_SCHEMA,
    )
    return candidates, positives


def dense_candidates(
    teacher: str,
    query_ids: Sequence[str],
    query_vectors: np.ndarray,  # (n_queries, dim), normalised for cosine teachers
    doc_ids: Sequence[str],
    doc_vectors: np.ndarray | None,  # (n_docs, dim); None when `search` and `pair_score` hold the corpus
    positives: pl.DataFrame,  # query_id, doc_id
    *,
    k: int,
    device: str = "cpu",
    query_chunk: int = 4096,
    doc_chunk: int = 65536,
    search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None,
    pair_score: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Top-k non-positive candidates per query by exact search, and every positive's teacher score.

    The search fetches k + (largest number of positives of a query) so that a query with several
    positives still gets k candidates once its positives are removed. `search(query_vectors, width)`
    replaces the exact search (e.g. an ANN index): it returns (scores, doc row indices), -inf where empty.
    `pair_score(query_vectors, q_rows, doc_rows)` replaces the positives' scoring from `doc_vectors` (e.g. corpus
    shards on a cluster).
    """
    if doc_vectors is None and (search is None or pair_score is None):
        raise ValueError("without doc_vectors, both search and pair_score are needed")
    pos_q, pos_d, sets = _positive_index(query_ids, doc_ids, positives)
    extra = max((len(s) for s in sets), default=0)
    if search is None:
        top_scores, top_index = exact_top_k(
            query_vectors, doc_vectors, k + extra, device=device, query_chunk=query_chunk, doc_chunk=doc_chunk
        )
    else:
        top_scores, top_index = search(query_vectors, k + extra)
    score = pair_score or (lambda q, qi, di: pair_scores(q, doc_vectors, qi, di))
    pos_scores = score(query_vectors, pos_q, pos_d) if len(pos_q) else np.zeros(0, np.float32)
    return _frames_from_ranking(
        teacher, query_ids, doc_ids, top_scores, top_index, pos_q, pos_d, pos_scores, k
    )


def tokenize_for_bm25(texts: Sequence[str]) -> list[list[str]]:
    """The tokenisation both the BM25 index and its queries use (lower-case words, English stop words)."""
    return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)


def build_bm25_index(doc_texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> bm25s.BM25:
    """Index documents for BM25 (the paper's sparse teacher) with bm25s."""
    index = bm25s.BM25(k1=k1, b=b)
    index.index(bm25s.tokenize(list(doc_texts), stopwords="en", show_progress=False), show_progress=False)
    return index


def bm25_candidates(
    teacher: str,
    index: bm25s.BM25,
    query_ids: Sequence[str],
    query_texts: Sequence[str],
    doc_ids: Sequence[str],
    positives: pl.DataFrame,
    *,
    k: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Top-k non-positive BM25 candidates per query, and the BM25 score of every positive."""
    pos_q, pos_d, sets = _positive_index(query_ids, doc_ids, positives)
    extra = max((len(s) for s in sets), default=0)
    width = min(k + extra, len(doc_ids))
    top_scores = np.full((len(query_ids), width), -np.inf, dtype=np.float32)
    top_index = np.zeros((len(query_ids), width), dtype=np.int64)
    pos_scores = np.zeros(len(pos_q), dtype=np.float32)
    by_query: dict[int, list[int]] = {}
    for j, qi in enumerate(pos_q):
        by_query.setdefault(int(qi), []).append(j)
    tokens = tokenize_for_bm25(query_texts)
    for qi, toks in enumerate(tokens):
        scores = index.get_scores(toks)  # (n_docs,)
        order = top_k_row_numpy(scores, width)  # by score, ties by lower row (= doc id order, see load_beir_folder)
        top_scores[qi], top_index[qi] = scores[order], order
        for j in by_query.get(qi, []):
            pos_scores[j] = scores[pos_d[j]]
        if on_progress and (qi + 1) % 1000 == 0:
            on_progress(qi + 1, len(tokens))
    # BM25 gives 0 to documents sharing no term with the query: they are not candidates
    top_scores[top_scores <= 0] = -np.inf
    return _frames_from_ranking(
        teacher, query_ids, doc_ids, top_scores, top_index, pos_q, pos_d, pos_scores, k
    )
