"""Export mined negatives in the layouts trainers read: sentence-transformers n-tuples and FlagEmbedding JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl


def ntuple_rows(
    negatives: pl.DataFrame, positives: pl.DataFrame, query_text: dict[str, str], doc_text: dict[str, str], n: int
) -> list[dict[str, str]]:
    """sentence-transformers n-tuple layout: anchor, positive, negative_1..negative_n (one row per positive).

    The layout has a fixed width, so queries with fewer than n negatives are left out here (they are still
    in the FlagEmbedding export and in training, which groups them by count).
    """
    negs = negatives.sort("query_id", "slot").group_by("query_id", maintain_order=True).agg(pl.col("doc_id"))
    neg_map = dict(zip(negs["query_id"].to_list(), negs["doc_id"].to_list(), strict=True))
    rows = []
    for qid, pid in positives.sort("query_id", "doc_id").iter_rows():
        ids = neg_map.get(qid, [])
        if len(ids) < n:
            continue
        row = {"anchor": query_text[qid], "positive": doc_text[pid]}
        row |= {f"negative_{i}": doc_text[d] for i, d in enumerate(ids[:n], start=1)}
        rows.append(row)
    return rows


def to_ntuple_dataset(rows: list[dict[str, str]], n: int):
    """A `datasets.Dataset` in the n-tuple layout (columns fixed even when empty)."""
    from datasets import Dataset, Features, Value

    columns = ["anchor", "positive"] + [f"negative_{i}" for i in range(1, n + 1)]
    features = Features({c: Value("string") for c in columns})
    return Dataset.from_dict({c: [r[c] for r in rows] for c in columns}, features=features)


def to_triplet_dataset(rows: list[dict[str, str]], n: int):
    """sentence-transformers triplet layout (anchor, positive, negative): one row per kept negative."""
    from datasets import Dataset, Features, Value

    triplets = [(r["anchor"], r["positive"], r[f"negative_{i}"]) for r in rows for i in range(1, n + 1)
                if r.get(f"negative_{i}")]
    features = Features({c: Value("string") for c in ("anchor", "positive", "negative")})
    return Dataset.from_dict({"anchor": [t[0] for t in triplets], "positive": [t[1] for t in triplets],
                              "negative": [t[2] for t in triplets]}, features=features)


def write_flag_jsonl(
    path: Path, negatives: pl.DataFrame, positives: pl.DataFrame, query_text: dict[str, str], doc_text: dict[str, str]
) -> int:
    """FlagEmbedding fine-tuning layout: one line per query, {"query", "pos": [...], "neg": [...]}. Returns lines."""
    negs = negatives.sort("query_id", "slot").group_by("query_id", maintain_order=True).agg(pl.col("doc_id"))
    neg_map = dict(zip(negs["query_id"].to_list(), negs["doc_id"].to_list(), strict=True))
    pos = positives.sort("query_id", "doc_id").group_by("query_id", maintain_order=True).agg(pl.col("doc_id"))
    lines = 0
    with path.open("w", encoding="utf-8") as fh:
        for qid, pids in pos.iter_rows():
            record = {
                "query": query_text[qid],
                "pos": [doc_text[p] for p in pids],
                "neg": [doc_text[d] for d in neg_map.get(qid, [])],
            }
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            lines += 1
    return lines
