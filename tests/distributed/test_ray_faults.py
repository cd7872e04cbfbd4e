"""Fault tolerance: a worker node killed with SIGKILL in the middle of the embedding (its raylet, object store and
actors die); the run completes on the surviving node with every row exactly once, in one table version."""

import json
import threading
import time

import numpy as np
from conftest import DATASET, copy_demo, ingested, start_cluster, stop_cluster

from resources import ComputeResource, ModelsResource, TeacherConfig
from retriever_assets import steps

FILLERS = 6000


def _with_fillers(demo_root, tmp_path):
    """demo-qa plus FILLERS generated documents (no qrels point at them)."""
    root = copy_demo(demo_root, tmp_path / "data")
    corpus = root / DATASET / "corpus.jsonl"
    docs = [json.loads(line) for line in corpus.read_text().splitlines()]
    rng = np.random.default_rng(0)
    words = " ".join(d["text"] for d in docs).split()
    with corpus.open("a") as fh:
        for i in range(FILLERS):
            text = " ".join(rng.choice(words, size=40))
            fh.write(json.dumps({"_id": f"filler-{i:05d}", "title": "", "text": text}) + "\n")
    return root


def test_killing_a_worker_node_mid_embedding_loses_and_duplicates_nothing(tmp_path, demo_root, wide_encoder):
    import ray

    if ray.is_initialized():  # the package cluster of the other tests: this test needs a cluster of its own
        ray.shutdown()
    root = _with_fillers(demo_root, tmp_path)
    storage = ingested(tmp_path / "storage", root)
    models = ModelsResource(teachers=[TeacherConfig(name="wide", model=str(wide_encoder), max_seq_length=64)],
                            device="cpu")
    cluster, nodes = start_cluster(workers=2, cpus=2)  # the surviving node can host both encoders
    try:
        compute = ComputeResource(backend="ray", address=cluster.address, actors=2)
        outcome: dict = {}

        def run():
            try:
                outcome["report"] = steps.embed_teachers(storage, models, DATASET, batch_size=32, chunk_size=512,
                                                         log=print, compute=compute)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(12)  # actors up and encoding (the whole run takes far longer on this encoder)
        assert worker.is_alive(), "the embedding finished before the kill: make FILLERS larger"
        cluster.remove_node(nodes[0], allow_graceful=False)  # SIGKILL to the node's raylet, store and workers
        killed_at = time.time()
        worker.join(timeout=600)
        assert "error" not in outcome, outcome.get("error")
        report = outcome["report"]
        assert time.time() > killed_at
        [wide] = report.values["teachers"]
        assert wide["embedded"] == 150 + FILLERS + 90
        table = storage.embedding_store(DATASET, "wide")._table()
        ids = table.to_arrow()["item_id"].to_pylist()
        assert len(ids) == len(set(ids)) == 150 + FILLERS + 90  # nothing lost, nothing twice
        assert table.version == 1 and len(table.list_versions()) == 1  # one commit for the whole embedding
        alive = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU")]
        assert len(alive) == 1  # the run really finished on the surviving node
    finally:
        stop_cluster(cluster)
