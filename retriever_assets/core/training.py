"""Fine-tune the student with InfoNCE over positive + mined hard negatives + in-batch negatives."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from retriever_assets.core.naming import folder_bytes


@dataclass(frozen=True)
class TrainingSettings:
    """Student training knobs; defaults follow the sentence-transformers recipe measured on SciFact."""

    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    temperature: float = 0.05  # InfoNCE tau; MultipleNegativesRankingLoss scale = 1 / tau = 20
    max_seq_length: int = 256
    seed: int = 42
    save_steps: int = 20  # checkpoint every N steps, so a killed run resumes from the latest one
    no_duplicates: bool = True  # a text twice in a batch would be its own false in-batch negative
    max_queries: int | None = None  # train on a fixed subset of this many training queries (None: all)
    # hand freed memory back to the OS after every step: CPU batches of changing shapes otherwise leave glibc's
    # heap growing (docs/benchmarks.md, training memory); does not change the weights
    release_memory: bool = True
    # CachedMultipleNegativesRankingLoss (GradCache): the same loss and gradients as MultipleNegativesRankingLoss,
    # computed over chunks of this many texts, so activation memory no longer grows with batch_size x (2 + n
    # negatives) x max_seq_length (docs/benchmarks.md: training memory). None = plain MNRL, everything at once.
    mini_batch_size: int | None = 16
    # a query's other known positives in the batch (as another example's positive or hard negative, also across
    # DDP workers) leave its softmax instead of counting as negatives (core/losses.py)
    mask_known_positives: bool = True
    # distillation beside InfoNCE from the teacher's scores of the positive and each negative: none | marginmse |
    # kldiv, added with this weight on the InfoNCE logit scale (scores / temperature); a recipe option
    distill: str = "none"
    distill_weight: float = 1.0


@dataclass
class TrainingOutcome:
    model_dir: Path
    steps: int
    seconds: float  # training time over every attempt (a resumed run adds the time its checkpoint recorded)
    examples: int
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    resumed_from: str | None = None
    peak_rss_bytes: int = 0  # of this process during training
    checkpoint_bytes_removed: int = 0


def select_training_queries(query_ids: list[str], max_queries: int | None) -> list[str]:
    """A fixed subset of `max_queries` query ids, the same whatever the recipe or seed (None: all, sorted).

    Ordered by a hash of the id, so every recipe of a comparison trains on the same queries and adding
    queries to the corpus keeps most of an earlier subset.
    """
    if max_queries is not None and max_queries < 1:
        raise ValueError(f"max_queries must be >= 1, got {max_queries}")
    ids = sorted(set(query_ids))
    if max_queries is None or max_queries >= len(ids):
        return ids
    ranked = sorted(ids, key=lambda q: hashlib.blake2b(q.encode(), digest_size=8).digest())
    return sorted(ranked[:max_queries])


def _examples(negatives: pl.DataFrame, positives: pl.DataFrame):
    """(query id, positive id, negative ids, negative scores) per (query, positive), in training order."""
    if "score" not in negatives.columns:  # examples need only the ids; scores are for distillation
        negatives = negatives.with_columns(score=pl.lit(None, dtype=pl.Float64))
    negs = negatives.sort("query_id", "slot").group_by("query_id", maintain_order=True).agg("doc_id", "score")
    neg_map = {q: (ids, scores) for q, ids, scores in negs.select("query_id", "doc_id", "score").iter_rows()}
    for qid, pid in positives.select("query_id", "doc_id").sort("query_id", "doc_id").iter_rows():
        ids, scores = neg_map.get(qid, ([], []))
        yield qid, pid, ids, scores


def build_training_examples(
    negatives: pl.DataFrame,  # query_id, slot, doc_id
    positives: pl.DataFrame,  # query_id, doc_id (training split)
    query_text: dict[str, str],
    doc_text: dict[str, str],
) -> dict[int, list[dict[str, str]]]:
    """One example per (query, positive): anchor, positive, negative_1..negative_m, grouped by m.

    Queries kept with fewer negatives form their own group (m may be 0: in-batch negatives only),
    so nothing is padded and no positive is ever used as a negative.
    """
    groups: dict[int, list[dict[str, str]]] = {}
    for qid, pid, ids, _ in _examples(negatives, positives):
        row = {"anchor": query_text[qid], "positive": doc_text[pid]}
        for i, nid in enumerate(ids, start=1):
            row[f"negative_{i}"] = doc_text[nid]
        groups.setdefault(len(row) - 2, []).append(row)
    return dict(sorted(groups.items(), reverse=True))


def build_teacher_scores(
    negatives: pl.DataFrame,  # query_id, slot, doc_id, score: one teacher's (negatives.parquet)
    positives: pl.DataFrame,  # query_id, doc_id (training split)
    positive_scores: pl.DataFrame,  # query_id, doc_id, score: the same teacher's score of each positive
) -> dict[int, list[list[float]]]:
    """The teacher's scores of each example's positive and negatives, grouped and ordered as
    `build_training_examples` groups the examples: what distillation (MarginMSE, KL) learns from."""
    pos = {(q, d): s for q, d, s in positive_scores.select("query_id", "doc_id", "score").iter_rows()}
    groups: dict[int, list[list[float]]] = {}
    for qid, pid, ids, scores in _examples(negatives, positives):
        if (qid, pid) not in pos or any(s is None for s in scores):
            raise ValueError(f"no teacher score for query {qid!r} and its positive {pid!r} or a negative: "
                             "distillation needs the teacher's score of every positive and negative")
        groups.setdefault(len(ids), []).append([float(pos[qid, pid]), *map(float, scores)])
    return dict(sorted(groups.items(), reverse=True))


def training_fingerprint(groups: dict[int, list[dict]], settings: TrainingSettings, base: str,
                         teacher_scores: dict[int, list[list[float]]] | None = None) -> str:
    """Hash of the training examples, settings and base weights (and the teacher scores a distilling student
    learns from): equal fingerprints train the same student."""
    h = hashlib.blake2b(digest_size=12)
    fields = asdict(settings)
    if fields["max_queries"] is None:  # fingerprints of students trained before the subset option stay valid
        fields.pop("max_queries")
    fields.pop("release_memory")  # memory housekeeping: the same student either way
    h.update(json.dumps([fields, base], sort_keys=True).encode())
    for m, rows in groups.items():
        h.update(json.dumps([m, rows], sort_keys=True).encode())
    if teacher_scores is not None and settings.distill != "none":
        h.update(json.dumps(sorted(teacher_scores.items())).encode())
    return h.hexdigest()


ELAPSED_FILE = "elapsed_seconds.json"


def release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc `malloc_trim`); a no-op where there is no glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakRss:
    """Peak resident memory of this process while the block runs, sampled every `interval` s (Linux /proc; elsewhere
    the process-wide maximum from getrusage)."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peak, self._stop = interval, 0, None

    @staticmethod
    def current() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def __enter__(self) -> PeakRss:
        import threading

        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, self.current())
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def _recorded_seconds(checkpoint: Path) -> float:
    """Training seconds spent up to a checkpoint (0 for checkpoints written before this was recorded)."""
    try:
        return float(json.loads((checkpoint / ELAPSED_FILE).read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def _distributed() -> tuple[int, int]:
    """(world size, rank) of the torch.distributed group this process is in; (1, 0) outside one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def training_datasets(groups: dict[int, list[dict[str, str]]]):
    """One `datasets.Dataset` per negative count (`neg<m>`), each row with a `label`: its index in the examples of
    all groups in order, by which the loss finds the row's texts (the trainer passes labels, not texts, to it)."""
    from datasets import Dataset

    out, start = {}, 0
    for m, rows in groups.items():
        out[f"neg{m}"] = Dataset.from_list([row | {"label": start + i} for i, row in enumerate(rows)])
        start += len(rows)
    return out


def student_loss(model, groups: dict[int, list[dict[str, str]]], settings: TrainingSettings, *,
                 teacher_scores: dict[int, list[list[float]]] | None = None):
    """InfoNCE (MultipleNegativesRankingLoss, scale 1/tau; cached over `mini_batch_size` texts when set) in which a
    query's known positives are never its in-batch negatives (core/losses.py), plus the optional distillation term.

    In a torch.distributed group (DDP on Ray Train) every worker takes batch_size / world examples and the loss
    gathers the embeddings (and example labels) of all workers, so each query still meets batch_size - 1 in-batch
    negatives and the known positives are masked across workers too."""
    from retriever_assets.core.losses import ExampleTable, KnownPositiveCachedMNRL, KnownPositiveMNRL

    world, _ = _distributed()
    table = ExampleTable(groups, teacher_scores if settings.distill != "none" else None)
    common = {"scale": 1.0 / settings.temperature, "gather_across_devices": world > 1, "distill": settings.distill,
              "distill_weight": settings.distill_weight, "mask_known_positives": settings.mask_known_positives}
    if settings.mini_batch_size:
        return KnownPositiveCachedMNRL(model, table, mini_batch_size=settings.mini_batch_size, **common)
    return KnownPositiveMNRL(model, table, **common)


def fine_tune_student(
    model,  # a SentenceTransformer, modified in place
    groups: dict[int, list[dict[str, str]]],
    settings: TrainingSettings,
    output_dir: Path,
    *,
    base_identity: str,
    log: Callable[[str], None] = print,
    teacher_scores: dict[int, list[list[float]]] | None = None,  # build_teacher_scores: for settings.distill
) -> TrainingOutcome:
    """Train with MultipleNegativesRankingLoss (scale 1/tau; + the distillation term of `settings.distill` on
    `teacher_scores`) and save a folder `SentenceTransformer()` loads.

    Checkpoints go to `output_dir/trainer`; a re-run on the same data and settings resumes from the
    latest one. The final model is written to `output_dir/model` atomically.
    """
    import torch
    from datasets import DatasetDict
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        MultiDatasetBatchSamplers,
        SentenceTransformerTrainingArguments,
    )
    from transformers import PrinterCallback, TrainerCallback

    model.max_seq_length = settings.max_seq_length
    model.model_card_data.generate_widget_examples = False  # a "Computing widget examples" bar; no hub card here
    world, rank = _distributed()
    trainer_dir = output_dir / "trainer"
    fingerprint = training_fingerprint(groups, settings, base_identity, teacher_scores)
    marker = trainer_dir / "fingerprint.txt"
    if rank == 0:
        if trainer_dir.exists() and (not marker.exists() or marker.read_text() != fingerprint):
            shutil.rmtree(trainer_dir)  # checkpoints of other data or settings cannot be resumed
        trainer_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(fingerprint)
    _barrier(world)
    checkpoints = sorted((p for p in trainer_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()),
                         key=lambda p: int(p.name.split("-")[1]))  # a kill mid-save leaves no trainer_state.json
    resume = str(checkpoints[-1]) if checkpoints else None

    datasets = training_datasets(groups)
    train_dataset = DatasetDict(datasets) if len(datasets) > 1 else next(iter(datasets.values()))
    if settings.batch_size % world:
        raise ValueError(f"batch_size {settings.batch_size} must be a multiple of the {world} training workers")
    loss = student_loss(model, groups, settings, teacher_scores=teacher_scores)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(trainer_dir),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size // world,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_ratio,  # a float < 1 is a ratio of the total steps in transformers 5
        seed=settings.seed,
        data_seed=settings.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES if settings.no_duplicates else BatchSamplers.BATCH_SAMPLER,
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
        fp16=torch.cuda.is_available() and model.device.type == "cuda",
        logging_steps=1,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=1,  # resume needs only the latest complete checkpoint (older ones go once it is saved)
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )

    earlier = _recorded_seconds(Path(resume)) if resume else 0.0
    start = time.perf_counter()

    class _Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and (state.global_step % 10 == 0 or state.global_step == state.max_steps):
                log(f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f}")

        def on_step_end(self, args, state, control, **kwargs):
            if settings.release_memory:
                release_freed_memory()

        def on_save(self, args, state, control, **kwargs):  # so a resumed run reports its whole training time
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir() and rank == 0:
                (checkpoint / ELAPSED_FILE).write_text(json.dumps(
                    {"seconds": earlier + time.perf_counter() - start}))

    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_dataset, loss=loss, callbacks=[_Progress()]
    )
    trainer.remove_callback(PrinterCallback)  # it prints every raw {'loss': ...} dict to stdout; _Progress logs
    if resume:
        log(f"resuming from {resume} ({earlier:.0f} s of training recorded before it)")
    with PeakRss() as rss:
        trainer.train(resume_from_checkpoint=resume)
    seconds = earlier + time.perf_counter() - start
    curve = [(int(e["step"]), float(e["loss"])) for e in trainer.state.log_history if "loss" in e]
    if rank != 0:  # the model is the same on every worker; rank 0 saves it and removes the checkpoints
        _barrier(world)
        return TrainingOutcome(model_dir=output_dir / "model", steps=int(trainer.state.global_step), seconds=seconds,
                               examples=sum(len(r) for r in groups.values()), loss_curve=curve, resumed_from=resume,
                               peak_rss_bytes=rss.peak)

    final = output_dir / "model"
    partial = output_dir / "model.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(str(partial), safe_serialization=True)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    # the model is saved: checkpoints (weights + optimizer state, ~3x the model) are only needed to resume
    checkpoint_bytes = sum(folder_bytes(p) for p in trainer_dir.glob("checkpoint-*"))
    shutil.rmtree(trainer_dir, ignore_errors=True)
    log(f"training done: removed {checkpoint_bytes / 2**20:.0f} MiB of checkpoints, kept the model")
    _barrier(world)
    return TrainingOutcome(
        model_dir=final,
        steps=int(trainer.state.global_step),
        seconds=seconds,
        examples=sum(len(r) for r in groups.values()),
        loss_curve=curve,
        resumed_from=resume,
        peak_rss_bytes=rss.peak,
        checkpoint_bytes_removed=checkpoint_bytes,
    )
