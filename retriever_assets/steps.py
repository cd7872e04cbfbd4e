"""The pipeline's steps: read through resources, call `core`, write artifacts, return a report.

Assets are thin wrappers over these functions (they add Dagster metadata); benchmarks call them
directly to measure orchestration overhead. No Dagster import here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from resources.storage import StorageResource, write_json, write_parquet
from resources.teachers import TeachersResource
from retriever_assets.core import candidates as cand
from retriever_assets.core.corpus import BeirCorpus, document_text, load_beir_folder, positives_of
from retriever_assets.core.encoding import (
    EmbeddingPlan,
    EncoderSpec,
    count_truncated,
    embed_in_chunks,
    embedding_cache_key,
    model_fingerprint,
    plan_embedding_update,
)
from retriever_assets.core.export import ntuple_rows, to_ntuple_dataset, to_triplet_dataset, write_flag_jsonl
from retriever_assets.core.mining import MiningRecipe, MiningResult, mine_hard_negatives
from retriever_assets.core.training import (
    TrainingSettings,
    build_training_examples,
    fine_tune_student,
    select_training_queries,
    training_fingerprint,
)

Log = Callable[[str], None]


@dataclass
class StepReport:
    seconds: float = 0.0
    values: dict = field(default_factory=dict)


# ---------------------------------------------------------------- artifacts of one dataset


def read_corpus(storage: StorageResource, dataset: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict]:
    """(corpus, queries, qrels, manifest) as written by the qa_corpus step."""
    folder = storage.dataset_dir(dataset, "corpus")
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"dataset {dataset!r} has no qa_corpus yet: materialize qa_corpus first")
    return (
        pl.read_parquet(folder / "corpus.parquet"),
        pl.read_parquet(folder / "queries.parquet"),
        pl.read_parquet(folder / "qrels.parquet"),
        json.loads(manifest_path.read_text()),
    )


def doc_texts(corpus: pl.DataFrame) -> dict[str, str]:
    """doc_id -> the text models see (title and text)."""
    return {d: document_text(t, x) for d, t, x in corpus.select("doc_id", "title", "text").iter_rows()}


def training_queries(queries: pl.DataFrame, qrels: pl.DataFrame, split: str) -> pl.DataFrame:
    """Queries with at least one positive in the training split, in id order."""
    ids = positives_of(qrels, split).select("query_id").unique()
    return queries.join(ids, on="query_id", how="semi").sort("query_id")


# ---------------------------------------------------------------- 1. qa_corpus


def ingest_corpus(
    storage: StorageResource, dataset: str, folder: Path, *, mode: str, train_split: str, test_split: str
) -> tuple[BeirCorpus, StepReport]:
    start = time.perf_counter()
    loaded = load_beir_folder(folder, splits=(train_split, test_split), mode=mode)
    out = storage.dataset_dir(dataset, "corpus")
    write_parquet(loaded.corpus, out / "corpus.parquet")
    write_parquet(loaded.queries, out / "queries.parquet")
    write_parquet(loaded.qrels, out / "qrels.parquet")
    version = corpus_version(loaded.corpus, loaded.queries, loaded.qrels)
    manifest = {
        "source": str(folder),
        "train_split": train_split,
        "test_split": test_split,
        "version": version,
        "documents": loaded.corpus.height,
        "queries": loaded.queries.height,
    }
    write_json(out / "manifest.json", manifest)
    return loaded, StepReport(time.perf_counter() - start, manifest)


def _hash_rows(rows) -> str:
    h = hashlib.blake2b(digest_size=12)
    for row in rows:
        h.update(("\x1f".join(map(str, row)) + "\n").encode())
    return h.hexdigest()


def documents_version(corpus: pl.DataFrame) -> str:
    """Changes when a document is added, removed or edited."""
    return _hash_rows(corpus.sort("doc_id").select("doc_id", "content_hash").iter_rows())


def corpus_version(corpus: pl.DataFrame, queries: pl.DataFrame, qrels: pl.DataFrame) -> str:
    """A data version that changes when any document, query or judgement changes."""
    parts = (
        documents_version(corpus),
        _hash_rows(queries.sort("query_id").select("query_id", "content_hash").iter_rows()),
        _hash_rows(qrels.sort("split", "query_id", "doc_id").iter_rows()),
    )
    return _hash_rows([parts])


# ---------------------------------------------------------------- 2. teacher_embeddings


def _wanted_items(corpus: pl.DataFrame, queries: pl.DataFrame) -> pl.DataFrame:
    docs = corpus.select(
        item_id=pl.lit("d:") + pl.col("doc_id"),
        role=pl.lit("document"),
        content_hash="content_hash",
        text=pl.struct("title", "text").map_elements(
            lambda r: document_text(r["title"], r["text"]), return_dtype=pl.String
        ),
    )
    qs = queries.select(
        item_id=pl.lit("q:") + pl.col("query_id"), role=pl.lit("query"), content_hash="content_hash", text="text"
    )
    return pl.concat([docs, qs])


def embed_dense_teacher(
    storage: StorageResource,
    teachers: TeachersResource,
    dataset: str,
    spec: EncoderSpec,
    items: pl.DataFrame,
    *,
    batch_size: int,
    chunk_size: int,
    log: Log,
) -> dict:
    """Embed only new or changed items (content hash + cache key), delete removed ones, commit per chunk."""
    start = time.perf_counter()
    store = storage.embedding_store(dataset, spec.name)
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    model, path = teachers.load(spec)
    phases["load_model"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fingerprint = model_fingerprint(path, spec.revision)
    phases["fingerprint_weights"] = time.perf_counter() - t0
    keys = {role: embedding_cache_key(spec, fingerprint, role) for role in ("document", "query")}
    dim = model.get_embedding_dimension()
    if store.dimension() not in (None, dim):
        log(f"{spec.name}: vector dimension changed ({store.dimension()} -> {dim}); rebuilding the table")
        store.reset()
    plan: EmbeddingPlan = plan_embedding_update(items, store.stored_index(), keys)
    log(f"{spec.name}: {plan.to_embed.height} to embed, {len(plan.to_delete)} to delete, {plan.unchanged} unchanged")
    store.delete(plan.to_delete)

    def encode(texts, role):
        return model.encode(
            list(texts),
            batch_size=batch_size,
            prompt=spec.prompt(role) or None,
            normalize_embeddings=spec.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)

    def write(chunk: pl.DataFrame, vectors: np.ndarray):
        store.write(chunk.with_columns(cache_key=pl.col("role").replace_strict(keys)), vectors, model=path)

    def progress(done, total, seconds):
        log(f"{spec.name}: embedded {done}/{total} ({done / max(seconds, 1e-9):.1f} items/s)")

    t0 = time.perf_counter()
    prompted = [spec.prompt(role) + text for role, text in plan.to_embed.select("role", "text").iter_rows()]
    long_docs = count_truncated(model.tokenizer, prompted, spec.max_seq_length)
    phases["count_truncated"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    embedded = embed_in_chunks(plan, encode, write, chunk_size=chunk_size, on_progress=progress)
    phases["encode_and_write"] = time.perf_counter() - t0
    if embedded > 10 * chunk_size:
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
        "truncated_items": long_docs,
        "dimension": dim,
        "table": store.name,
        "table_version": store.version(),
        "seconds": round(time.perf_counter() - start, 2),
        "items_per_second": round(embedded / max(time.perf_counter() - start, 1e-9), 1),
        "backend": spec.backend,
        "phase_seconds": {k: round(v, 3) for k, v in phases.items()},
    }



def index_bm25_teacher(storage: StorageResource, dataset: str, spec: EncoderSpec, corpus: pl.DataFrame) -> dict:
    """Build the BM25 index over the corpus (cheap; rebuilt when any document changed) and save it without pickle."""
    start = time.perf_counter()
    folder = storage.dataset_dir(dataset, "bm25", spec.name)
    version = f"{spec.model}|{documents_version(corpus)}"
    marker, ids_file = folder / "version.txt", folder / "doc_ids.json"
    rebuilt = (not marker.exists() or marker.read_text() != version or not ids_file.exists()
               or json.loads(ids_file.read_text()) != corpus["doc_id"].to_list())  # same docs, another row order
    if rebuilt:
        texts = [document_text(t, x) for t, x in corpus.select("title", "text").iter_rows()]
        index = cand.build_bm25_index(texts)
        index.save(str(folder), allow_pickle=False, show_progress=False)
        write_json(folder / "doc_ids.json", corpus["doc_id"].to_list())
        marker.write_text(version)
    return {
        "teacher": spec.name,
        "kind": "bm25",
        "rebuilt": rebuilt,
        "documents": corpus.height,
        "seconds": round(time.perf_counter() - start, 2),
    }


def embed_teachers(
    storage: StorageResource, teachers: TeachersResource, dataset: str, *, batch_size: int, chunk_size: int, log: Log
) -> StepReport:
    start = time.perf_counter()
    corpus, queries, qrels, manifest = read_corpus(storage, dataset)
    train_q = training_queries(queries, qrels, manifest["train_split"])
    items = _wanted_items(corpus, train_q)
    per_teacher = []
    for spec in teachers.specs().values():
        if spec.kind == "bm25":
            per_teacher.append(index_bm25_teacher(storage, dataset, spec, corpus))
        else:
            per_teacher.append(
                embed_dense_teacher(
                    storage, teachers, dataset, spec, items, batch_size=batch_size, chunk_size=chunk_size, log=log
                )
            )
    return StepReport(
        time.perf_counter() - start,
        {"device": teachers.resolved_device(), "documents": corpus.height, "queries": train_q.height,
         "teachers": per_teacher},
    )


# ---------------------------------------------------------------- 3. candidate_lists


def build_candidates(
    storage: StorageResource,
    teachers: TeachersResource,
    dataset: str,
    *,
    top_k: int,
    query_chunk: int,
    doc_chunk: int,
    search: str = "exact",
    ann: dict | None = None,
    log: Log,
) -> StepReport:
    if search not in ("exact", "ann", "auto"):
        raise ValueError(f"candidate search must be exact, ann or auto, not {search!r}")
    ann = {"min_docs": 1_000_000, "nprobes": 20, "refine_factor": 5, "recall_sample": 200} | (ann or {})
    start = time.perf_counter()
    corpus, queries, qrels, manifest = read_corpus(storage, dataset)
    train_q = training_queries(queries, qrels, manifest["train_split"])
    positives = positives_of(qrels, manifest["train_split"])
    query_ids, doc_ids = train_q["query_id"].to_list(), corpus["doc_id"].to_list()
    all_c, all_p, per_teacher, versions_read = [], [], [], {}
    device = teachers.resolved_device()
    for spec in teachers.specs().values():
        t0 = time.perf_counter()
        use_ann, ann_report = False, {}
        if spec.kind == "bm25":
            import bm25s

            folder = storage.dataset_dir(dataset, "bm25", spec.name)
            index = bm25s.BM25.load(str(folder), allow_pickle=False)
            indexed_ids = json.loads((folder / "doc_ids.json").read_text())
            if indexed_ids != doc_ids:
                raise RuntimeError(f"BM25 index of {spec.name!r} is stale: re-materialize teacher_embeddings")
            c, p = cand.bm25_candidates(
                spec.name, index, query_ids, train_q["text"].to_list(), doc_ids, positives, k=top_k
            )
        else:
            store = storage.embedding_store(dataset, spec.name)
            versions_read[spec.name] = store.version()
            q_vec = store.vectors("query", query_ids)  # (n_queries, dim)
            d_vec = store.vectors("document", doc_ids)  # (n_docs, dim)
            use_ann = search == "ann" or (search == "auto" and len(doc_ids) >= ann["min_docs"])
            if use_ann and not spec.normalize:
                raise ValueError(f"teacher {spec.name!r}: the ANN index searches by cosine; its vectors are not "
                                 "normalised, so use search='exact'")
            ann_fn, ann_report = (_ann_search(store, doc_ids, d_vec, ann, log) if use_ann else (None, {}))
            c, p = cand.dense_candidates(
                spec.name, query_ids, q_vec, doc_ids, d_vec, positives,
                k=top_k, device=device, query_chunk=query_chunk, doc_chunk=doc_chunk, search=ann_fn,
            )
            if use_ann:
                ann_report |= _ann_recall(q_vec, d_vec, ann_fn, top_k, ann["recall_sample"], device)
                log(f"{spec.name}: ANN recall@{top_k} {ann_report['ann_recall_at_k']:.4f} on "
                    f"{ann_report['ann_recall_queries']} queries checked exactly")
        seconds = time.perf_counter() - t0
        top1 = p.group_by("query_id").agg((pl.col("rank") == 1).any()).get_column("rank").mean()
        per_teacher.append({
            "teacher": spec.name,
            "candidates": c.height,
            "queries_with_candidates": c["query_id"].n_unique(),
            "positives_scored": p.height,
            "share_positive_ranked_first": round(float(top1 or 0), 4),
            "mean_positive_score": round(float(p["score"].mean() or 0), 4),
            "search": "bm25" if spec.kind == "bm25" else ("ann" if use_ann else "exact"),
            "seconds": round(seconds, 2),
        } | ann_report)
        log(f"{spec.name}: {c.height} candidates for {len(query_ids)} queries in {seconds:.1f}s")
        all_c.append(c)
        all_p.append(p)
    out = storage.dataset_dir(dataset, "candidates")
    candidates, positive_scores = pl.concat(all_c), pl.concat(all_p)
    write_parquet(candidates, out / "candidates.parquet")
    write_parquet(positive_scores, out / "positives.parquet")
    write_json(out / "manifest.json", {"top_k": top_k, "teachers": list(teachers.specs()), "queries": len(query_ids),
                                       "lancedb_table_versions_read": versions_read})
    return StepReport(time.perf_counter() - start, {"top_k": top_k, "queries": len(query_ids),
                                                    "rows": candidates.height, "teachers": per_teacher,
                                                    "lancedb_table_versions_read": versions_read})


def _ann_search(store, doc_ids: list[str], doc_vectors: np.ndarray, ann: dict, log: Log):
    """A `search(query_vectors, width)` through the table's vector index, mapping item ids to doc rows.

    With a refine factor r, the index returns width * r candidates and their exact cosines are computed from
    the document vectors already in memory (`rescore_top_k`): 1.5x faster than LanceDB's own refine, which
    re-reads full vectors from the table, at the same recall (docs/benchmarks.md, 1M documents).
    """
    from retriever_assets.core.search import rescore_top_k

    state = store.ensure_vector_index()
    log(f"{store.name}: vector index {state}")
    row = {f"d:{d}": i for i, d in enumerate(doc_ids)}
    refine = int(ann["refine_factor"] or 0)

    def search(query_vectors: np.ndarray, width: int):
        scores, items = store.search_documents(query_vectors, width * max(refine, 1), nprobes=ann["nprobes"])
        index = np.array([[row.get(i, -1) if i is not None else -1 for i in r] for r in items], dtype=np.int64)
        if refine:
            scores, index = rescore_top_k(query_vectors, doc_vectors, index, width)
        scores[index < 0] = -np.inf  # an empty slot or a document no longer in the corpus
        return scores, np.where(index < 0, 0, index)

    return search, {"ann_index": state, "ann_nprobes": ann["nprobes"], "ann_refine_factor": refine,
                    "ann_refine": "exact cosines in memory" if refine else "none"}


def _ann_recall(q_vec: np.ndarray, d_vec: np.ndarray, search, k: int, sample: int, device: str) -> dict:
    """Recall@k of the ANN top-k against exact search on a fixed sample of queries."""
    from retriever_assets.core.search import exact_top_k, top_k_recall

    rows = np.linspace(0, len(q_vec) - 1, num=min(sample, len(q_vec)), dtype=np.int64) if len(q_vec) else []
    if not len(rows):
        return {"ann_recall_at_k": 1.0, "ann_recall_queries": 0}
    approx_scores, approx = search(q_vec[rows], k)
    approx = np.where(np.isfinite(approx_scores), approx, -1)
    _, exact = exact_top_k(q_vec[rows], d_vec, k, device=device)
    return {"ann_recall_at_k": round(top_k_recall(approx, exact), 4), "ann_recall_queries": len(rows)}

# ---------------------------------------------------------------- 4. hard_negatives


def mine_negatives(
    storage: StorageResource, teachers: TeachersResource, dataset: str, recipe: MiningRecipe, *, log: Log
) -> tuple[MiningResult, StepReport]:
    recipe.validate(teachers.kinds())  # before any work
    start = time.perf_counter()
    corpus, queries, qrels, manifest = read_corpus(storage, dataset)
    folder = storage.dataset_dir(dataset, "candidates")
    candidates = pl.read_parquet(folder / "candidates.parquet")
    positive_scores = pl.read_parquet(folder / "positives.parquet")
    missing = set(recipe.teachers) - set(candidates["teacher"].unique().to_list())
    if missing:
        raise RuntimeError(f"candidate_lists has no candidates for teacher(s) {sorted(missing)}: re-materialize it")
    train_q = training_queries(queries, qrels, manifest["train_split"])
    result = mine_hard_negatives(candidates, positive_scores, recipe, query_ids=train_q["query_id"].to_list())
    out = storage.dataset_dir(dataset, "negatives", recipe.name)
    write_parquet(result.negatives, out / "negatives.parquet")
    write_parquet(result.filtered, out / "filtered_candidates.parquet")
    write_json(out / "stats.json", result.stats)

    positives = positives_of(qrels, manifest["train_split"])
    q_text = dict(train_q.select("query_id", "text").iter_rows())
    d_text = doc_texts(corpus)
    rows = ntuple_rows(result.negatives, positives, q_text, d_text, recipe.num_negatives)
    ntuple_dir = out / "ntuple"
    shutil.rmtree(ntuple_dir, ignore_errors=True)
    to_ntuple_dataset(rows, recipe.num_negatives).save_to_disk(str(ntuple_dir))
    # triplets keep every negative, including those of queries short of n
    all_rows = build_training_examples(result.negatives, positives, q_text, d_text)
    triplet_dir = out / "triplet"
    shutil.rmtree(triplet_dir, ignore_errors=True)
    to_triplet_dataset([r for group in all_rows.values() for r in group], recipe.num_negatives).save_to_disk(
        str(triplet_dir))
    flag_lines = write_flag_jsonl(out / "flag_embedding.jsonl", result.negatives, positives, q_text, d_text)
    log(f"{recipe.name}: {result.negatives.height} negatives, {result.stats['queries_short']} queries short")
    return result, StepReport(
        time.perf_counter() - start,
        result.stats | {"ntuple_rows": len(rows), "flag_jsonl_lines": flag_lines, "folder": str(out)},
    )


# ---------------------------------------------------------------- 5. student_checkpoint


def train_student(
    storage: StorageResource,
    teachers: TeachersResource,
    dataset: str,
    recipe_name: str,
    *,
    base_model: str,
    settings: TrainingSettings,
    log: Log,
) -> StepReport:
    start = time.perf_counter()
    corpus, queries, qrels, manifest = read_corpus(storage, dataset)
    negatives = pl.read_parquet(storage.dataset_dir(dataset, "negatives", recipe_name) / "negatives.parquet")
    positives = positives_of(qrels, manifest["train_split"])
    if settings.max_queries is not None:
        chosen = select_training_queries(positives["query_id"].to_list(), settings.max_queries)
        positives = positives.filter(pl.col("query_id").is_in(chosen))
        negatives = negatives.filter(pl.col("query_id").is_in(chosen))
        log(f"training on a fixed subset of {len(chosen)} training queries (max_train_queries)")
    q_text = dict(queries.select("query_id", "text").iter_rows())
    d_text = doc_texts(corpus)
    groups = build_training_examples(negatives, positives, q_text, d_text)
    spec = EncoderSpec(name="student", model=base_model, max_seq_length=settings.max_seq_length)
    model, base_path = teachers.load(spec)
    base_fp = model_fingerprint(base_path)
    out = storage.dataset_dir(dataset, "student", recipe_name)
    data_fp = training_fingerprint(groups, settings, base_fp)
    previous = out / "manifest.json"
    if previous.exists() and (out / "model").is_dir():
        last = json.loads(previous.read_text())
        if last.get("data_fingerprint") == data_fp:
            log(f"training inputs unchanged ({data_fp}): reusing {out / 'model'}")
            return StepReport(time.perf_counter() - start, last | {"reused": True})
    outcome = fine_tune_student(model, groups, settings, out, base_identity=base_fp, log=log)
    report = {
        "data_fingerprint": data_fp,
        "reused": False,
        "base_model": base_path,
        "base_fingerprint": base_fp,
        "model_dir": str(outcome.model_dir),
        "fingerprint": model_fingerprint(str(outcome.model_dir)),
        "recipe": recipe_name,
        "examples": outcome.examples,
        "train_queries": positives["query_id"].n_unique(),
        "examples_by_negative_count": {str(m): len(r) for m, r in groups.items()},
        "steps": outcome.steps,
        "train_seconds": round(outcome.seconds, 1),
        "resumed_from": outcome.resumed_from,
        "loss_curve": outcome.loss_curve,
        "settings": settings.__dict__,
    }
    write_json(out / "manifest.json", report)
    return StepReport(time.perf_counter() - start, report)


# ---------------------------------------------------------------- 6. mteb_scores


def score_models(
    storage: StorageResource,
    teachers: TeachersResource,
    dataset: str,
    recipe_name: str,
    *,
    batch_size: int,
    evaluate_teachers: bool,
    max_seq_length: int | None = None,
    log: Log,
) -> StepReport:
    from retriever_assets.core.evaluation import evaluate_retrieval

    start = time.perf_counter()
    corpus, queries, qrels, manifest = read_corpus(storage, dataset)
    student = json.loads((storage.dataset_dir(dataset, "student", recipe_name) / "manifest.json").read_text())
    split = manifest["test_split"]
    seq = max_seq_length or student["settings"]["max_seq_length"]
    models: dict[str, tuple[EncoderSpec, str]] = {
        "base student": (EncoderSpec(name="base", model=student["base_model"], max_seq_length=seq),
                         student["base_fingerprint"]),
        f"student ({recipe_name})": (EncoderSpec(name="student", model=student["model_dir"], max_seq_length=seq),
                                     student["fingerprint"]),
    }
    if evaluate_teachers:
        for spec in teachers.specs().values():
            if spec.kind == "dense":
                models[f"teacher {spec.name}"] = (dataclasses.replace(spec, max_seq_length=seq)
                                                  if max_seq_length else spec, "")
    out = storage.dataset_dir(dataset, "scores", recipe_name)
    split_qrels = qrels.filter(pl.col("split") == split)
    split_key = test_split_key(corpus, queries, split_qrels)
    env = scoring_environment(teachers.resolved_device())
    inputs_key = _hash_rows([
        (documents_version(corpus), env),
        (_hash_rows(queries.sort("query_id").select("query_id", "content_hash").iter_rows()),),
        (_hash_rows(split_qrels.sort("query_id", "doc_id").iter_rows()),),
        *sorted((label, fp or model_fingerprint(teachers_path(teachers, spec), spec.revision), spec.query_prompt,
                 spec.document_prompt, spec.max_seq_length, *([spec.backend] if spec.backend != "torch" else []))
                for label, (spec, fp) in models.items()),
    ])
    previous = out / "scores.json"
    if previous.exists():
        last = json.loads(previous.read_text())
        if last.get("inputs_key") == inputs_key:
            log(f"models and test split unchanged ({inputs_key}): reusing {previous}")
            return StepReport(time.perf_counter() - start, last | {"reused": True})
    results, seen = {}, {}
    for label, (spec, fingerprint) in models.items():
        fingerprint = fingerprint or model_fingerprint(teachers_path(teachers, spec), spec.revision)
        # the same weights encoded the same way (e.g. teacher == base student): evaluate once
        key = model_score_key(fingerprint, spec, split_key, env)
        if key in seen:
            results[label] = results[seen[key]] | {"same_as": seen[key]}
            continue
        seen[key] = label
        # a model scored on the same test split before (e.g. the base student under another recipe) is reused
        by_model = storage.dataset_dir(dataset, "scores", "by-model") / f"{key}.json"
        if by_model.exists():
            results[label] = json.loads(by_model.read_text()) | {"reused": True}
            log(f"{label}: nDCG@10 {results[label]['ndcg_at_10']:.4f} (reused, same weights and test split)")
            continue
        model, _ = teachers.load(spec)
        t0 = time.perf_counter()
        metrics = evaluate_retrieval(
            model, corpus=corpus, queries=queries, qrels=qrels, split=split, dataset=dataset,
            # one result folder per score key: a run at another length, device or mteb version never overwrites it
            model_name=f"retriever-assets/{spec.name}", revision=fingerprint[:16], output_dir=out / "mteb" / key,
            batch_size=batch_size, document_prompt=spec.document_prompt, query_prompt=spec.query_prompt,
        )
        results[label] = metrics | {"seconds": round(time.perf_counter() - t0, 1), "fingerprint": fingerprint,
                                    "score_key": key, "scoring_env": env, "max_seq_length": spec.max_seq_length}
        write_json(by_model, {k: v for k, v in results[label].items() if k != "mteb_result"})
        log(f"{label}: nDCG@10 {metrics['ndcg_at_10']:.4f}")
    report = {"split": split, "recipe": recipe_name, "results": results, "inputs_key": inputs_key, "reused": False,
              "max_seq_length": seq}
    write_json(out / "scores.json", report)
    return StepReport(time.perf_counter() - start, report)


def test_split_key(corpus: pl.DataFrame, queries: pl.DataFrame, split_qrels: pl.DataFrame) -> str:
    """Changes when the documents, the queries or the split's judgements change."""
    return _hash_rows([
        (documents_version(corpus),),
        (_hash_rows(queries.sort("query_id").select("query_id", "content_hash").iter_rows()),),
        (_hash_rows(split_qrels.sort("query_id", "doc_id").iter_rows()),),
    ])[:16]


