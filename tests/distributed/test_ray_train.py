"""Ray Train: the student trained by 2 DDP workers (gloo on the CPU) through the train step."""

import json

from conftest import DATASET, ingested, ray_compute, tiny_models
from sentence_transformers import SentenceTransformer

from resources.artifacts import DatasetArtifacts
from retriever_assets import steps
from retriever_assets.core.mining import MiningRecipe
from retriever_assets.core.training import TrainingSettings


def test_ddp_training_with_two_workers_saves_a_loadable_student(ray_cluster, tmp_path, demo_root, tiny_encoder):
    models = tiny_models(tiny_encoder)
    storage = ingested(tmp_path / "storage", demo_root)
    quiet = lambda m: None  # noqa: E731
    steps.embed_teachers(storage, models, DATASET, batch_size=32, chunk_size=100, log=quiet)
    steps.build_candidates(storage, models, DATASET, top_k=20, query_chunk=16, doc_chunk=128, log=quiet)
    steps.mine_negatives(storage, models, DATASET, MiningRecipe.from_dict({"name": "percpos", "teachers": ["tiny"]}),
                         log=quiet)
    settings = TrainingSettings(epochs=1, batch_size=8, max_seq_length=64, learning_rate=1e-3, save_steps=4)
    compute = ray_compute(ray_cluster, train_workers=2, shared_dir=str(tmp_path / "shared"))
    lines = []
    report = steps.train_student(storage, models, DATASET, "percpos", base_model=str(tiny_encoder),
                                 settings=settings, log=lines.append, compute=compute).values
    assert report["train_workers"] == 2 and report["compute"]["backend"] == "ray"
    assert report["examples"] >= 90 and report["steps"] > 0 and report["loss_curve"]
    assert any("2 DDP workers" in line and "4 examples per worker" in line for line in lines)
    model_dir = DatasetArtifacts(storage, DATASET).student_dir("percpos") / "model"
    assert report["model_dir"] == str(model_dir)
    student = SentenceTransformer(str(model_dir), device="cpu")
    base = SentenceTransformer(str(tiny_encoder), device="cpu")
    texts = ["when does the winter ferry leave", "harbour opening hours"]
    moved = abs(student.encode(texts) - base.encode(texts)).max()
    assert moved > 1e-4, "the saved student is the base model: training did not update it"
    assert not (model_dir.parent / "trainer").exists()  # checkpoints removed once the model is saved
    manifest = json.loads(DatasetArtifacts(storage, DATASET).student_manifest_file("percpos").read_text())
    assert manifest["data_fingerprint"].endswith("-ddp2")
