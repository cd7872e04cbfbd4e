"""Exact top-k search by chunked matrix multiply, with memory bounded by the chunk sizes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def exact_top_k(
    queries: np.ndarray | torch.Tensor,
    docs: np.ndarray | torch.Tensor,
    k: int,
    *,
    query_chunk: int = 4096,
    doc_chunk: int = 65536,
    device: str = "cpu",
    on_progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner-product neighbours of each query; returns (scores, doc indices), both (n_queries, k).

    Memory is O(query_chunk * (doc_chunk + k)) on top of the inputs, whatever the corpus size: each
    query chunk keeps a running top-k that is merged with every document chunk's top-k. The inputs are only read
    (a float32 numpy matrix is used in place, never copied). `on_progress(queries_done)` after every block, with
    the queries of the current chunk counted by the share of documents searched.
    """
    q = torch.as_tensor(queries, dtype=torch.float32)
    d = torch.as_tensor(docs, dtype=torch.float32)
    n_q, n_d = q.shape[0], d.shape[0]
    k = min(k, n_d)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    # The blocks are multiplied in float32 (float16 on CUDA) to find each query's best k + margin documents; those
    # are then scored again in float64 and ranked by that score. BLAS rounds a float32 dot product differently with
    # the thread count and the block shapes, so without this the same vectors could rank 1-ulp ties differently in
    # this process and in a corpus-shard actor (distributed/search.py); with it, scores are correctly rounded
    # float32 values whatever the hardware, and every path ranks alike.
    final_k, k = k, min(n_d, k + (SCREEN_MARGIN_CUDA if device.startswith("cuda") else SCREEN_MARGIN))
    out_scores = np.empty((n_q, final_k), dtype=np.float32)
    out_index = np.empty((n_q, final_k), dtype=np.int64)
    with torch.inference_mode():
        for q0 in range(0, n_q, query_chunk):
            qc = q[q0 : q0 + query_chunk].to(device=device, dtype=dtype)
            best_s = torch.full((qc.shape[0], k), -torch.inf, device=device)
            best_i = torch.zeros((qc.shape[0], k), dtype=torch.int64, device=device)
            for d0 in range(0, n_d, doc_chunk):
                dc = d[d0 : d0 + doc_chunk].to(device=device, dtype=dtype)
                sims = (qc @ dc.T).float()  # (q_chunk, d_chunk)
                s, i = top_k_rows(sims, min(k, sims.shape[1]))
                if d0 == 0 and s.shape[1] == k:  # first chunk: nothing to merge with yet
                    best_s, best_i = s, i
                    continue
                merged_s = torch.cat([best_s, s], dim=1)  # (q_chunk, k + k')
                merged_i = torch.cat([best_i, i + d0], dim=1)
                best_s, best_i = order_by_score_then_index(merged_s, merged_i, k)
                if on_progress:
                    on_progress(q0 + int(qc.shape[0] * min(d0 + doc_chunk, n_d) / n_d))
            scores, index = rescore_exactly(q[q0 : q0 + query_chunk], d, best_i.cpu(), final_k)
            out_scores[q0 : q0 + qc.shape[0]], out_index[q0 : q0 + qc.shape[0]] = scores, index
            if on_progress:
                on_progress(q0 + qc.shape[0])
    return out_scores, out_index


SCREEN_MARGIN = 8  # extra float32 candidates per query re-scored in float64 (float16 on CUDA: more)
SCREEN_MARGIN_CUDA = 32


