"""Stage 6, mteb_scores: base, student and dense teachers on the test split through mteb (scores cached by key)."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import polars as pl

from resources.artifacts import DatasetArtifacts
from resources.models import ModelsResource
from resources.storage import StorageResource, write_json
from retriever_assets.core.encoding import EncoderSpec, model_fingerprint
from retriever_assets.core.versions import (
    documents_version,
    hash_rows,
    model_score_key,
    queries_version,
    scoring_environment,
    test_split_key,
)
from retriever_assets.steps.common import Log, StepReport, teachers_path
from retriever_assets.steps.teachers import configured_teachers


def score_models(
    storage: StorageResource,
    models: ModelsResource,
    dataset: str,
    recipe_name: str,
    *,
    batch_size: int,
    evaluate_teachers: bool,
    max_seq_length: int | None = None,
    log: Log,
) -> StepReport:
    os.environ.setdefault("MTEB_CACHE", str(storage.root_path() / ".mteb_cache"))  # before mteb is imported
    from retriever_assets.core.evaluation import evaluate_retrieval

    start = time.perf_counter()
    artifacts = DatasetArtifacts(storage, dataset)
    corpus, queries, qrels, manifest = artifacts.read_corpus()
    student = artifacts.read_student_manifest(recipe_name)
    split = manifest["test_split"]
    seq = max_seq_length or student["settings"]["max_seq_length"]
    to_score: dict[str, tuple[EncoderSpec, str]] = {
        "base student": (EncoderSpec(name="base", model=student["base_model"], max_seq_length=seq),
                         student["base_fingerprint"]),
        f"student ({recipe_name})": (EncoderSpec(name="student", model=student["model_dir"], max_seq_length=seq),
                                     student["fingerprint"]),
    }
    if evaluate_teachers:
        for teacher in configured_teachers(models):
            if teacher.scored_on_test:
                spec = teacher.spec
                to_score[f"teacher {spec.name}"] = (dataclasses.replace(spec, max_seq_length=seq)
                                                  if max_seq_length else spec, "")
    out = artifacts.scores_dir(recipe_name)
    split_qrels = qrels.filter(pl.col("split") == split)
    split_key = test_split_key(corpus, queries, split_qrels)
    env = scoring_environment(models.resolved_device())
    inputs_key = hash_rows([
        (documents_version(corpus), env),
        (queries_version(queries),),
        (hash_rows(split_qrels.sort("query_id", "doc_id").iter_rows()),),
        *sorted((label, fp or model_fingerprint(teachers_path(models, spec), spec.revision), spec.query_prompt,
                 spec.document_prompt, spec.max_seq_length, *([spec.backend] if spec.backend != "torch" else []))
                for label, (spec, fp) in to_score.items()),
    ])
    previous = artifacts.scores_file(recipe_name)
    if previous.exists():
        last = json.loads(previous.read_text())
        if last.get("inputs_key") == inputs_key:
            log(f"models and test split unchanged ({inputs_key}): reusing {previous}")
            return StepReport(time.perf_counter() - start, last | {"reused": True})
    results, seen = {}, {}
    for label, (spec, fingerprint) in to_score.items():
        fingerprint = fingerprint or model_fingerprint(teachers_path(models, spec), spec.revision)
        # the same weights encoded the same way (e.g. teacher == base student): evaluate once
        key = model_score_key(fingerprint, spec, split_key, env)
        if key in seen:
            results[label] = results[seen[key]] | {"same_as": seen[key]}
            continue
        seen[key] = label
        # a model scored on the same test split before (e.g. the base student under another recipe) is reused
        by_model = artifacts.score_cache_file(key)
        if by_model.exists():
            results[label] = json.loads(by_model.read_text()) | {"reused": True}
            log(f"{label}: nDCG@10 {results[label]['ndcg_at_10']:.4f} (reused, same weights and test split)")
            continue
        model, _ = models.load(spec)
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
    write_json(artifacts.scores_file(recipe_name), report)
    return StepReport(time.perf_counter() - start, report)


