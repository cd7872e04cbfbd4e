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
from retriever_assets.core.leaderboard import training_staleness
from retriever_assets.core.versions import (
    hash_rows,
    model_score_key,
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
    cross_datasets: list[str] | None = None,
    log: Log,
) -> StepReport:
    """Scores of base, student and dense teachers on the test split (and the held-out dev split when the corpus
    has one); student and base also on the test split of each of `cross_datasets` that is ingested."""
    os.environ.setdefault("MTEB_CACHE", str(storage.root_path() / ".mteb_cache"))  # before mteb is imported
    from retriever_assets.core.evaluation import REPORTED, evaluate_retrieval

    start = time.perf_counter()
    artifacts = DatasetArtifacts(storage, dataset)
    corpus, queries, qrels, manifest = artifacts.read_corpus()
    student = artifacts.read_student_manifest(recipe_name)
    # the corpus as ingested now against the one the student learnt from: a student trained before a re-ingest
    # (e.g. dev share 0, then 0.2) has seen today's dev queries, so its dev score is inflated; scored, but marked
    current = artifacts.corpus_identity()
    identity = current | {"student_trained_on": {k: student.get(k) for k in current},
                          "stale": training_staleness(current, student)}
    if identity["stale"]:
        log(f"recipe {recipe_name}: {identity['stale']}; its scores are marked stale and the leaderboard neither "
            "ranks nor chooses it")
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
    dev = manifest.get("dev_split")  # held-out training queries (qa_corpus dev_share): what recipes are chosen by
    scored_splits = [split, *([dev] if dev else [])]
    split_key = _splits_key(corpus, queries, qrels, scored_splits)
    # other datasets' test splits (a forgetting check): the student and the base model only
    others = {}
    for other in sorted(set(cross_datasets or ()) - {dataset}):
        other_artifacts = DatasetArtifacts(storage, other)
        if not other_artifacts.corpus_manifest_file.exists():
            log(f"cross-dataset score on {other!r} skipped: its qa_corpus is not materialized")
            continue
        o_corpus, o_queries, o_qrels, o_manifest = other_artifacts.read_corpus()
        others[other] = (o_corpus, o_queries, o_qrels, o_manifest["test_split"],
                         _splits_key(o_corpus, o_queries, o_qrels, [o_manifest["test_split"]]))
    env = scoring_environment(models.resolved_device())
    model_keys = sorted(
        (label, fp or model_fingerprint(teachers_path(models, spec), spec.revision), spec.query_prompt,
         spec.document_prompt, spec.max_seq_length, *([spec.backend] if spec.backend != "torch" else []))
        for label, (spec, fp) in to_score.items())
    inputs_key = hash_rows([(split_key, env), *model_keys, *((o, v[-1]) for o, v in others.items())])
    previous = artifacts.scores_file(recipe_name)
    if previous.exists():
        last = json.loads(previous.read_text())
        if last.get("inputs_key") == inputs_key:
            log(f"models and scored splits unchanged ({inputs_key}): reusing {previous}")
            if any(last.get(k) != v for k, v in identity.items()):  # e.g. the student's corpus recorded since
                last |= identity
                write_json(previous, last)
            return StepReport(time.perf_counter() - start, last | {"reused": True})

    def score(label, spec, fingerprint, key, frames, splits, name, result_dir):
        # a model scored on the same splits before (e.g. the base student under another recipe) is reused
        by_model = artifacts.score_cache_file(key)
        if by_model.exists():
            found = json.loads(by_model.read_text()) | {"reused": True}
            log(f"{label} on {name}: nDCG@10 {found['ndcg_at_10']:.4f} (reused, same weights and splits)")
            return found
        model, _ = models.load(spec)
        t0 = time.perf_counter()
        metrics = evaluate_retrieval(
            model, corpus=frames[0], queries=frames[1], qrels=frames[2], split=splits[0],
            extra_splits=tuple(splits[1:]),
            dataset=name, model_name=f"retriever-assets/{spec.name}", revision=fingerprint[:16],
            # one result folder per score key: a run at another length, device or mteb version never overwrites it
            output_dir=result_dir / key, batch_size=batch_size, document_prompt=spec.document_prompt,
            query_prompt=spec.query_prompt,
        )
        found = metrics | {"seconds": round(time.perf_counter() - t0, 1), "fingerprint": fingerprint,
                           "score_key": key, "scoring_env": env, "max_seq_length": spec.max_seq_length}
        write_json(by_model, {k: v for k, v in found.items() if k != "mteb_result"})
        log(f"{label} on {name}: nDCG@10 {metrics['ndcg_at_10']:.4f}"
            + "".join(f", {s} {m['ndcg_at_10']:.4f}" for s, m in metrics.get("splits", {}).items()))
        return found

    results, seen = {}, {}
    for label, (spec, fingerprint) in to_score.items():
        fingerprint = fingerprint or model_fingerprint(teachers_path(models, spec), spec.revision)
        # the same weights encoded the same way (e.g. teacher == base student): evaluate once
        key = model_score_key(fingerprint, spec, split_key, env)
        if key in seen:
            results[label] = results[seen[key]] | {"same_as": seen[key]}
            continue
        seen[key] = label
        results[label] = score(label, spec, fingerprint, key, (corpus, queries, qrels), scored_splits, dataset,
                               out / "mteb")
        if dev:
            results[label]["dev"] = results[label]["splits"][dev]
        if label.startswith("teacher"):
            continue
        for other, (o_corpus, o_queries, o_qrels, o_split, o_key) in others.items():
            cross = score(label, spec, fingerprint, model_score_key(fingerprint, spec, o_key, env),
                          (o_corpus, o_queries, o_qrels), [o_split], other, out / "mteb-cross")
            results[label].setdefault("cross", {})[other] = {m: cross[m] for m in REPORTED}
    report = {"split": split, "dev_split": dev, "recipe": recipe_name, "results": results, "inputs_key": inputs_key,
              "reused": False, "max_seq_length": seq, "cross_datasets": list(others), **identity}
    write_json(artifacts.scores_file(recipe_name), report)
    return StepReport(time.perf_counter() - start, report)


def _splits_key(corpus: pl.DataFrame, queries: pl.DataFrame, qrels: pl.DataFrame, splits: list[str]) -> str:
    """Changes when the documents, the queries or any scored split's judgements change (test alone: as before)."""
    keys = [test_split_key(corpus, queries, qrels.filter(pl.col("split") == s)) for s in splits]
    return keys[0] if len(keys) == 1 else hash_rows([tuple(keys)])