def model_score_key(fingerprint: str, spec: EncoderSpec, split_key: str, scoring_env: str = "") -> str:
    """What decides a model's test score: its weights, how it encodes (length, prompts, backend, device and dtype),
    the evaluator's version, and the test split's data. It names the score cache and mteb's result folder."""
    row = (fingerprint, spec.max_seq_length, spec.query_prompt, spec.document_prompt, split_key)
    if spec.backend != "torch":  # torch keys stay what they were before backends existed
        row = (*row, spec.backend)
    if scoring_env:
        row = (*row, scoring_env)
    return _hash_rows([row])


def scoring_environment(device: str) -> str:
    """Device kind, encode dtype and mteb version: a score computed under other ones is another score."""
    from importlib.metadata import version

    dtype = "fp16" if device.startswith("cuda") else "fp32"  # load_sentence_transformer halves models on CUDA
    return f"{device.split(':')[0]}-{dtype}|mteb {version('mteb')}"


def teachers_path(teachers: TeachersResource, spec: EncoderSpec) -> str:
    """The folder (or hub id) a spec's model resolves to, without loading it."""
    from retriever_assets.core.encoding import resolve_model_path

    return resolve_model_path(spec.model, cache_dir=Path(teachers.model_cache_dir))


# ---------------------------------------------------------------- leaderboard (compare recipes)


