"""Exact search on Ray: corpus shards held by actors, query blocks fanned out to every shard, per-shard top-k
merged. Shard boundaries fall on `doc_chunk` boundaries and query blocks are `query_chunk` rows, so every shard
multiplies exactly the blocks the local `exact_top_k` multiplies and the merge keeps its order (score descending,
equal scores by lower corpus row): the candidates are identical to the local path's."""

from __future__ import annotations

import math

import numpy as np
import torch

from retriever_assets.core.search import exact_top_k, order_by_score_then_index, pair_scores


def shard_bounds(n_docs: int, shards: int, doc_chunk: int) -> list[tuple[int, int]]:
    """[start, end) row ranges, at most `shards` of them, each a whole number of `doc_chunk` blocks but the last."""
    if n_docs == 0:
        return []
    rows = math.ceil(math.ceil(n_docs / shards) / doc_chunk) * doc_chunk
    return [(s, min(s + rows, n_docs)) for s in range(0, n_docs, rows)]


class CorpusShard:
    """A Ray actor holding the vectors of corpus rows [start, end) of one teacher's table."""

    def __init__(self, db_uri: str, storage_options: dict | None, table: str, doc_ids: list[str], start: int,
                 device: str):
        import lancedb

        from resources.storage import EmbeddingStore

        store = EmbeddingStore(lancedb.connect(db_uri, storage_options=storage_options or None), table)
        self.vectors = store.vectors("document", doc_ids)
        self.start, self.device = start, device

    def rows(self) -> int:
        return len(self.vectors)

    def top_k(self, queries: np.ndarray, k: int, query_chunk: int, doc_chunk: int) -> tuple[np.ndarray, np.ndarray]:
        scores, index = exact_top_k(queries, self.vectors, k, query_chunk=query_chunk, doc_chunk=doc_chunk,
                                    device=self.device)
        return scores, index + self.start

    def pair_scores(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Scores of (query vector i, global corpus row rows[i]) pairs whose rows lie in this shard."""
        return pair_scores(queries, self.vectors, np.arange(len(rows)), rows - self.start)


class ShardedSearch:
    """`search(query_vectors, width)` and `pair_score(query_vectors, q_idx, d_idx)` over corpus-shard actors."""

    def __init__(self, *, db_uri: str, storage_options: dict | None, table: str, doc_ids: list[str], shards: int,
                 query_chunk: int, doc_chunk: int, cpus_per_actor: float, gpus_per_actor: float):
        import ray

        self.query_chunk, self.doc_chunk = query_chunk, doc_chunk
        self.bounds = shard_bounds(len(doc_ids), shards, doc_chunk)
        actor = ray.remote(CorpusShard).options(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor,
                                                max_restarts=-1, max_task_retries=-1)
        device = "cuda" if gpus_per_actor else "cpu"
        self.actors = [actor.remote(db_uri, storage_options, table, doc_ids[s:e], s, device) for s, e in self.bounds]
        ray.get([a.rows.remote() for a in self.actors])  # fail here, not mid-search, if a shard cannot load

    def search(self, queries: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        import ray

        n = len(queries)
        width = min(width, self.bounds[-1][1] if self.bounds else 0)
        out_s = np.empty((n, width), dtype=np.float32)
        out_i = np.empty((n, width), dtype=np.int64)
        pending = []
        for q0 in range(0, n, self.query_chunk):
            block = ray.put(np.ascontiguousarray(queries[q0 : q0 + self.query_chunk], dtype=np.float32))
            pending.append((q0, [a.top_k.remote(block, width, self.query_chunk, self.doc_chunk) for a in self.actors]))
        for q0, refs in pending:
            parts = ray.get(refs)
            s = torch.from_numpy(np.concatenate([p[0] for p in parts], axis=1))
            i = torch.from_numpy(np.concatenate([p[1] for p in parts], axis=1))
            s, i = order_by_score_then_index(s, i, width)
            out_s[q0 : q0 + len(s)], out_i[q0 : q0 + len(s)] = s.numpy(), i.numpy()
        return out_s, out_i

    def pair_score(self, queries: np.ndarray, q_idx: np.ndarray, d_idx: np.ndarray) -> np.ndarray:
        import ray

        out = np.zeros(len(q_idx), dtype=np.float32)
        refs = []
        for actor, (s, e) in zip(self.actors, self.bounds, strict=True):
            mine = np.flatnonzero((d_idx >= s) & (d_idx < e))
            if len(mine):
                refs.append((mine, actor.pair_scores.remote(queries[q_idx[mine]], d_idx[mine])))
        for mine, ref in refs:
            out[mine] = ray.get(ref)
        return out

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
