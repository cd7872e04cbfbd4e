"""Stage 3, candidate_lists: each training query's top-K candidates per teacher (exact, ANN or BM25)."""

from __future__ import annotations

import time

import polars as pl

from resources.artifacts import DatasetArtifacts
from resources.compute import ComputeResource
from resources.models import ModelsResource
from resources.storage import StorageResource, write_json, write_parquet
from retriever_assets.core.corpus import positives_of
from retriever_assets.core.diagnostics import teacher_diagnostics
from retriever_assets.steps.common import Log, StepReport, training_queries
from retriever_assets.steps.teachers import CandidateRequest, configured_teachers

# ANN search of dense teachers: used from `min_docs` documents (search="auto"), `nprobes` IVF partitions per query,
# `refine_factor` x k index candidates re-ranked by exact cosines, recall checked on `recall_sample` queries before
# the search is used: under `recall_floor` nprobes is widened, and the search is exact if no width reaches it
ANN_DEFAULTS = {"min_docs": 1_000_000, "nprobes": 20, "refine_factor": 5, "recall_sample": 200, "recall_floor": 0.95}


def build_candidates(
    storage: StorageResource,
    models: ModelsResource,
    dataset: str,
    *,
    top_k: int,
    query_chunk: int,
    doc_chunk: int,
    search: str = "exact",
    ann: dict | None = None,
    log: Log,
    compute: ComputeResource | None = None,
    warn: Log | None = None,
) -> StepReport:
    """`warn` (default `log`) gets what a user must act on: an ANN recall under the floor."""
    if search not in ("exact", "ann", "auto"):
        raise ValueError(f"candidate search must be exact, ann or auto, not {search!r}")
    ann = ANN_DEFAULTS | (ann or {})
    start = time.perf_counter()
    artifacts = DatasetArtifacts(storage, dataset)
    # the ids only: no document text is read (the BM25 teacher searches its saved index)
    corpus, queries, qrels, manifest = artifacts.read_corpus(document_columns=["doc_id"])
    train_q = training_queries(queries, qrels, manifest["train_split"])
    positives = positives_of(qrels, manifest["train_split"])
    query_ids, doc_ids = train_q["query_id"].to_list(), corpus["doc_id"].to_list()
    del corpus
    phases = {"read_corpus": time.perf_counter() - start}
    request = CandidateRequest(query_ids=query_ids, query_texts=train_q["text"].to_list(), doc_ids=doc_ids,
                               positives=positives, top_k=top_k, query_chunk=query_chunk, doc_chunk=doc_chunk,
                               search=search, ann=ann, device=models.resolved_device())
    all_c, all_p, per_teacher, diagnostics, versions_read = [], [], [], [], {}
    for teacher in configured_teachers(models, compute):
        spec, t0 = teacher.spec, time.perf_counter()
        c, p, report = teacher.candidates(artifacts, request, log)
        if "lancedb_table_version" in report:
            versions_read[spec.name] = report.pop("lancedb_table_version")
        seconds = time.perf_counter() - t0
        if "ann_warning" in report:
            (warn or log)(report["ann_warning"])
        [diagnosis] = teacher_diagnostics(c, p, query_ids, {spec.name: spec.score_kind})
        diagnostics.append(diagnosis)
        per_teacher.append({
            "teacher": spec.name,
            "candidates": c.height,
            "queries_with_candidates": c["query_id"].n_unique(),
            "positives_scored": p.height,
            "share_positive_ranked_first": diagnosis["share_positive_in_top_1"],
            "mean_positive_score": round(float(p["score"].mean() or 0), 4),
            "seconds": round(seconds, 2),
        } | report)
        log(f"{spec.name}: {c.height} candidates for {len(query_ids)} queries in {seconds:.1f}s")
        all_c.append(c)
        all_p.append(p)
    t0 = time.perf_counter()
    out = artifacts.candidates_dir
    candidates, positive_scores = pl.concat(all_c), pl.concat(all_p)
    del all_c, all_p
    write_parquet(candidates, out / "candidates.parquet")
    write_parquet(positive_scores, out / "positives.parquet")
    write_json(out / "manifest.json", {"top_k": top_k, "teachers": list(models.specs()), "queries": len(query_ids),
                                       "lancedb_table_versions_read": versions_read})
    write_json(out / "teacher_diagnostics.json", diagnostics)
    for row in diagnostics:
        if row["verdict"] != "ok":
            log(f"teacher {row['teacher']} is {row['verdict']}")
    phases["write"] = time.perf_counter() - t0
    phases |= {f"teacher {t['teacher']}": t["seconds"] for t in per_teacher}
    return StepReport(time.perf_counter() - start, {"top_k": top_k, "queries": len(query_ids),
                                                    "rows": candidates.height, "teachers": per_teacher,
                                                    "diagnostics": diagnostics,
                                                    "lancedb_table_versions_read": versions_read,
                                                    "phase_seconds": {k: round(v, 3) for k, v in phases.items()}})

