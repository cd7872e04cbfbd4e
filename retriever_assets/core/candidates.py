"""Candidate lists: each training query's top-K teacher candidates (positives excluded) plus its positives' scores."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import bm25s
import numpy as np
import polars as pl
import torch

from retriever_assets.core.search import exact_top_k, order_by_score_then_index, pair_scores, top_k_row_numpy

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
    on_progress: Callable[[int], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Top-k non-positive candidates per query by exact search, and every positive's teacher score.

    The search fetches k + (largest number of positives of a query) so that a query with several
    positives still gets k candidates once its positives are removed. `search(query_vectors, width)`
    replaces the exact search (e.g. an ANN index): it returns (scores, doc row indices), -inf where empty.
    `pair_score(query_vectors, q_rows, doc_rows)` replaces the positives' scoring from `doc_vectors` (e.g. corpus
    shards on a cluster). `on_progress(queries_done)` follows the exact search.
    """
    frames = dense_ranked_candidates(teacher, query_ids, query_vectors, doc_ids, doc_vectors, positives, k=k,
                                     device=device, query_chunk=query_chunk, doc_chunk=doc_chunk, search=search,
                                     pair_score=pair_score, on_progress=on_progress)
    return frames.candidates, frames.positives


@dataclass
class RankedCandidates:
    """A dense search's candidate and positive frames, and the ranking window they were cut from (every query's
    best `width` documents, positives included: query_id, doc_id, score, best first), which a later search merges
    the changed documents into (`merge_ranking_windows`)."""

    candidates: pl.DataFrame
    positives: pl.DataFrame
    window: pl.DataFrame


WINDOW_SCHEMA = {"query_id": pl.String, "doc_id": pl.String, "score": pl.Float32}


