"""SIGKILL during student training, then re-run: training resumes from the latest checkpoint and ends identical."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
from sentence_transformers import SentenceTransformer

from resources import ModelsResource, StorageResource, TeacherConfig
from retriever_assets import steps
from retriever_assets.core.mining import MiningRecipe
from retriever_assets.core.training import TrainingSettings

DATASET = "demo-qa"
SETTINGS = dict(batch_size=4, max_seq_length=32, save_steps=2, seed=3)

CHILD = textwrap.dedent("""
    import sys, time
    import transformers
    from resources import StorageResource, TeacherConfig, ModelsResource
    from retriever_assets import steps
    from retriever_assets.core.training import TrainingSettings

    step = transformers.Trainer.training_step
    def slow_step(self, *args, **kwargs):  # widen the window so the kill lands mid-training
        time.sleep(0.4)
        return step(self, *args, **kwargs)
    transformers.Trainer.training_step = slow_step
    storage = StorageResource(root=sys.argv[1])
    teachers = ModelsResource(teachers=[TeacherConfig(name="tiny", model=sys.argv[2], max_seq_length=32)],
                                device="cpu")
    steps.train_student(storage, teachers, sys.argv[3], "r", base_model=sys.argv[2],
                        settings=TrainingSettings(batch_size=4, max_seq_length=32, save_steps=2, seed=3),
                        log=print)
""")


def _prepare(root: Path, data_root: Path, tiny: Path) -> tuple[StorageResource, ModelsResource]:
    storage = StorageResource(root=str(root))
    teachers = ModelsResource(teachers=[TeacherConfig(name="tiny", model=str(tiny), max_seq_length=32)],
                                device="cpu")
    steps.ingest_corpus(storage, DATASET, data_root / DATASET, mode="strict", train_split="train", test_split="test")
    steps.embed_teachers(storage, teachers, DATASET, batch_size=32, chunk_size=500, log=lambda m: None)
    steps.build_candidates(storage, teachers, DATASET, top_k=10, query_chunk=64, doc_chunk=512, log=lambda m: None)
    steps.mine_negatives(storage, teachers, DATASET, MiningRecipe(name="r", teachers=("tiny",), method="naive"),
                         log=lambda m: None)
    return storage, teachers


def _weights(folder: str) -> np.ndarray:
    model = SentenceTransformer(folder, device="cpu")
    return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


def test_killed_training_resumes_from_the_latest_checkpoint(demo_root, tiny_encoder, tmp_path):
    ref_storage, teachers = _prepare(tmp_path / "ref", demo_root, tiny_encoder)
    ref = steps.train_student(ref_storage, teachers, DATASET, "r", base_model=str(tiny_encoder),
                              settings=TrainingSettings(**SETTINGS), log=lambda m: None)

    storage, teachers = _prepare(tmp_path / "crashed", demo_root, tiny_encoder)
    trainer_dir = Path(storage.root) / DATASET / "student" / "r" / "trainer"
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, storage.root, str(tiny_encoder), DATASET], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(trainer_dir.glob("checkpoint-4/elapsed_seconds.json")):
        time.sleep(0.1)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert list(trainer_dir.glob("checkpoint-*")), "no checkpoint was written before the kill"
    assert not (trainer_dir.parent / "model").exists(), "the kill came too late: training had finished"
    complete = [p for p in trainer_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    assert len(complete) == 1, complete  # only what resume needs: the latest complete checkpoint
    latest = max(trainer_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    before = json.loads((latest / "elapsed_seconds.json").read_text())["seconds"]

    resumed = steps.train_student(storage, teachers, DATASET, "r", base_model=str(tiny_encoder),
                                  settings=TrainingSettings(**SETTINGS), log=lambda m: None)
    assert resumed.values["resumed_from"] and "checkpoint-" in resumed.values["resumed_from"]
    # the killed attempt's time counts: the checkpoint recorded it (>= 4 slowed steps) and the total includes it
    assert before >= 4 * 0.4
    assert resumed.values["train_seconds"] >= round(before, 1)
    assert resumed.values["steps"] == ref.values["steps"]
    np.testing.assert_allclose(_weights(resumed.values["model_dir"]), _weights(ref.values["model_dir"]), atol=1e-6)
    assert not trainer_dir.exists()  # pruned after success: the model folder is all that stays
    negatives = pl.read_parquet(Path(storage.root) / DATASET / "negatives" / "r" / "negatives.parquet")
    assert negatives.height > 0
