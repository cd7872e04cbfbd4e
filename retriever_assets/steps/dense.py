"""The dense teacher: a SentenceTransformer whose vectors live in LanceDB, searched exactly or through an ANN index."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import polars as pl

from resources.artifacts import DatasetArtifacts
from resources.compute import ComputeResource
from resources.models import ModelsResource
from resources.storage import StorageResource
from retriever_assets.core import candidates as cand
from retriever_assets.core.encoding import (
    EmbeddingPlan,
    EncoderSpec,
    count_truncated,
    embed_in_chunks,
    embedding_cache_key,
    encode_texts,
    encoding_environment,
    item_texts,
    model_fingerprint,
    plan_embedding_update,
    resolve_model_path,
    truncation_limit,
)
from retriever_assets.core.search import ann_recall, exact_sample, rescore_top_k
from retriever_assets.steps.common import Log, ProgressLog
from retriever_assets.steps.teachers import CandidateRequest


class StaleEmbeddingsError(ValueError):
    """Stored vectors that the current teacher settings would not make (candidates would mix two models)."""


class DenseTeacher:
    """Embeds documents and training queries incrementally (content hash + cache key) and searches them by cosine."""

    scored_on_test = True  # its own nDCG@10 is on the leaderboard

    def __init__(self, spec: EncoderSpec, models: ModelsResource, compute: ComputeResource | None = None):
        self.spec, self.models = spec, models
        self.compute = compute or ComputeResource()

    def refresh(self, artifacts: DatasetArtifacts, corpus: pl.DataFrame, items: pl.DataFrame, *, batch_size: int,
                chunk_size: int, log: Log, texts=None) -> dict:
        return embed_dense_teacher(artifacts.storage, self.models, artifacts.dataset, self.spec, items,
                                   batch_size=batch_size, chunk_size=chunk_size, log=log, compute=self.compute,
                                   texts=texts)

    def candidates(self, artifacts: DatasetArtifacts, request: CandidateRequest, log: Log
                   ) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
        spec, r, ann = self.spec, request, request.ann
        phases: dict[str, float] = {}
        t0 = time.perf_counter()
        store = artifacts.storage.embedding_store(artifacts.dataset, spec.name)
        version = store.version()
        self.refuse_stale_vectors(store, r.doc_ids, r.query_ids)
        phases["check_cache_keys"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        q_vec = store.vectors("query", r.query_ids)  # (n_queries, dim)
        use_ann = r.search == "ann" or (r.search == "auto" and len(r.doc_ids) >= ann["min_docs"])
        if self.compute.is_ray and not use_ann:  # the driver holds the query vectors only; shards hold the corpus
            phases["read_vectors"] = time.perf_counter() - t0
            return self._sharded_candidates(artifacts, r, q_vec, version, log, phases)
        d_vec = store.vectors("document", r.doc_ids)  # (n_docs, dim): the one copy of the corpus vectors
        phases["read_vectors"] = time.perf_counter() - t0
        if use_ann and not spec.normalize:
            raise ValueError(f"teacher {spec.name!r}: the ANN index searches by cosine; its vectors are not "
                             "normalised, so use search='exact'")
        build = None
        if use_ann and self.compute.is_ray:  # the index is built by lance-ray tasks on the cluster
            from retriever_assets.distributed.index import vector_index_builder

            self.compute.ensure_connected()
            build = vector_index_builder(artifacts.storage.storage_options or None, workers=self.compute.actors)
        ann_fn, report = (None, {})
        if use_ann:
            t0 = time.perf_counter()
            ann_fn, report = _ann_search_with_recall_floor(store, r.doc_ids, q_vec, d_vec, ann, r.top_k, r.device,
                                                           log, build)
            phases["ann_index_and_recall_check"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        progress = ProgressLog(f"{spec.name}: searched", len(r.query_ids), log, unit="queries")
        c, p = cand.dense_candidates(spec.name, r.query_ids, q_vec, r.doc_ids, d_vec, r.positives, k=r.top_k,
                                     device=r.device, query_chunk=r.query_chunk, doc_chunk=r.doc_chunk, search=ann_fn,
                                     on_progress=progress.update)
        progress.finish()
        phases["search"] = time.perf_counter() - t0
        search = "exact" if not use_ann else "ann" if ann_fn is not None else "exact (ANN recall under the floor)"
        return c, p, {"search": search, "lancedb_table_version": version} | report | {
            "phase_seconds": {k: round(v, 3) for k, v in phases.items()}}

    def current_cache_keys(self) -> dict[str, str]:
        """The cache keys vectors made now would carry (no model load: the weights are fingerprinted on disk)."""
        path = resolve_model_path(self.spec.model, cache_dir=Path(self.models.model_cache_dir))
        device = (ray_device(self.models, self.compute) if self.compute.is_ray else self.models.resolved_device())
        return teacher_cache_keys(self.spec, model_fingerprint(path, self.spec.revision), device)

    def refuse_stale_vectors(self, store, doc_ids: list[str], query_ids: list[str]) -> None:
        """Every vector searched must come from the current teacher settings: after a teacher change of the same
        dimension (or a run killed between chunk commits) a table can hold vectors of two models."""
        keys = self.current_cache_keys()
        wanted = pl.DataFrame({"item_id": [f"d:{d}" for d in doc_ids] + [f"q:{q}" for q in query_ids]})
        index = store.stored_index().join(wanted, on="item_id", how="semi")
        stale = index.filter(pl.col("cache_key") != pl.col("role").replace_strict(keys, default=None))
        if stale.height:
            example = stale.row(0, named=True)
            raise StaleEmbeddingsError(
                f"{store.name}: {stale.height:,} of {index.height:,} vectors were made with other teacher settings "
                f"or another environment (e.g. {example['item_id']!r} has cache key {example['cache_key']}, the "
                f"current {example['role']} key is {keys[example['role']]}): materialize teacher_embeddings for "
                "this dataset again before candidate_lists")

    def _sharded_candidates(self, artifacts: DatasetArtifacts, r: CandidateRequest, q_vec: np.ndarray,
                            version: int | None, log: Log, phases: dict[str, float]
                            ) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
        """Exact search by corpus-shard actors on Ray (identical candidates to the local exact search)."""
        from retriever_assets.distributed.search import ShardedSearch

        storage, compute = artifacts.storage, self.compute
        compute.ensure_connected()
        t0 = time.perf_counter()
        sharded = ShardedSearch(db_uri=storage.lancedb_root(), storage_options=storage.storage_options or None,
                                table=storage.table_name(artifacts.dataset, self.spec.name), doc_ids=r.doc_ids,
                                shards=compute.actors, query_chunk=r.query_chunk, doc_chunk=r.doc_chunk,
                                cpus_per_actor=compute.cpus_per_actor, gpus_per_actor=compute.actor_gpus())
        phases["load_shards"] = time.perf_counter() - t0
        log(f"{self.spec.name}: exact search on Ray over {len(sharded.bounds)} corpus shards")
        t0 = time.perf_counter()
        try:
            c, p = cand.dense_candidates(self.spec.name, r.query_ids, q_vec, r.doc_ids, None, r.positives,
                                         k=r.top_k, search=sharded.search, pair_score=sharded.pair_score)
        finally:
            sharded.close()
        phases["search"] = time.perf_counter() - t0
        return c, p, {"search": "exact (ray shards)", "ray_shards": len(sharded.bounds),
                      "lancedb_table_version": version,
                      "phase_seconds": {k: round(v, 3) for k, v in phases.items()}}


def teacher_cache_keys(spec: EncoderSpec, fingerprint: str, device: str) -> dict[str, str]:
    """The cache key of each role's vectors for this teacher on `device` (weights, settings, environment)."""
    env = encoding_environment(spec, device)
    return {role: embedding_cache_key(spec, fingerprint, role, env) for role in ("document", "query")}


