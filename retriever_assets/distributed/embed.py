"""Embedding on Ray: a Ray Data actor pool encodes (each actor loads the model once), lance-ray writes the
fragments in parallel, and the table gets ONE commit: a `create`, or for an incremental update a staging table
merged into the embeddings table with one `merge_insert`."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from retriever_assets.core.encoding import EncoderSpec, encode_texts

EMBED_COLUMNS = ["item_id", "role", "content_hash", "cache_key", "text"]
BLOCK_SCHEMA = pa.schema([(c, pa.string()) for c in EMBED_COLUMNS])  # the blocks encoder actors read


def embedding_schema(dim: int) -> pa.Schema:
    """The embeddings table's schema (the same as EmbeddingStore.write produces)."""
    return pa.schema([("item_id", pa.string()), ("role", pa.string()), ("content_hash", pa.string()),
                      ("cache_key", pa.string()), ("model", pa.string()),
                      ("vector", pa.list_(pa.float32(), dim))])


class BatchEncoder:
    """A Ray Data actor: loads the teacher once, then encodes batches of (role, text) rows into vectors.

    Each role is encoded with its own prompt by exactly the `model.encode` call the local path makes.
    """

    def __init__(self, spec: dict, cache_dir: str, batch_size: int, model_label: str, dim: int,
                 device: str = "cpu"):
        from retriever_assets.core.encoding import load_sentence_transformer

        self.spec = EncoderSpec(**spec)
        # the driver chose the device kind (it is part of the cache key); Ray sets CUDA_VISIBLE_DEVICES per actor
        device = "cuda" if device.startswith("cuda") else "cpu"
        self.model, _ = load_sentence_transformer(self.spec, device=device, cache_dir=Path(cache_dir))
        self.batch_size, self.model_label, self.schema = batch_size, model_label, embedding_schema(dim)

    def __call__(self, batch: pa.Table) -> pa.Table:
        roles = np.asarray(batch.column("role").to_pylist(), dtype=object)
        texts = batch.column("text").to_pylist()
        dim = self.schema.field("vector").type.list_size
        vectors = np.zeros((batch.num_rows, dim), dtype=np.float32)
        for role in ("document", "query"):
            rows = np.flatnonzero(roles == role)
            if len(rows):
                vectors[rows] = encode_texts(self.model, self.spec, [texts[i] for i in rows], role,
                                             batch_size=self.batch_size)
        return pa.table({
            "item_id": batch.column("item_id"), "role": batch.column("role"),
            "content_hash": batch.column("content_hash"), "cache_key": batch.column("cache_key"),
            "model": pa.array([self.model_label] * batch.num_rows, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
        }, schema=self.schema)


def embed_on_ray(
    items: pl.DataFrame,  # item_id, role, content_hash, cache_key, text: what the plan says to embed
    *,
    spec: EncoderSpec,
    model_label: str,
    dim: int,
    db_uri: str,
    table: str,
    table_exists: bool,
    storage_options: dict | None,
    cache_dir: Path,
    batch_size: int,
    actors: int,
    cpus_per_actor: float,
    gpus_per_actor: float,
    rows_per_block: int = 512,
    log=print,
    device: str = "cpu",
    texts=None,
) -> dict:
    """Encode `items` on the cluster (on `device`: "cpu" or "cuda", chosen by the driver) and write them to
    `<db_uri>/<table>.lance` in one commit. `texts(frame)` makes the strings the encoder sees (the teacher's
    document template); it runs block by block, and each block is put into the object store as it is made.

    Returns what happened: rows written, blocks, the staging table used (if any) and seconds per phase.
    """
    import lance
    import lance_ray
    import lancedb
    import ray.data

    phases: dict[str, float] = {}
    if items.height == 0:
        return {"ray_rows": 0, "ray_blocks": 0, "ray_phase_seconds": {}}
    t0 = time.perf_counter()
    blocks = max(actors, math.ceil(items.height / rows_per_block))
    step = math.ceil(items.height / blocks)
    # blocks cut here, not by a repartition task: with encoders holding every CPU, such a task would never run
    def blocks_of_texts():
        for offset in range(0, items.height, step):
            block = items.slice(offset, step)
            if texts is not None:  # one role per call (the texts function reads the block's first role)
                block = pl.concat([part.with_columns(text=pl.Series(texts(part), dtype=pl.String))
                                   for part in block.partition_by("role", maintain_order=True)])
            yield block.select(EMBED_COLUMNS).to_arrow().cast(BLOCK_SCHEMA)

    # each block goes to the object store as soon as it is made, and the driver drops its own copy: the driver holds
    # the corpus once (the step's frame) plus one block of formatted texts, never the whole set twice. (A staged
    # parquet read by Ray Data would need a CPU for its file-listing task, which encoders holding every CPU starve.)
    refs = [ray.put(block) for block in blocks_of_texts()]
    n_blocks = len(refs)
    data = ray.data.from_arrow_refs(refs)
    del refs
    encoded = data.map_batches(
        BatchEncoder,
        fn_constructor_kwargs={"spec": spec.__dict__, "cache_dir": str(cache_dir.resolve()), "batch_size": batch_size,
                               "model_label": model_label, "dim": dim, "device": device},
        batch_size=rows_per_block,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
        # Ray Data's actor pools restart an actor lost with its node elsewhere and retry its batches
        # (max_restarts=-1, max_task_retries=-1 by default); write tasks are retried like any Ray task
    )
    schema = embedding_schema(dim)
    target = table if not table_exists else f"{table}__staging"
    uri = f"{db_uri.rstrip('/')}/{target}.lance"
    log(f"{spec.name}: encoding {items.height} items on Ray ({actors} actors, {n_blocks} blocks) -> {uri}")
    # the write tasks only move bytes: they take no CPU slot, so encoders holding every CPU cannot starve them
    lance_ray.write_lance(encoded, uri, schema=schema, mode="overwrite" if table_exists else "create",
                          storage_options=storage_options or None, ray_remote_args={"num_cpus": 0})
    phases["encode_and_write_fragments"] = time.perf_counter() - t0
    report = {"ray_rows": items.height, "ray_blocks": n_blocks, "ray_phase_seconds": phases}
    if table_exists:
        t0 = time.perf_counter()
        db = lancedb.connect(db_uri, storage_options=storage_options or None)
        staged = lance.dataset(uri, storage_options=storage_options or None)
        (db.open_table(table).merge_insert("item_id").when_matched_update_all().when_not_matched_insert_all()
         .execute(staged.scanner().to_reader()))
        db.drop_table(target)
        phases["merge_insert"] = time.perf_counter() - t0
        report["ray_staging_table"] = target
    return report