def dense_ranked_candidates(
    teacher: str,
    query_ids: Sequence[str],
    query_vectors: np.ndarray,
    doc_ids: Sequence[str],
    doc_vectors: np.ndarray | None,
    positives: pl.DataFrame,
    *,
    k: int,
    reserve: int = 0,
    device: str = "cpu",
    query_chunk: int = 4096,
    doc_chunk: int = 65536,
    search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None,
    pair_score: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> RankedCandidates:
    """`dense_candidates`, keeping the ranking window: `reserve` more documents per query than the candidates need,
    so that a later edit of a few of them still leaves a window deep enough to merge into."""
    if doc_vectors is None and (search is None or pair_score is None):
        raise ValueError("without doc_vectors, both search and pair_score are needed")
    pos_q, pos_d, sets = _positive_index(query_ids, doc_ids, positives)
    extra = max((len(s) for s in sets), default=0)
    width = k + extra + reserve
    if search is None:
        top_scores, top_index = exact_top_k(
            query_vectors, doc_vectors, width, device=device, query_chunk=query_chunk, doc_chunk=doc_chunk,
            on_progress=on_progress,
        )
    else:
        top_scores, top_index = search(query_vectors, width)
    score = pair_score or (lambda q, qi, di: pair_scores(q, doc_vectors, qi, di))
    pos_scores = score(query_vectors, pos_q, pos_d) if len(pos_q) else np.zeros(0, np.float32)
    c, p = _frames_from_ranking(teacher, query_ids, doc_ids, top_scores, top_index, pos_q, pos_d, pos_scores, k)
    return RankedCandidates(c, p, ranking_window(query_ids, doc_ids, top_scores, top_index))


def ranking_window(query_ids: Sequence[str], doc_ids: Sequence[str], top_scores: np.ndarray, top_index: np.ndarray
                   ) -> pl.DataFrame:
    """The searched rankings as rows (query_id, doc_id, score), each query's best first; empty slots (-inf) left
    out."""
    rows_q, rows_c = np.nonzero(np.isfinite(top_scores))  # row-major: query by query, best first
    return pl.DataFrame({
        "query_id": pl.Series(list(query_ids), dtype=pl.String).gather(rows_q),
        "doc_id": pl.Series(list(doc_ids), dtype=pl.String).gather(top_index[rows_q, rows_c]),
        "score": top_scores[rows_q, rows_c].astype(np.float32),
    }, schema=WINDOW_SCHEMA)


@dataclass
class WindowMerge:
    """The result of merging changed documents into earlier ranking windows: the rankings of the queries that
    could be merged exactly (rows `merged` of the request's queries; -inf past each query's exact prefix) and the
    queries that need a full search again (rows `re_search`)."""

    merged: np.ndarray
    top_scores: np.ndarray
    top_index: np.ndarray
    re_search: np.ndarray


def merge_ranking_windows(
    window: pl.DataFrame,
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    dropped_doc_ids: Iterable[str],
    changed_scores: np.ndarray,
    changed_index: np.ndarray,
    positives_per_query: np.ndarray,
    *,
    k: int,
    width: int,
) -> WindowMerge:
    """Exact rankings over the current corpus from an earlier search and a search of the changed documents only.

    `window`: the earlier ranking windows (`ranking_window`) of the queries `query_ids`; every document outside a
    query's window scored at most its last one (equal scores: a later document id). `dropped_doc_ids`: documents
    whose earlier vector is gone (edited or removed); `changed_scores`/`changed_index` (n_queries, w): each
    query's best new or edited documents, as rows of `doc_ids` (the current corpus, in id order). A query's
    merged ranking is exact down to its last surviving window entry, since no unchanged document outside the
    window can beat that entry; a query whose exact part holds fewer than k + its positives documents, or that has
    no earlier window, is returned for a full search. The merged rankings keep at most `width` documents."""
    n_q = len(query_ids)
    doc_row = pl.DataFrame({"doc_id": list(doc_ids)}, schema={"doc_id": pl.String}).with_row_index("doc_row")
    query_row = pl.DataFrame({"query_id": list(query_ids)}, schema={"query_id": pl.String}).with_row_index("q_row")
    dropped = pl.DataFrame({"doc_id": list(dropped_doc_ids)}, schema={"doc_id": pl.String})
    kept = (window.with_row_index("order").join(dropped, on="doc_id", how="anti")
            .join(query_row, on="query_id", how="inner").join(doc_row, on="doc_id", how="inner")
            .sort("order").with_columns(pl.int_range(pl.len()).over("q_row").alias("slot")))
    depth = int(kept["slot"].max()) + 1 if kept.height else 0
    kept_s = np.full((n_q, max(depth, 1)), -np.inf, dtype=np.float32)
    kept_i = np.zeros((n_q, max(depth, 1)), dtype=np.int64)
    q_rows, slots = kept["q_row"].to_numpy().astype(np.int64), kept["slot"].to_numpy().astype(np.int64)
    kept_s[q_rows, slots] = kept["score"].to_numpy()
    kept_i[q_rows, slots] = kept["doc_row"].to_numpy()
    has_window = np.zeros(n_q, dtype=bool)
    has_window[q_rows] = True
    last = np.maximum(np.isfinite(kept_s).sum(axis=1) - 1, 0)
    last_s, last_i = kept_s[np.arange(n_q), last], kept_i[np.arange(n_q), last]
    all_s = torch.from_numpy(np.concatenate([kept_s, changed_scores.astype(np.float32)], axis=1))
    all_i = torch.from_numpy(np.concatenate([kept_i, changed_index.astype(np.int64)], axis=1))
    s, i = order_by_score_then_index(all_s, all_i, all_s.shape[1])
    s, i = s.numpy()[:, :width].copy(), i.numpy()[:, :width].copy()
    exact = np.isfinite(s) & ((s > last_s[:, None]) | ((s == last_s[:, None]) & (i <= last_i[:, None])))
    s[~exact] = -np.inf
    enough = exact.sum(axis=1) >= k + positives_per_query
    ok = has_window & enough
    return WindowMerge(merged=np.flatnonzero(ok), top_scores=s[ok], top_index=i[ok], re_search=np.flatnonzero(~ok))


def candidates_from_ranking(teacher: str, query_ids: Sequence[str], doc_ids: Sequence[str], positives: pl.DataFrame,
                            top_scores: np.ndarray, top_index: np.ndarray,
                            pair_score: Callable[[np.ndarray, np.ndarray], np.ndarray], k: int
                            ) -> RankedCandidates:
    """Candidate and positive frames from given rankings (e.g. merged ones); `pair_score(q_rows, doc_rows)` gives
    the teacher's score of each positive pair."""
    pos_q, pos_d, _ = _positive_index(query_ids, doc_ids, positives)
    pos_scores = pair_score(pos_q, pos_d) if len(pos_q) else np.zeros(0, np.float32)
    c, p = _frames_from_ranking(teacher, query_ids, doc_ids, top_scores, top_index, pos_q, pos_d, pos_scores, k)
    return RankedCandidates(c, p, ranking_window(query_ids, doc_ids, top_scores, top_index))


def positives_per_query(query_ids: Sequence[str], doc_ids: Sequence[str], positives: pl.DataFrame) -> np.ndarray:
    """How many positives in the corpus each query has."""
    return np.array([len(s) for s in _positive_index(query_ids, doc_ids, positives)[2]], dtype=np.int64)


def tokenize_for_bm25(texts: Sequence[str]) -> list[list[str]]:
    """The tokenisation both the BM25 index and its queries use (lower-case words, English stop words)."""
    return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)


