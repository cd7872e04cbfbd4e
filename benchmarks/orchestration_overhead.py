"""Whole pipeline through Dagster vs the sum of its steps called directly (goal: ratio <= 1.10).

    .venv/bin/python benchmarks/orchestration_overhead.py --rounds 3     # bundled demo-qa, real MiniLM

One untimed warm-up (model load, torch and tokenizer start-up, disk cache), then `--rounds` rounds that alternate
the order of the two sides (steps first, then Dagster first, ...): the six steps called directly on fresh
storage, and the same six assets (with their asset checks) materialized in-process through Dagster on fresh
storage and an ephemeral instance. Prints each round, the medians and the ratio of medians.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import dagster as dg  # noqa: E402

from resources import ComputeResource, DataRootResource, ModelsResource, StorageResource  # noqa: E402
from retriever_assets import steps  # noqa: E402
from retriever_assets.core.mining import MiningRecipe  # noqa: E402
from retriever_assets.core.training import TrainingSettings  # noqa: E402
from retriever_assets.definitions import ALL_ASSETS, ALL_CHECKS  # noqa: E402
from retriever_assets.partitions import dataset_partitions  # noqa: E402

BUNDLED = Path(__file__).resolve().parents[1] / "retriever_assets" / "bundled"
DATASET = "demo-qa"


def direct(root: str) -> dict[str, float]:
    storage, teachers, log = StorageResource(root=root), ModelsResource(), (lambda m: None)
    times = {}
    t0 = time.perf_counter()
    steps.ingest_corpus(storage, DATASET, BUNDLED / DATASET, mode="strict", train_split="train", test_split="test")
    times["qa_corpus"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    steps.embed_teachers(storage, teachers, DATASET, batch_size=64, chunk_size=1024, log=log)
    times["teacher_embeddings"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    steps.build_candidates(storage, teachers, DATASET, top_k=30, query_chunk=4096, doc_chunk=65536, log=log)
    times["candidate_lists"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    steps.mine_negatives(storage, teachers, DATASET, MiningRecipe(), log=log)
    times["hard_negatives"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    steps.train_student(storage, teachers, DATASET, MiningRecipe().name, base_model="all-MiniLM-L6-v2",
                        settings=TrainingSettings(), log=log)
    times["student_checkpoint"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    steps.score_models(storage, teachers, DATASET, MiningRecipe().name, batch_size=64, evaluate_teachers=True,
                       log=log)
    times["mteb_scores"] = time.perf_counter() - t0
    return times


def through_dagster(root: str) -> float:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, [DATASET])
    t0 = time.perf_counter()
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS], partition_key=DATASET, instance=instance,
        selection=["qa_corpus", "teacher_embeddings", "candidate_lists", "hard_negatives", "student_checkpoint",
                   "mteb_scores"],
        resources={"data_root": DataRootResource(path=str(BUNDLED)), "storage": StorageResource(root=root),
                   "models": ModelsResource(), "compute": ComputeResource()},
    )
    assert result.success
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as warm:  # untimed: pays every first-use cost once
        direct(warm)
    rows = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            if i % 2 == 0:
                times = direct(a)
                pipeline = through_dagster(b)
            else:
                pipeline = through_dagster(b)
                times = direct(a)
        rows.append((times, pipeline))
        print(f"round {i + 1} ({'steps first' if i % 2 == 0 else 'Dagster first'}): steps "
              f"{sum(times.values()):.1f} s, Dagster {pipeline:.1f} s", flush=True)
    step_names = list(rows[0][0])
    print(f"\n{'step (median of rounds)':<26} {'seconds':>8}")
    for name in step_names:
        print(f"{name:<26} {statistics.median(r[0][name] for r in rows):>8.1f}")
    total = statistics.median(sum(r[0].values()) for r in rows)
    pipeline = statistics.median(r[1] for r in rows)
    print(f"{'sum of steps':<26} {total:>8.1f}")
    print(f"{'Dagster materialize':<26} {pipeline:>8.1f}")
    print(f"ratio pipeline/steps (medians of {args.rounds} alternating rounds): {pipeline / total:.3f} (goal <= 1.10)")
    print("per round: " + ", ".join(f"{p / sum(t.values()):.3f}" for t, p in rows))


if __name__ == "__main__":
    main()