def ray_device(models: ModelsResource, compute: ComputeResource) -> str:
    """The device kind Ray encoder actors run on: CUDA when they get GPUs, unless RETRIEVER_DEVICE says cpu."""
    if models.device.startswith("cpu") or not compute.actor_gpus():
        return "cpu"
    return "cuda"


def embed_dense_teacher(
    storage: StorageResource,
    models: ModelsResource,
    dataset: str,
    spec: EncoderSpec,
    items: pl.DataFrame,
    *,
    batch_size: int,
    chunk_size: int,
    log: Log,
    compute: ComputeResource | None = None,
    texts=None,
) -> dict:
    """Embed only new or changed items (content hash + cache key), delete removed ones; locally one commit per
    chunk (a killed run resumes after the last), on Ray one commit for the whole update.

    `items` are item_id, role, content_hash (and title, text unless `texts` is given: `texts.attach(chunk)` adds a
    chunk's titles and texts, so only one chunk's texts exist at a time)."""
    start = time.perf_counter()
    store = storage.embedding_store(dataset, spec.name)
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    model, path = models.load(spec)
    phases["load_model"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fingerprint = model_fingerprint(path, spec.revision)
    phases["fingerprint_weights"] = time.perf_counter() - t0
    device = ray_device(models, compute) if compute is not None and compute.is_ray else models.resolved_device()
    keys = teacher_cache_keys(spec, fingerprint, device)
    dim = model.get_embedding_dimension()
    if store.dimension() not in (None, dim):
        log(f"{spec.name}: vector dimension changed ({store.dimension()} -> {dim}); rebuilding the table")
        store.reset()
    t0 = time.perf_counter()
    plan: EmbeddingPlan = plan_embedding_update(items, store.stored_index(), keys)
    # documents in corpus (id) order, then queries: the order the texts are read in
    plan = dataclasses.replace(plan, to_embed=plan.to_embed.sort("role", "item_id"))
    phases["plan"] = time.perf_counter() - t0
    log(f"{spec.name}: {plan.to_embed.height} to embed, {len(plan.to_delete)} to delete, {plan.unchanged} unchanged")
    store.delete(plan.to_delete)
    limit = truncation_limit(model)  # None: the model embeds every token (e.g. a StaticEmbedding without truncation)
    counts_truncation = limit is not None
    truncated = {"items": 0, "seconds": 0.0}

    def chunk_texts(chunk: pl.DataFrame) -> list[str]:
        if texts is not None:
            chunk = texts.attach(chunk)
        strings = item_texts(spec, chunk)
        if counts_truncation:  # per chunk: tokenizing every pending text at once held GiBs at 1M documents
            t = time.perf_counter()
            prompt = spec.prompt(chunk["role"][0])
            truncated["items"] += count_truncated(model.tokenizer, [prompt + x for x in strings], limit)
            truncated["seconds"] += time.perf_counter() - t
        return strings

    def encode(texts, role):
        return encode_texts(model, spec, texts, role, batch_size=batch_size)

    def write(chunk: pl.DataFrame, vectors: np.ndarray):
        chunk = chunk.with_columns(cache_key=pl.col("role").replace_strict(keys))
        stored = chunk["stored"].to_numpy()
        if stored.any():  # new versions of stored items replace them (merge_insert by item_id)
            store.write(chunk.filter(pl.col("stored")), vectors[stored], model=path)
        if not stored.all():  # items the table has never seen are appended
            store.write(chunk.filter(~pl.col("stored")), vectors[~stored], model=path, new=True)

    progress = ProgressLog(f"{spec.name}: embedded", plan.to_embed.height, log, unit="items")
    t0 = time.perf_counter()
    ray_report: dict = {}
    if compute is not None and compute.is_ray:
        from retriever_assets.distributed.embed import embed_on_ray

        compute.ensure_connected()
        ray_report = embed_on_ray(
            plan.to_embed.with_columns(cache_key=pl.col("role").replace_strict(keys)), spec=spec, model_label=path,
            dim=dim, db_uri=storage.lancedb_root(), table=store.name, table_exists=store.version() is not None,
            storage_options=storage.storage_options or None, cache_dir=Path(models.model_cache_dir),
            batch_size=batch_size, actors=compute.actors, cpus_per_actor=compute.cpus_per_actor,
            gpus_per_actor=compute.actor_gpus(), log=log, device=device,
            texts=chunk_texts, rows_per_block=chunk_size)
        embedded = plan.to_embed.height
        phases.update(ray_report.pop("ray_phase_seconds", {}))
    else:
        embedded = embed_in_chunks(plan, encode, write, chunk_size=chunk_size, texts=chunk_texts,
                                   on_progress=lambda done, total, seconds: progress.update(done))
    progress.finish()
    phases["encode_and_write"] = time.perf_counter() - t0 - truncated["seconds"]
    if counts_truncation:
        phases["count_truncated"] = truncated["seconds"]
    if embedded > 10 * chunk_size and not ray_report:  # Ray writes few large fragments in one commit
        t0 = time.perf_counter()
        store.optimize()
        phases["optimize_table"] = time.perf_counter() - t0
    return {
        "teacher": spec.name,
        "kind": "dense",
        "model": path,
        "fingerprint": fingerprint,
        "embedded": embedded,
        "deleted": len(plan.to_delete),
        "unchanged": plan.unchanged,
        "truncated_items": truncated["items"] if counts_truncation else None,  # None: the model never truncates
        "device": device,
        "dtype": spec.dtype(device),
        "dimension": dim,
        "table": store.name,
        "table_version": store.version(),
        "seconds": round(time.perf_counter() - start, 2),
        "items_per_second": round(embedded / max(time.perf_counter() - start, 1e-9), 1),
        "backend": spec.backend,
        "phase_seconds": {k: round(v, 3) for k, v in phases.items()},
        "compute": compute.describe() if compute is not None else {"backend": "local"},
    } | ray_report



def _ann_search(store, doc_ids: list[str] | dict[str, int], doc_vectors: np.ndarray, ann: dict, log: Log,
                build=None, *, nprobes: int | None = None, state: str | None = None):
    """A `search(query_vectors, width)` through the table's vector index, mapping item ids to doc rows.

    The index proposes width * max(refine_factor, 1) candidates and their scores are always computed exactly from
    the document vectors already in memory (`rescore_top_k`): the index's own distances are quantized (IVF_RQ), and
    the positives' scores are exact, so the mining rules would compare unlike numbers. With a refine factor the
    index only has to find the neighbourhood: 1.5x faster than LanceDB's own refine, which re-reads full vectors
    from the table, at the same recall (docs/benchmarks.md, 1M documents).
    """
    if state is None:
        state = store.ensure_vector_index(build=build)
        log(f"{store.name}: vector index {state}")
    row = doc_ids if isinstance(doc_ids, dict) else {f"d:{d}": i for i, d in enumerate(doc_ids)}
    refine = int(ann["refine_factor"] or 0)
    probes = int(nprobes or ann["nprobes"])

    def search(query_vectors: np.ndarray, width: int):
        _, items = store.search_documents(query_vectors, width * max(refine, 1), nprobes=probes)
        index = np.array([[row.get(i, -1) if i is not None else -1 for i in r] for r in items], dtype=np.int64)
        # exact cosines, best `width` first; a document no longer in the corpus (-1) is an empty slot (-inf)
        scores, index = rescore_top_k(query_vectors, doc_vectors, index, width)
        return scores, np.where(index < 0, 0, index)

    return search, {"ann_index": state, "ann_nprobes": probes, "ann_refine_factor": refine,
                    "ann_refine": "exact cosines in memory"}


def _ann_search_with_recall_floor(store, doc_ids: list[str], q_vec: np.ndarray, d_vec: np.ndarray, ann: dict,
                                  k: int, device: str, log: Log, build=None):
    """The ANN search, checked before it is used: recall@k against exact search on `recall_sample` queries. Under
    `recall_floor` the search is widened (nprobes doubled, up to about every IVF partition) and checked again;
    when no width reaches the floor, the candidates are searched exactly. Returns (search, or None for exact,
    report); the report carries `ann_warning` when the first measured recall was under the floor."""
    floor, probes = float(ann.get("recall_floor") or 0.0), int(ann["nprobes"])
    most = max(probes, 2 * int(np.ceil(np.sqrt(max(len(doc_ids), 1)))))  # LanceDB's default: sqrt(rows) partitions
    state = store.ensure_vector_index(build=build)
    log(f"{store.name}: vector index {state}")
    rows = {f"d:{d}": i for i, d in enumerate(doc_ids)}
    checked = exact_sample(q_vec, d_vec, k, ann["recall_sample"], device)
    history: list[dict] = []
    while True:
        search, report = _ann_search(store, rows, d_vec, ann, log, nprobes=probes, state=state)
        measured = ann_recall(q_vec, d_vec, search, k, ann["recall_sample"], device, checked=checked)
        history.append({"nprobes": probes, "recall_at_k": measured["ann_recall_at_k"]})
        log(f"{store.name}: ANN recall@{k} {measured['ann_recall_at_k']:.4f} at nprobes {probes} on "
            f"{measured['ann_recall_queries']} queries checked exactly (floor {floor})")
        if measured["ann_recall_at_k"] >= floor or probes >= most:
            break
        probes = min(probes * 2, most)
    report |= measured | {"ann_recall_floor": floor, "ann_recall_checks": history}
    first = history[0]
    if measured["ann_recall_at_k"] < floor:
        report["ann_warning"] = (f"{store.name}: ANN recall@{k} {first['recall_at_k']:.4f} is under the floor {floor} "
                                 f"and stays under it at nprobes {probes} ({measured['ann_recall_at_k']:.4f}): the "
                                 "candidates are searched exactly instead")
        return None, report
    if first["recall_at_k"] < floor:
        report["ann_warning"] = (f"{store.name}: ANN recall@{k} {first['recall_at_k']:.4f} at nprobes "
                                 f"{first['nprobes']} is under the floor {floor}: widened to nprobes {probes} "
                                 f"(recall {measured['ann_recall_at_k']:.4f})")
    return search, report
