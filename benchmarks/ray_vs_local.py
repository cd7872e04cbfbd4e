"""The ray backend vs the local path on one machine: what Ray costs (start-up, scheduling, serialisation) and
what it returns, on a real data set, in one run.

    .venv/bin/python benchmarks/ray_vs_local.py                             # SciFact, MiniLM, Ray started here
    .venv/bin/python benchmarks/ray_vs_local.py --address <head>:6379 --actors 8 --train   # an existing cluster

Phases, each timed on both sides over fresh storage: teacher_embeddings (MiniLM on every document and training
query), candidate_lists (exact top-30), and with --train one epoch of the student on --train-queries queries.
Then it checks what must hold: vectors within 1e-6, and candidates identical when both searches read the same
vectors. Prints a table with the ratio ray / local per phase (> 1 = Ray slower). On one 2-core machine Ray can only
add overhead; on a cluster with more cores or GPUs the same script shows the speed-up.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402

from resources import ComputeResource, ModelsResource, StorageResource, TeacherConfig  # noqa: E402
from resources.artifacts import DatasetArtifacts  # noqa: E402
from retriever_assets import steps  # noqa: E402
from retriever_assets.core.mining import MiningRecipe  # noqa: E402
from retriever_assets.core.training import TrainingSettings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--address", default=None, help="Ray address of an existing cluster (default: start one here)")
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--train", action="store_true", help="also time one training epoch (DDP on --train-workers)")
    ap.add_argument("--train-workers", type=int, default=2)
    ap.add_argument("--train-queries", type=int, default=200)
    ap.add_argument("--train-batch-size", type=int, default=16, help="a multiple of --train-workers")
    args = ap.parse_args()

    import ray

    models = ModelsResource(teachers=[TeacherConfig(name="minilm")], device="auto")
    quiet = lambda m: None  # noqa: E731
    tmp = Path(tempfile.mkdtemp(prefix="ray_vs_local_"))
    sides = {"local": StorageResource(root=str(tmp / "local")), "ray": StorageResource(root=str(tmp / "ray"))}
    for storage in sides.values():
        steps.ingest_corpus(storage, args.dataset, Path(args.data_root) / args.dataset, mode="strict",
                            train_split="train", test_split="test")
    t0 = time.perf_counter()
    ray.init(address=args.address, logging_level="ERROR", log_to_driver=False)
    ray_start = time.perf_counter() - t0
    compute = ComputeResource(backend="ray", address=args.address, actors=args.actors,
                              train_workers=args.train_workers, shared_dir=str(tmp / "shared"))
    print(f"Ray: {compute.describe()} (connected in {ray_start:.1f} s)", flush=True)

    rows, items = [], None
    for name, run in [
        ("teacher_embeddings", lambda s, c: steps.embed_teachers(s, models, args.dataset, batch_size=args.batch_size,
                                                                chunk_size=1024, log=quiet, compute=c)),
        ("candidate_lists", lambda s, c: steps.build_candidates(s, models, args.dataset, top_k=30, query_chunk=4096,
                                                               doc_chunk=65536, log=quiet, compute=c)),
    ]:
        seconds = {}
        for side, c in (("local", None), ("ray", compute)):
            t0 = time.perf_counter()
            report = run(sides[side], c)
            seconds[side] = time.perf_counter() - t0
            print(f"{name:>20} {side:>5}: {seconds[side]:8.1f} s", flush=True)
            if name == "teacher_embeddings":
                items = report.values["teachers"][0]["embedded"]
        rows.append((name, seconds["local"], seconds["ray"]))

    if args.train:
        recipe = MiningRecipe.from_dict({"name": "percpos", "teachers": ["minilm"]})
        settings = TrainingSettings(max_queries=args.train_queries, batch_size=args.train_batch_size)
        seconds = {}
        for side, c in (("local", None), ("ray", compute)):
            steps.mine_negatives(sides[side], models, args.dataset, recipe, log=quiet)
            t0 = time.perf_counter()
            steps.train_student(sides[side], models, args.dataset, "percpos", base_model="all-MiniLM-L6-v2",
                                settings=settings, log=quiet, compute=c)
            seconds[side] = time.perf_counter() - t0
            print(f"{'student_checkpoint':>20} {side:>5}: {seconds[side]:8.1f} s", flush=True)
        rows.append((f"student ({args.train_queries} queries, 1 epoch)", seconds["local"], seconds["ray"]))

    # what must hold: the same vectors (within 1e-6) and, on the same vectors, the same candidates
    stores = {side: s.embedding_store(args.dataset, "minilm") for side, s in sides.items()}
    corpus = DatasetArtifacts(sides["local"], args.dataset).read_corpus()[0]
    ids = corpus["doc_id"].to_list()
    worst = float(np.abs(stores["local"].vectors("document", ids) - stores["ray"].vectors("document", ids)).max())
    ray_candidates = DatasetArtifacts(sides["ray"], args.dataset).read_candidates()[0]
    steps.build_candidates(sides["ray"], models, args.dataset, top_k=30, query_chunk=4096, doc_chunk=65536, log=quiet)
    same = ray_candidates.equals(DatasetArtifacts(sides["ray"], args.dataset).read_candidates()[0])

    print(f"\n{args.dataset}: {items} items embedded; Ray connect/start {ray_start:.1f} s (not in the table)")
    print(f"{'phase':<36} {'local s':>9} {'ray s':>9} {'ray/local':>10}")
    for name, local, remote in rows:
        print(f"{name:<36} {local:9.1f} {remote:9.1f} {remote / local:10.2f}")
    print(f"max |vector difference|: {worst:.2e} (must be <= 1e-6); candidates identical on the same vectors: {same}")
    ray.shutdown()


if __name__ == "__main__":
    main()
