"""SIGKILL during teacher embedding, then re-run: committed chunks are reused and the table ends identical."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from resources import ModelsResource, StorageResource, TeacherConfig
from retriever_assets import steps

DATASET = "demo-qa"

CHILD = textwrap.dedent("""
    import sys, time
    from resources import StorageResource, TeacherConfig, ModelsResource
    from resources.storage import EmbeddingStore
    from retriever_assets import steps

    original = EmbeddingStore.write
    def slow_write(self, *args, **kwargs):  # widen the window between commits so the kill lands mid-run
        original(self, *args, **kwargs)
        print("committed", flush=True)
        time.sleep(0.7)
    EmbeddingStore.write = slow_write
    storage = StorageResource(root=sys.argv[1])
    teachers = ModelsResource(teachers=[TeacherConfig(name="tiny", model=sys.argv[2], max_seq_length=64)],
                                device="cpu")
    steps.embed_teachers(storage, teachers, sys.argv[3], batch_size=16, chunk_size=40, log=print)
""")


def _ingest(storage: StorageResource, root: Path):
    steps.ingest_corpus(storage, DATASET, root / DATASET, mode="strict", train_split="train", test_split="test")


def _table(storage: StorageResource):
    store = storage.embedding_store(DATASET, "tiny")
    index = store.stored_index().sort("item_id")
    docs = [i[2:] for i in index["item_id"] if i.startswith("d:")]
    return index, store.vectors("document", docs)


def test_killed_embedding_run_resumes_and_matches_an_uninterrupted_run(demo_root, tiny_encoder, tmp_path):
    teachers = ModelsResource(teachers=[TeacherConfig(name="tiny", model=str(tiny_encoder), max_seq_length=64)],
                                device="cpu")
    # reference: one uninterrupted run
    ref = StorageResource(root=str(tmp_path / "ref"))
    _ingest(ref, demo_root)
    full = steps.embed_teachers(ref, teachers, DATASET, batch_size=16, chunk_size=40, log=lambda m: None)
    total = full.values["teachers"][0]["embedded"]

    # killed run
    crashed = StorageResource(root=str(tmp_path / "crashed"))
    _ingest(crashed, demo_root)
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, crashed.root, str(tiny_encoder), DATASET],
                             stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    commits, deadline = 0, time.monotonic() + 300
    while commits < 3 and time.monotonic() < deadline:
        line = child.stdout.readline()
        commits += line.startswith("committed")
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert commits == 3, "the child never committed three chunks"
    committed = crashed.embedding_store(DATASET, "tiny").stored_index().height
    assert 0 < committed < total

    resumed = steps.embed_teachers(crashed, teachers, DATASET, batch_size=16, chunk_size=40, log=lambda m: None)
    row = resumed.values["teachers"][0]
    assert row["unchanged"] == committed and row["embedded"] == total - committed

    ref_index, ref_vectors = _table(ref)
    got_index, got_vectors = _table(crashed)
    assert ref_index.equals(got_index)
    np.testing.assert_allclose(got_vectors, ref_vectors, atol=1e-5)
