"""The dense teacher: a SentenceTransformer whose vectors live in LanceDB, searched exactly or through an ANN index."""

from __future__ import annotations

import dataclasses
import json
import shutil
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
from retriever_assets.core.search import ann_recall, exact_sample, exact_top_k, pair_scores, rescore_top_k
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
        """Searched in full, or, when the last search of this teacher saved its ranking windows and at most
        INCREMENTAL_MAX_SHARE of the documents changed since, by searching only the changed documents and merging
        them into those windows (exactly the full search's candidates; queries whose window an edit emptied too
        far are searched in full)."""
        spec, r, ann = self.spec, request, request.ann
        phases: dict[str, float] = {}
        t0 = time.perf_counter()
        store = artifacts.storage.embedding_store(artifacts.dataset, spec.name)
        version = store.version()
        searched = self.refuse_stale_vectors(store, r.doc_ids, r.query_ids)
        phases["check_cache_keys"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        q_vec = store.vectors("query", r.query_ids)  # (n_queries, dim)
        phases["read_query_vectors"] = time.perf_counter() - t0
        use_ann = r.search == "ann" or (r.search == "auto" and len(r.doc_ids) >= ann["min_docs"])
        windows = SearchWindows(artifacts.candidates_dir / "windows" / spec.name,
                                {"top_k": r.top_k, "reserve": WINDOW_RESERVE, "ann": use_ann})
        previous = windows.load()
        plan = previous and incremental_plan(previous, searched, len(r.doc_ids))
        if plan is None:
            ranked, report = self._full_search(artifacts, r, q_vec, use_ann, store, log, phases)
            report |= {"incremental": False, "incremental_note": "no earlier ranking windows with these settings"
                       if previous is None else f"over {INCREMENTAL_MAX_SHARE:.0%} of the documents changed"}
        else:
            ranked, report = self._merged_search(artifacts, r, q_vec, use_ann, store, previous, plan, log, phases)
        t0 = time.perf_counter()
        windows.save(ranked.window, searched)
        phases["save_windows"] = time.perf_counter() - t0
        return ranked.candidates, ranked.positives, {"lancedb_table_version": version} | report | {
            "phase_seconds": {k: round(v, 3) for k, v in phases.items()}}

    def _full_search(self, artifacts: DatasetArtifacts, r: CandidateRequest, q_vec: np.ndarray, use_ann: bool,
                     store, log: Log, phases: dict[str, float]) -> tuple[cand.RankedCandidates, dict]:
        """Every query of `r` against the whole corpus: exact, through the ANN index, or by Ray corpus shards."""
        spec, ann = self.spec, r.ann
        if self.compute.is_ray and not use_ann:  # the driver holds the query vectors only; shards hold the corpus
            return self._sharded_candidates(artifacts, r, q_vec, log, phases)
        t0 = time.perf_counter()
        d_vec = store.vectors("document", r.doc_ids)  # (n_docs, dim): the one copy of the corpus vectors
        phases["read_vectors"] = phases.get("read_vectors", 0.0) + time.perf_counter() - t0
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
        ranked = cand.dense_ranked_candidates(spec.name, r.query_ids, q_vec, r.doc_ids, d_vec, r.positives,
                                              k=r.top_k, reserve=WINDOW_RESERVE, device=r.device,
                                              query_chunk=r.query_chunk, doc_chunk=r.doc_chunk, search=ann_fn,
                                              on_progress=progress.update)
        progress.finish()
        phases["search"] = phases.get("search", 0.0) + time.perf_counter() - t0
        search = "exact" if not use_ann else "ann" if ann_fn is not None else "exact (ANN recall under the floor)"
        return ranked, {"search": search} | report

    def _merged_search(self, artifacts: DatasetArtifacts, r: CandidateRequest, q_vec: np.ndarray, use_ann: bool,
                       store, previous: tuple[pl.DataFrame, pl.DataFrame], plan: dict, log: Log,
                       phases: dict[str, float]) -> tuple[cand.RankedCandidates, dict]:
        """The changed documents searched and merged into the earlier windows; the rest searched in full."""
        spec, window = self.spec, previous[0]
        t0 = time.perf_counter()
        doc_row = {d: i for i, d in enumerate(r.doc_ids)}
        changed_rows = np.array(sorted(doc_row[d] for d in plan["changed_docs"]), dtype=np.int64)
        pos_rows = cand.positives_per_query(r.query_ids, r.doc_ids, r.positives)
        width = r.top_k + int(pos_rows.max(initial=0)) + WINDOW_RESERVE
        positive_docs = sorted(set(r.positives["doc_id"].to_list()) & doc_row.keys())
        read_rows = np.union1d(changed_rows, np.array([doc_row[d] for d in positive_docs], dtype=np.int64))
        d_part = store.vectors("document", [r.doc_ids[i] for i in read_rows])  # changed and positive docs only
        at = {int(row): j for j, row in enumerate(read_rows)}
        phases["read_vectors"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        q_rows = np.array([j for j, q in enumerate(r.query_ids) if q not in plan["changed_queries"]], dtype=np.int64)
        changed_part = d_part[[at[int(i)] for i in changed_rows]] if len(changed_rows) else None
        if changed_part is not None:
            s, i = exact_top_k(q_vec[q_rows], changed_part, width, query_chunk=r.query_chunk,
                               doc_chunk=r.doc_chunk, device=r.device)
            i = changed_rows[i]  # rows of the changed documents -> rows of the corpus
        else:
            s, i = np.zeros((len(q_rows), 0), np.float32), np.zeros((len(q_rows), 0), np.int64)
        merge = cand.merge_ranking_windows(window, [r.query_ids[j] for j in q_rows], r.doc_ids, plan["dropped_docs"],
                                           s, i, pos_rows[q_rows], k=r.top_k, width=width)
        merged_rows = q_rows[merge.merged]
        merged = cand.candidates_from_ranking(
            spec.name, [r.query_ids[j] for j in merged_rows], r.doc_ids, r.positives, merge.top_scores,
            merge.top_index, lambda qi, di: pair_scores(q_vec[merged_rows], d_part, qi,
                                                        np.array([at[int(x)] for x in di], dtype=np.int64)),
            r.top_k)
        phases["merge"] = time.perf_counter() - t0
        again = np.setdiff1d(np.arange(len(r.query_ids)), merged_rows)
        # the search the windows came from (the merge keeps what it found); a full search of some queries says its own
        report = {"search": "ann" if use_ann else "exact (ray shards)" if self.compute.is_ray else "exact"}
        parts = [merged]
        if len(again):
            sub = dataclasses.replace(r, query_ids=[r.query_ids[j] for j in again],
                                      query_texts=[r.query_texts[j] for j in again])
            full, report = self._full_search(artifacts, sub, q_vec[again], use_ann, store, log, phases)
            parts.append(full)
        ranked = _in_query_order(parts, r.query_ids)
        report |= {"incremental": True, "changed_documents": len(changed_rows), "removed_documents": plan["removed"],
                   "merged_queries": len(merged_rows), "searched_again": len(again)}
        log(f"{spec.name}: {len(changed_rows):,} new or edited and {plan['removed']:,} removed documents merged into "
            f"the ranking windows of {len(merged_rows):,} queries; {len(again):,} queries searched again in full")
        return ranked, report

    def current_cache_keys(self) -> dict[str, str]:
        """The cache keys vectors made now would carry (no model load: the weights are fingerprinted on disk)."""
        path = resolve_model_path(self.spec.model, cache_dir=Path(self.models.model_cache_dir))
        device = (ray_device(self.models, self.compute) if self.compute.is_ray else self.models.resolved_device())
        return teacher_cache_keys(self.spec, model_fingerprint(path, self.spec.revision), device)

    def refuse_stale_vectors(self, store, doc_ids: list[str], query_ids: list[str]) -> pl.DataFrame:
        """Every vector searched must come from the current teacher settings: after a teacher change of the same
        dimension (or a run killed between chunk commits) a table can hold vectors of two models. Returns the
        searched items' item_id, role, content_hash, cache_key."""
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
        return index

    def _sharded_candidates(self, artifacts: DatasetArtifacts, r: CandidateRequest, q_vec: np.ndarray, log: Log,
                            phases: dict[str, float]) -> tuple[cand.RankedCandidates, dict]:
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
            ranked = cand.dense_ranked_candidates(self.spec.name, r.query_ids, q_vec, r.doc_ids, None, r.positives,
                                                  k=r.top_k, reserve=WINDOW_RESERVE, search=sharded.search,
                                                  pair_score=sharded.pair_score)
        finally:
            sharded.close()
        phases["search"] = phases.get("search", 0.0) + time.perf_counter() - t0
        return ranked, {"search": "exact (ray shards)", "ray_shards": len(sharded.bounds)}


WINDOW_RESERVE = 16  # documents ranked past each query's candidates and positives and kept for the next search
INCREMENTAL_MAX_SHARE = 0.1  # a search after more of the documents changed than this share searches everything


class SearchWindows:
    """The last search of one teacher on one dataset: every query's ranking window (`window.parquet`) and the
    state of each vector searched (`items.parquet`: item_id, role, content_hash, cache_key), saved together
    (one folder, swapped in whole) with the settings they were made under."""

    def __init__(self, folder: Path, settings: dict):
        self.folder, self.settings = folder, settings

    def load(self) -> tuple[pl.DataFrame, pl.DataFrame] | None:
        """(window, items) of the last search, or None when there is none made with these settings."""
        state = self.folder / "settings.json"
        if not state.exists() or json.loads(state.read_text()) != self.settings:
            return None
        return pl.read_parquet(self.folder / "window.parquet"), pl.read_parquet(self.folder / "items.parquet")

    def save(self, window: pl.DataFrame, items: pl.DataFrame) -> None:
        staged, old = self.folder.with_name(self.folder.name + ".new"), self.folder.with_name(self.folder.name + ".old")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        window.write_parquet(staged / "window.parquet")
        items.select(ITEM_STATE).write_parquet(staged / "items.parquet")
        (staged / "settings.json").write_text(json.dumps(self.settings))
        shutil.rmtree(old, ignore_errors=True)
        if self.folder.exists():
            self.folder.rename(old)
        staged.rename(self.folder)
        shutil.rmtree(old, ignore_errors=True)


ITEM_STATE = ["item_id", "role", "content_hash", "cache_key"]


def incremental_plan(previous: tuple[pl.DataFrame, pl.DataFrame], searched: pl.DataFrame, n_docs: int
                     ) -> dict | None:
    """What changed since the last search (from the vectors' states): None when more than INCREMENTAL_MAX_SHARE
    of the documents did (a full search is then cheaper than the merge), else the new or edited documents
    (`changed_docs`), those whose earlier vector is gone (`dropped_docs`: edited or removed), the count removed and
    the queries whose vector changed (`changed_queries`)."""
    _, before = previous
    now = searched.select(ITEM_STATE)
    changed = now.join(before, on=ITEM_STATE, how="anti")
    removed = before.join(now, on="item_id", how="anti")
    docs = changed.filter(pl.col("role") == "document")
    gone = removed.filter(pl.col("role") == "document")
    if docs.height + gone.height > INCREMENTAL_MAX_SHARE * max(n_docs, 1):
        return None
    strip = lambda frame: frame["item_id"].str.slice(2).to_list()  # noqa: E731  ('d:' / 'q:' prefix)
    return {"changed_docs": strip(docs), "dropped_docs": strip(docs) + strip(gone), "removed": gone.height,
            "changed_queries": set(strip(changed.filter(pl.col("role") == "query")))}


def _in_query_order(parts: list[cand.RankedCandidates], query_ids: list[str]) -> cand.RankedCandidates:
    """Parts of one search (disjoint query sets) as one result in the request's query order."""
    order = pl.DataFrame({"query_id": query_ids}, schema={"query_id": pl.String}).with_row_index("_q")

    def ordered(frames: list[pl.DataFrame]) -> pl.DataFrame:
        return (pl.concat(frames).with_row_index("_o").join(order, on="query_id", how="left")
                .sort("_q", "_o").drop("_q", "_o"))

    return cand.RankedCandidates(ordered([p.candidates for p in parts]), ordered([p.positives for p in parts]),
                                 ordered([p.window for p in parts]))


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