def compare_recipes(
    storage: StorageResource,
    teachers: TeachersResource,
    dataset: str,
    recipe_names: list[str],
    *,
    judge_model: str | None,
    audit_max_queries: int | None = None,
    judge_max_seq_length: int = 256,
    log: Log,
) -> StepReport:
    """Leaderboard over every recipe that has scores, with the false-negative audit when a judge is set."""
    from retriever_assets.core.leaderboard import (
        build_leaderboard,
        false_negative_audit,
        summarize_seeds,
        to_markdown,
    )

    start = time.perf_counter()
    corpus, queries, qrels, manifest = read_corpus(storage, dataset)
    scores, mining, training = {}, {}, {}
    for name in recipe_names:
        score_file = storage.dataset_dir(dataset, "scores", name) / "scores.json"
        if not score_file.exists():
            log(f"recipe {name}: no scores yet (materialize its mteb_scores); left out")
            continue
        scores[name] = json.loads(score_file.read_text())
        mining[name] = json.loads((storage.dataset_dir(dataset, "negatives", name) / "stats.json").read_text())
        training[name] = json.loads((storage.dataset_dir(dataset, "student", name) / "manifest.json").read_text())
    if not scores:
        raise RuntimeError(f"no recipe of {dataset!r} has MTEB scores yet: materialize mteb_scores first")
    out = storage.dataset_dir(dataset, "leaderboard")
    previous = json.loads((out / "audit.json").read_text()) if (out / "audit.json").exists() else {}
    negatives_hash = {
        name: hashlib.blake2b((storage.dataset_dir(dataset, "negatives", name) / "negatives.parquet").read_bytes(),
                              digest_size=12).hexdigest()
        for name in scores
    }
    # an audit stays valid while the recipe's negatives are the same file content (and, when a judge is set,
    # the same judge, length and audited queries); without a judge, earlier audits are kept rather than lost
    setup: dict | None = None
    if judge_model:
        judge_spec = EncoderSpec(name="judge", model=judge_model, max_seq_length=judge_max_seq_length)
        positives = positives_of(qrels, manifest["train_split"])
        audited = select_training_queries(positives["query_id"].to_list(), audit_max_queries)
        positives = positives.filter(pl.col("query_id").is_in(audited))
        setup = {"judge": teachers_path(teachers, judge_spec), "judge_max_seq_length": judge_max_seq_length,
                 "queries_audited": len(audited)}
    audits: dict[str, dict] = {}
    for name in scores:
        same = previous.get(name, {})
        if same.get("negatives_hash") == negatives_hash[name] and all(
                same.get(k) == v for k, v in (setup or {}).items()):
            audits[name] = same
            log(f"recipe {name}: audit {'reused' if setup else 'kept from an earlier leaderboard (no judge now)'} "
                f"({same['false_negative_share']:.1%} suspected false negatives)")
    fresh = [name for name in scores if name not in audits] if setup else []
    if fresh:  # the judge is loaded only when some recipe has negatives it has not judged yet
        model, _ = teachers.load(judge_spec)
        q_text = dict(queries.select("query_id", "text").iter_rows())
        d_text = doc_texts(corpus)
        cache: dict[tuple[str, str], np.ndarray] = {}

        def vectors(kind: str, ids):
            missing = sorted({i for i in ids if (kind, i) not in cache})
            if missing:
                texts = [q_text[i] if kind == "q" else d_text[i] for i in missing]
                encoded = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=32)
                cache.update({(kind, i): v for i, v in zip(missing, encoded, strict=True)})
            return np.stack([cache[(kind, i)] for i in ids])

        def judge(query_ids, doc_ids):
            return np.einsum("ij,ij->i", vectors("q", query_ids), vectors("d", doc_ids))

        for name in fresh:
            negatives = pl.read_parquet(storage.dataset_dir(dataset, "negatives", name) / "negatives.parquet")
            negatives = negatives.filter(pl.col("query_id").is_in(audited))
            audits[name] = false_negative_audit(negatives, positives, judge) | setup | {
                "negatives_hash": negatives_hash[name]}
            log(f"recipe {name}: {audits[name]['false_negative_share']:.1%} suspected false negatives")
    board = build_leaderboard(scores, mining, training, audits)
    board.write_csv(out / "leaderboard.csv")
    seeds = summarize_seeds(board)
    (out / "leaderboard.md").write_text(to_markdown(board) + "\n")
    for stale in ("seeds.csv", "seeds.md"):
        (out / stale).unlink(missing_ok=True)
    if seeds.height:
        seeds.write_csv(out / "seeds.csv")
        (out / "seeds.md").write_text(to_markdown(seeds) + "\n")
    write_json(out / "audit.json", audits)
    return StepReport(time.perf_counter() - start, {"board": board, "seeds": seeds, "audits": audits,
                                                    "folder": str(out), "recipes": list(scores)})
