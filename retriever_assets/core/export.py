"""Export mined negatives in the layouts trainers read: sentence-transformers n-tuples and triplets
(`datasets.Dataset`s) and FlagEmbedding JSONL, each written batch by batch: only one batch of rows exists as
Python strings at a time, and the texts come from lookups that hold the documents the export names, not the corpus.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa

BATCH_QUERIES = 2048  # queries per written batch


def _grouped(negatives: pl.DataFrame, positives: pl.DataFrame) -> pl.DataFrame:
    """One row per training query: its positives (doc_id order) and negatives (slot order) as lists of doc ids."""
    negs = negatives.sort("query_id", "slot").group_by("query_id", maintain_order=True).agg(neg=pl.col("doc_id"))
    pos = positives.sort("query_id", "doc_id").group_by("query_id", maintain_order=True).agg(pos=pl.col("doc_id"))
    return pos.join(negs, on="query_id", how="left", maintain_order="left").with_columns(
        pl.col("neg").fill_null(pl.lit([], dtype=pl.List(pl.String))))


def _query_batches(negatives: pl.DataFrame, positives: pl.DataFrame, batch_queries: int
                   ) -> Iterator[list[tuple[str, list[str], list[str]]]]:
    grouped = _grouped(negatives, positives)
    for offset in range(0, grouped.height, batch_queries):
        yield list(grouped.slice(offset, batch_queries).select("query_id", "pos", "neg").iter_rows())


def ntuple_schema(n: int) -> pa.Schema:
    """anchor, positive, negative_1..negative_n: all strings (the columns are fixed even when there is no row)."""
    return pa.schema([(c, pa.string()) for c in ["anchor", "positive"] + [f"negative_{i}" for i in range(1, n + 1)]])


def ntuple_batches(
    negatives: pl.DataFrame, positives: pl.DataFrame, query_text: dict[str, str], doc_text: dict[str, str], n: int,
    *, batch_queries: int = BATCH_QUERIES,
) -> Iterator[pa.RecordBatch]:
    """sentence-transformers n-tuple layout: anchor, positive, negative_1..negative_n (one row per positive).

    The layout has a fixed width, so queries with fewer than n negatives are left out here (they are still
    in the triplets, the FlagEmbedding export and in training, which groups them by count).
    """
    schema = ntuple_schema(n)
    for batch in _query_batches(negatives, positives, batch_queries):
        columns: dict[str, list[str]] = {c: [] for c in schema.names}
        for qid, pids, nids in batch:
            if len(nids) < n:
                continue
            for pid in pids:
                columns["anchor"].append(query_text[qid])
                columns["positive"].append(doc_text[pid])
                for i, d in enumerate(nids[:n], start=1):
                    columns[f"negative_{i}"].append(doc_text[d])
        yield pa.record_batch([pa.array(columns[c], pa.string()) for c in schema.names], schema=schema)


TRIPLET_SCHEMA = pa.schema([("anchor", pa.string()), ("positive", pa.string()), ("negative", pa.string())])


def triplet_batches(
    negatives: pl.DataFrame, positives: pl.DataFrame, query_text: dict[str, str], doc_text: dict[str, str], *,
    batch_queries: int = BATCH_QUERIES,
) -> Iterator[pa.RecordBatch]:
    """sentence-transformers triplet layout (anchor, positive, negative): one row per (positive, kept negative),
    queries short of n included."""
    for batch in _query_batches(negatives, positives, batch_queries):
        anchor, positive, negative = [], [], []
        for qid, pids, nids in batch:
            for pid in pids:
                for d in nids:
                    anchor.append(query_text[qid])
                    positive.append(doc_text[pid])
                    negative.append(doc_text[d])
        yield pa.record_batch([pa.array(x, pa.string()) for x in (anchor, positive, negative)],
                              schema=TRIPLET_SCHEMA)


def save_dataset(batches: Iterable[pa.RecordBatch], schema: pa.Schema, folder: Path) -> int:
    """Write record batches as a `datasets.Dataset` at `folder` (`datasets.load_from_disk`); returns its rows.

    The batches go to an Arrow stream file first, which `datasets` memory-maps and saves: no batch is held after
    it is written, however many rows there are.
    """
    import datasets

    datasets.disable_progress_bars()  # "Saving the dataset" bars are noise on a user's console and in the run log
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(folder.name + ".arrow.tmp")
    rows = 0
    with pa.OSFile(str(staging), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
    try:
        dataset = datasets.Dataset.from_file(str(staging), in_memory=False)
        dataset.save_to_disk(str(folder))
        del dataset
    finally:
        staging.unlink(missing_ok=True)
    return rows


def write_flag_jsonl(
    path: Path, negatives: pl.DataFrame, positives: pl.DataFrame, query_text: dict[str, str], doc_text: dict[str, str],
    *, batch_queries: int = BATCH_QUERIES,
) -> int:
    """FlagEmbedding fine-tuning layout: one line per query, {"query", "pos": [...], "neg": [...]}. Returns lines."""
    lines = 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for batch in _query_batches(negatives, positives, batch_queries):
            fh.writelines(json.dumps({"query": query_text[qid], "pos": [doc_text[p] for p in pids],
                                      "neg": [doc_text[d] for d in nids]}, ensure_ascii=False) + "\n"
                          for qid, pids, nids in batch)
            lines += len(batch)
    tmp.replace(path)
    return lines