@dataclass
class DocTerms:
    """Documents as bm25s counts them: each one's length (its tokens after stop words) and its distinct terms
    (corpus vocabulary ids) with their frequencies, flat: document i's are [offsets[i], offsets[i + 1])."""

    lengths: np.ndarray  # (n,) int64
    offsets: np.ndarray  # (n + 1,) int64
    terms: np.ndarray  # (nnz,) int32
    tf: np.ndarray  # (nnz,) float32


def tokenize_bm25_batch(texts: Sequence[str], vocab: dict[str, int]) -> DocTerms:
    """bm25s' tokenization of a batch of documents (`tokenize_for_bm25`'s rules) as DocTerms; terms not yet in
    `vocab` get the next ids, in first-occurrence order (what one bm25s.tokenize call over the corpus gives)."""
    local_ids, local_vocab = bm25s.tokenize(list(texts), stopwords="en", show_progress=False)
    to_global = np.empty(len(local_vocab), dtype=np.int64)
    for token, lid in local_vocab.items():
        to_global[lid] = vocab.setdefault(token, len(vocab))
    lengths = np.fromiter((len(x) for x in local_ids), dtype=np.int64, count=len(local_ids))
    flat = np.fromiter(itertools.chain.from_iterable(local_ids), dtype=np.int64, count=int(lengths.sum()))
    width = max(len(local_vocab), 1)
    row = np.repeat(np.arange(len(local_ids), dtype=np.int64), lengths)
    pairs, tf = np.unique(row * width + flat, return_counts=True)  # (doc, term) pairs, sorted by doc
    offsets = np.zeros(len(local_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs // width, minlength=len(local_ids)), out=offsets[1:])
    return DocTerms(lengths=lengths, offsets=offsets, terms=to_global[pairs % width].astype(np.int32),
                    tf=tf.astype(np.float32))


def bm25_index_from_terms(batches: Iterable[DocTerms], vocab: dict[str, int], *, k1: float = 1.5, b: float = 0.75,
                          on_progress: Callable[[int], None] | None = None) -> bm25s.BM25:
    """The bm25s index of documents given as DocTerms batches (in corpus order) over `vocab` (token -> id): bm25s'
    own formulas (its `method`, idf and tf components) on the whole corpus's statistics, so the index is the one
    `bm25s.BM25.index` makes from the same tokens, without its per-document Python lists. Memory: the index (~12
    bytes per distinct term of a document while it is built) plus one batch. `on_progress(documents_done)`."""
    from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer

    index = bm25s.BM25(k1=k1, b=b)
    docs, tokens, freqs, lengths = [], [], [], []
    n_docs = 0
    for batch in batches:
        n = len(batch.lengths)
        docs.append((np.repeat(np.arange(n, dtype=np.int64), np.diff(batch.offsets)) + n_docs).astype(np.int32))
        tokens.append(batch.terms.astype(np.int32, copy=False))
        freqs.append(batch.tf.astype(np.float32, copy=False))
        lengths.append(batch.lengths.astype(np.int64, copy=False))
        n_docs += n
        if on_progress:
            on_progress(n_docs)
    # each list is joined and dropped before the next: at most one extra copy of one array at a time
    doc_idx = np.concatenate(docs or [np.zeros(0, np.int32)])
    del docs
    voc_idx = np.concatenate(tokens or [np.zeros(0, np.int32)])
    del tokens
    tf_array = np.concatenate(freqs or [np.zeros(0, np.float32)])
    del freqs
    doc_len = np.concatenate(lengths or [np.zeros(0, np.int64)])
    n_vocab = len(vocab)
    avg_doc_len = doc_len.mean() if n_docs else np.float64(0.0)  # as bm25s: mean of the token counts (float64)
    df = np.bincount(voc_idx, minlength=n_vocab)
    idf_fn = _select_idf_scorer(index.idf_method)
    idf = np.zeros(n_vocab, dtype=index.dtype)  # 0 for a term no document has any more (an edit removed it)
    for value in np.unique(df[df > 0]):  # bm25s' scalar idf, once per distinct document frequency
        idf[df == value] = idf_fn(int(value), N=n_docs)
    scores = np.empty(len(tf_array), dtype=index.dtype)
    tfc_fn = _select_tfc_scorer(index.method)
    for start in range(0, len(tf_array), 1 << 22):  # float64 temporaries of 4M entries at a time
        block = slice(start, start + (1 << 22))
        tfc = tfc_fn(tf_array=tf_array[block], l_d=doc_len[doc_idx[block]], l_avg=avg_doc_len, k1=index.k1,
                     b=index.b, delta=index.delta)
        scores[block] = idf[voc_idx[block]] * tfc
    del tf_array
    # CSC by term (bm25s' layout): a stable sort keeps each term's documents in corpus order
    order = np.argsort(voc_idx, kind="stable")
    del voc_idx
    data = scores[order]
    del scores
    indices = doc_idx[order]
    del order, doc_idx
    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    index.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}
    index.nonoccurrence_array = None  # only the bm25l / bm25+ methods have one
    vocab_dict = dict(vocab)
    if "" not in vocab_dict:  # as bm25s.BM25.index(create_empty_token=True)
        vocab_dict[""] = max(vocab_dict.values(), default=-1) + 1
    index.vocab_dict = vocab_dict
    index.unique_token_ids_set = set(vocab_dict.values())
    return index


def build_bm25_index(doc_texts: Sequence[str] | Iterable[Sequence[str]], *, k1: float = 1.5, b: float = 0.75,
                     batch_size: int = 65536, on_progress: Callable[[int], None] | None = None) -> bm25s.BM25:
    """Index documents for BM25 (the paper's sparse teacher): the index bm25s builds, built in bounded batches.

    `doc_texts` is a sequence of texts or an iterable of batches of texts (e.g. read from a parquet file batch by
    batch); each batch is tokenized (`tokenize_bm25_batch`) and indexed (`bm25_index_from_terms`)."""
    vocab: dict[str, int] = {}
    return bm25_index_from_terms((tokenize_bm25_batch(t, vocab) for t in _text_batches(doc_texts, batch_size)),
                                 vocab, k1=k1, b=b, on_progress=on_progress)


def _text_batches(doc_texts, batch_size: int) -> Iterator[Sequence[str]]:
    """Batches of texts from a sequence of texts or an iterable of batches."""
    if isinstance(doc_texts, Sequence) and (not len(doc_texts) or isinstance(doc_texts[0], str)):
        for start in range(0, len(doc_texts), batch_size):
            yield doc_texts[start : start + batch_size]
        return
    yield from doc_texts


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
    """Top-k non-positive BM25 candidates per query, and the BM25 score of every positive.

    One query at a time (memory: one (n_docs,) score row); `on_progress(done, total)` every 256 queries."""
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
        known = [t for t in toks if t in index.vocab_dict and t != ""]
        scores = index.get_scores(known) if known else np.zeros(len(doc_ids), np.float32)  # (n_docs,)
        order = top_k_row_numpy(scores, width)  # by score, ties by lower row (= doc id order, see load_beir_folder)
        top_scores[qi], top_index[qi] = scores[order], order
        for j in by_query.get(qi, []):
            pos_scores[j] = scores[pos_d[j]]
        if on_progress and ((qi + 1) % 256 == 0 or qi + 1 == len(tokens)):
            on_progress(qi + 1, len(tokens))
    # BM25 gives 0 to documents sharing no term with the query: they are not candidates
    top_scores[top_scores <= 0] = -np.inf
    return _frames_from_ranking(
        teacher, query_ids, doc_ids, top_scores, top_index, pos_q, pos_d, pos_scores, k
    )
