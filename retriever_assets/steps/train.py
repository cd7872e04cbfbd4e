"""Stage 5, student_checkpoint: fine-tune the student on one recipe's negatives (reused when inputs are unchanged)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl

from resources.artifacts import DatasetArtifacts
from resources.compute import ComputeResource
from resources.models import ModelsResource
from resources.storage import StorageResource, write_json
from retriever_assets.core.corpus import positives_of
from retriever_assets.core.encoding import EncoderSpec, model_fingerprint
from retriever_assets.core.mining import training_positives
from retriever_assets.core.training import (
    TrainingSettings,
    build_teacher_scores,
    build_training_examples,
    fine_tune_student,
    select_training_queries,
    training_fingerprint,
)
from retriever_assets.steps.common import Log, StepReport, doc_texts, teachers_path


def _teacher_scores(artifacts: DatasetArtifacts, mined: dict, negatives: pl.DataFrame,
                    positives: pl.DataFrame) -> dict[int, list[list[float]]]:
    """The mining teacher's scores of every example's positive and negatives, for a distilling student."""
    teachers = list(mined.get("teachers", []))
    if len(teachers) != 1 or set(negatives["teacher"].unique().to_list()) - set(teachers):
        raise ValueError(f"recipe {mined.get('name')!r}: distillation needs negatives mined by one dense teacher, "
                         f"these come from {teachers}: re-mine with a single-teacher recipe")
    _, positive_scores = artifacts.read_candidates()
    return build_teacher_scores(negatives, positives, positive_scores.filter(pl.col("teacher") == teachers[0]))


def train_student(
    storage: StorageResource,
    models: ModelsResource,
    dataset: str,
    recipe_name: str,
    *,
    base_model: str,
    settings: TrainingSettings,
    log: Log,
    compute: ComputeResource | None = None,
) -> StepReport:
    start = time.perf_counter()
    artifacts = DatasetArtifacts(storage, dataset)
    _, queries, qrels, manifest = artifacts.read_corpus(document_columns=["doc_id"])  # texts: the trained ones only
    negatives = artifacts.read_negatives(recipe_name)
    positives = positives_of(qrels, manifest["train_split"])
    if settings.max_queries is not None:
        chosen = select_training_queries(positives["query_id"].to_list(), settings.max_queries)
        positives = positives.filter(pl.col("query_id").is_in(chosen))
        negatives = negatives.filter(pl.col("query_id").is_in(chosen))
        log(f"training on a fixed subset of {len(chosen)} training queries (max_train_queries)")
    # after the subset, so every recipe draws the same one; `short_queries: drop` then removes the dropped queries
    mined = artifacts.read_mining_stats(recipe_name)["recipe"]
    positives = training_positives(positives, negatives, mined.get("short_queries", "keep"))
    q_text = dict(queries.select("query_id", "text").iter_rows())
    d_text = doc_texts(artifacts.read_documents(pl.concat([negatives["doc_id"], positives["doc_id"]])))
    groups = build_training_examples(negatives, positives, q_text, d_text)
    teacher_scores = _teacher_scores(artifacts, mined, negatives, positives) if settings.distill != "none" else None
    distilled = sum(len(rows) for m, rows in groups.items() if m > 0) if teacher_scores is not None else None
    if distilled is not None:  # the term needs a mined negative: examples without one train on InfoNCE alone
        log(f"distill {settings.distill}: {distilled} of {sum(len(r) for r in groups.values())} examples have mined "
            "negatives and get the distillation term" + ("; none has: the student trains on InfoNCE alone"
                                                         if distilled == 0 else ""))
    spec = EncoderSpec(name="student", model=base_model, max_seq_length=settings.max_seq_length)
    on_ray = compute is not None and compute.is_ray
    base_path = teachers_path(models, spec)
    base_fp = model_fingerprint(base_path)
    out = artifacts.student_dir(recipe_name)
    data_fp = training_fingerprint(groups, settings, base_fp, teacher_scores)
    if on_ray:  # DDP samples batches differently: another student than one process trains
        data_fp += f"-ddp{compute.train_workers}"
    previous = artifacts.student_manifest_file(recipe_name)
    if previous.exists() and (out / "model").is_dir():
        last = json.loads(previous.read_text())
        if last.get("data_fingerprint") == data_fp:
            log(f"training inputs unchanged ({data_fp}): reusing {out / 'model'}")
            identity = artifacts.corpus_identity()
            if any(last.get(k) != v for k, v in identity.items()):  # the same training data from a later corpus
                last |= identity
                write_json(previous, last)
            return StepReport(time.perf_counter() - start, last | {"reused": True})
    if on_ray:
        from retriever_assets.distributed.train import train_on_ray

        compute.ensure_connected()
        use_gpu = compute.train_use_gpu if compute.train_use_gpu is not None else compute.cluster_gpus() > 0
        outcome = train_on_ray(base_path, groups, settings, out, base_identity=base_fp,
                               workers=compute.train_workers, use_gpu=use_gpu,
                               cache_dir=Path(models.model_cache_dir),
                               shared_dir=Path(compute.shared_dir or storage.root_path() / "ray"), log=log,
                               teacher_scores=teacher_scores)
    else:
        model, _ = models.load(spec)
        outcome = fine_tune_student(model, groups, settings, out, base_identity=base_fp, log=log,
                                    teacher_scores=teacher_scores)
    report = {
        "data_fingerprint": data_fp,
        "reused": False,
        "base_model": base_path,
        "base_fingerprint": base_fp,
        "model_dir": str(outcome.model_dir),
        "fingerprint": model_fingerprint(str(outcome.model_dir)),
        "recipe": recipe_name,
        **artifacts.corpus_identity(),  # corpus_version, split_key: the corpus whose training split it learnt
        "examples": outcome.examples,
        "train_queries": positives["query_id"].n_unique(),
        "examples_by_negative_count": {str(m): len(r) for m, r in groups.items()},
        **({"distilled_examples": distilled} if distilled is not None else {}),
        "steps": outcome.steps,
        "train_seconds": round(outcome.seconds, 1),
        "resumed_from": outcome.resumed_from,
        "peak_rss_mib": round(outcome.peak_rss_bytes / 2**20),
        "checkpoints_removed_mib": round(outcome.checkpoint_bytes_removed / 2**20, 1),
        "loss_curve": outcome.loss_curve,
        "settings": settings.__dict__,
        "compute": compute.describe() if compute is not None else {"backend": "local"},
        "train_workers": compute.train_workers if on_ray else 1,
    }
    write_json(artifacts.student_manifest_file(recipe_name), report)
    return StepReport(time.perf_counter() - start, report)


