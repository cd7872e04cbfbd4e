"""Training on Ray: a Ray Train `TorchTrainer` runs the same sentence-transformers trainer (core/training.py) on
`train_workers` DDP workers; MultipleNegativesRankingLoss gathers the embeddings of all workers
(`gather_across_devices=True`) and their example labels, so a query's known positives on another worker are masked
like local ones (core/losses.py), checkpoints go to the student folder (storage every node sees), and a worker group
that fails is restarted by Ray Train and resumes from the latest checkpoint."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from retriever_assets.core.training import TrainingOutcome, TrainingSettings

OUTCOME_FILE = "ray_outcome.json"


def _train_worker(config: dict) -> None:
    """One DDP worker (Ray Train has set up the process group): load the base model and run the trainer."""
    import torch

    from retriever_assets.core.encoding import EncoderSpec, load_sentence_transformer
    from retriever_assets.core.training import fine_tune_student

    device = "cuda" if config["use_gpu"] and torch.cuda.is_available() else "cpu"
    spec = EncoderSpec(name="student", model=config["base_model"], max_seq_length=config["settings"]["max_seq_length"])
    model, _ = load_sentence_transformer(spec, device=device, cache_dir=Path(config["cache_dir"]))
    settings = TrainingSettings(**config["settings"])
    out = Path(config["output_dir"])
    outcome = fine_tune_student(model, config["groups"], settings, out, base_identity=config["base_identity"],
                                log=lambda m: print(m, flush=True), teacher_scores=config.get("teacher_scores"))
    if torch.distributed.get_rank() == 0:
        record = {k: v for k, v in asdict(outcome).items() if k != "model_dir"} | {"model_dir": str(outcome.model_dir)}
        (out / OUTCOME_FILE).write_text(json.dumps(record))


def train_on_ray(
    base_model: str,
    groups: dict[int, list[dict[str, str]]],
    settings: TrainingSettings,
    output_dir: Path,
    *,
    base_identity: str,
    workers: int,
    use_gpu: bool,
    cache_dir: Path,
    shared_dir: Path,
    max_failures: int = 2,
    log=print,
    teacher_scores: dict[int, list[list[float]]] | None = None,  # for settings.distill (core.training)
) -> TrainingOutcome:
    """Fine-tune on `workers` DDP workers; returns what rank 0 recorded (the model is in `output_dir/model`)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    output_dir = output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / OUTCOME_FILE).unlink(missing_ok=True)
    config = {"base_model": base_model, "groups": groups, "settings": asdict(settings), "output_dir": str(output_dir),
              "base_identity": base_identity, "use_gpu": use_gpu, "cache_dir": str(cache_dir.resolve()),
              "teacher_scores": teacher_scores}
    shared_dir.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        run_config=RunConfig(name=f"student-{output_dir.parent.name}-{output_dir.name}-{int(time.time())}",
                             storage_path=str(shared_dir.resolve()), failure_config=FailureConfig(max_failures)),
    )
    log(f"training on Ray: {workers} DDP workers ({'GPU' if use_gpu else 'CPU'}), "
        f"{settings.batch_size // workers} examples per worker and step")
    trainer.fit()
    record = json.loads((output_dir / OUTCOME_FILE).read_text())
    record["model_dir"] = Path(record["model_dir"])
    record["loss_curve"] = [tuple(p) for p in record["loss_curve"]]
    return TrainingOutcome(**record)