def rescore_exactly(queries: torch.Tensor, docs: torch.Tensor, index: torch.Tensor, k: int, *, block: int = 256
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Inner products of each query with its candidate rows computed in float64 and rounded to float32, the best
    k first (equal scores: lower row). Returns (scores, rows) as numpy arrays, (n, k)."""
    n = index.shape[0]
    out_s = np.empty((n, k), dtype=np.float32)
    out_i = np.empty((n, k), dtype=np.int64)
    for b in range(0, n, block):
        idx = index[b : b + block]
        sims = torch.einsum("qd,qmd->qm", queries[b : b + block].cpu().double(), docs.cpu()[idx].double()).float()
        s, i = order_by_score_then_index(sims, idx, k)
        out_s[b : b + len(idx)], out_i[b : b + len(idx)] = s.numpy(), i.numpy()
    return out_s, out_i


def order_by_score_then_index(scores: torch.Tensor, index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first k of each row by score descending, equal scores by lower index: (scores, index), both (n, k)."""
    index, perm = torch.sort(index, dim=1)  # index ascending ...
    scores = torch.gather(scores, 1, perm)
    scores, perm = torch.sort(scores, dim=1, descending=True, stable=True)  # ... kept among equal scores
    return scores[:, :k], torch.gather(index, 1, perm)[:, :k]


def top_k_rows(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic top-k of each row: score descending, equal scores by lower column (torch.topk leaves ties in
    an unspecified order and, at the k-th place, picks an unspecified one of them). Returns (scores, columns).

    No temporary of the block's size: whether equal scores straddle the cut is read from the (k+1)-th score."""
    if k == 0:
        return torch.topk(sims, 0, dim=1)
    s, i = torch.topk(sims, min(k + 1, sims.shape[1]), dim=1)
    # rows where more than k columns reach the k-th score (the (k+1)-th equals it): equal scores straddle the cut,
    # so sort those rows fully
    straddle = ((s[:, k] >= s[:, k - 1]).nonzero().squeeze(1) if s.shape[1] > k
                else torch.zeros(0, dtype=torch.int64, device=sims.device))
    s, i = s[:, :k], i[:, :k]
    if len(straddle):
        full_s, full_i = torch.sort(sims[straddle], dim=1, descending=True, stable=True)
        s[straddle], i[straddle] = full_s[:, :k], full_i[:, :k]
    return order_by_score_then_index(s, i, k)


def top_k_row_numpy(scores: np.ndarray, k: int) -> np.ndarray:
    """Columns of the k best scores of one row, score descending and equal scores by lower column (deterministic)."""
    k = min(k, len(scores))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    kth = scores[part].min()
    above = np.flatnonzero(scores > kth)
    at = np.flatnonzero(scores == kth)[: k - len(above)]  # the lowest columns among those tied at the cut
    chosen = np.concatenate([above, at])
    return chosen[np.lexsort((chosen, -scores[chosen]))]


def pair_scores(queries: np.ndarray, docs: np.ndarray, q_idx: np.ndarray, d_idx: np.ndarray) -> np.ndarray:
    """Inner product of the given (query, doc) index pairs: the teacher's score of each positive (in float64,
    rounded to float32, like the candidates' scores of `exact_top_k`)."""
    return np.einsum("ij,ij->i", queries[q_idx].astype(np.float64), docs[d_idx].astype(np.float64)).astype(np.float32)


def top_k_recall(approx_index: np.ndarray, exact_index: np.ndarray) -> float:
    """Mean share of each query's exact top-k that the approximate top-k found (indices; -1 = empty slot)."""
    if exact_index.size == 0:
        return 1.0
    hits = sum(len(set(a[a >= 0].tolist()) & set(e.tolist())) for a, e in zip(approx_index, exact_index, strict=True))
    return hits / exact_index.size


def rescore_top_k(
    queries: np.ndarray,  # (n, dim)
    docs: np.ndarray,  # (n_docs, dim)
    candidate_index: np.ndarray,  # (n, m) doc rows from an approximate search, -1 = empty slot
    k: int,
    *,
    query_chunk: int = 256,  # the gathered candidates are query_chunk x m x dim float64 (m = 190, d = 384: 150 MB)
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner products of each query with its m approximate candidates, best k first (ties: lower row).

    This is an ANN index's "refine" step done on vectors already in memory: the index only has to find the
    right neighbourhood (m = k * refine_factor candidates), the order and the scores are exact.
    Returns (scores (n, k) float32, -inf where fewer than k candidates; doc rows (n, k), -1 there).
    """
    n, m = candidate_index.shape
    width = min(k, m)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    rows = np.full((n, k), -1, dtype=np.int64)
    for q0 in range(0, n, query_chunk):
        idx = candidate_index[q0 : q0 + query_chunk]
        valid = idx >= 0
        sims = np.einsum("qd,qmd->qm", queries[q0 : q0 + query_chunk].astype(np.float64),
                         docs[np.where(valid, idx, 0)].astype(np.float64)).astype(np.float32)
        sims[~valid] = -np.inf
        order = np.lexsort((np.where(valid, idx, np.iinfo(np.int64).max), -sims), axis=1)[:, :width]
        top = np.take_along_axis(sims, order, axis=1)
        scores[q0 : q0 + query_chunk, :width] = top
        rows[q0 : q0 + query_chunk, :width] = np.where(np.isfinite(top), np.take_along_axis(idx, order, axis=1), -1)
    return scores, rows


def hits_by_query(query_index: np.ndarray, distance: np.ndarray, values: np.ndarray, n_queries: int, k: int,
                  fill) -> tuple[np.ndarray, np.ndarray]:
    """A vector index's flat hit list -> per-query matrices, nearest first: (distances (n, k) float32, +inf where
    a query has fewer than k hits; values (n, k), `fill` there). Hits beyond a query's k nearest are dropped."""
    order = np.lexsort((distance, query_index))
    qi, dist, vals = query_index[order], distance[order], values[order]
    slot = np.arange(len(qi)) - np.searchsorted(qi, qi, side="left")
    keep = slot < k
    out_dist = np.full((n_queries, k), np.inf, dtype=np.float32)
    out_vals = np.full((n_queries, k), fill, dtype=values.dtype)
    out_dist[qi[keep], slot[keep]] = dist[keep]
    out_vals[qi[keep], slot[keep]] = vals[keep]
    return out_dist, out_vals


def exact_sample(q_vec: np.ndarray, d_vec: np.ndarray, k: int, sample: int, device: str = "cpu"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, evenly spaced sample of query rows and their exact top-k doc rows: what ANN recall is checked
    against (computed once, however often the ANN search is re-measured)."""
    rows = (np.linspace(0, len(q_vec) - 1, num=min(sample, len(q_vec)), dtype=np.int64) if len(q_vec)
            else np.zeros(0, dtype=np.int64))
    if not len(rows):
        return rows, np.zeros((0, k), dtype=np.int64)
    return rows, exact_top_k(q_vec[rows], d_vec, k, device=device)[1]


def ann_recall(q_vec: np.ndarray, d_vec: np.ndarray, search, k: int, sample: int, device: str = "cpu", *,
               checked: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Recall@k of an approximate `search(query_vectors, k)` against exact search on a fixed, evenly spaced sample
    of queries (the ANN report of candidate_lists); `checked` = `exact_sample(...)` made earlier."""
    rows, exact = checked if checked is not None else exact_sample(q_vec, d_vec, k, sample, device)
    if not len(rows):
        return {"ann_recall_at_k": 1.0, "ann_recall_queries": 0}
    approx_scores, approx = search(q_vec[rows], k)
    approx = np.where(np.isfinite(approx_scores), approx, -1)
    return {"ann_recall_at_k": round(top_k_recall(approx, exact), 4), "ann_recall_queries": len(rows)}
