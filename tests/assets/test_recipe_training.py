"""What a recipe changes in its student's training, through the steps on demo-qa with the tiny encoder: queries a
recipe drops leave training (issue 27 item 1)."""

import json

import pytest
from chain import DATASET

from resources import ModelsResource, StorageResource, TeacherConfig
from resources.artifacts import DatasetArtifacts
from retriever_assets import steps
from retriever_assets.core.mining import MiningRecipe
from retriever_assets.core.training import TrainingSettings


def quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def mined(tmp_path_factory, demo_root, tiny_encoder):
    """demo-qa ingested, embedded by the tiny teacher and BM25, candidates built: ready for any recipe."""
    storage = StorageResource(root=str(tmp_path_factory.mktemp("storage")))
    models = ModelsResource(teachers=[TeacherConfig(name="tiny", model=str(tiny_encoder), max_seq_length=64),
                                      TeacherConfig(name="bm25", kind="bm25")], device="cpu")
    steps.ingest_corpus(storage, DATASET, demo_root / DATASET, mode="strict", train_split="train", test_split="test")
    steps.embed_teachers(storage, models, DATASET, batch_size=32, chunk_size=100, log=quiet)
    steps.build_candidates(storage, models, DATASET, top_k=20, query_chunk=16, doc_chunk=128, log=quiet)
    return storage, models


SETTINGS = TrainingSettings(epochs=1, batch_size=16, max_seq_length=32, learning_rate=1e-3, save_steps=100,
                            mini_batch_size=None)


def test_queries_dropped_for_too_few_negatives_leave_training_and_the_exports(mined, tiny_encoder):
    storage, models = mined
    recipe = MiningRecipe(name="percpos-drop", teachers=("tiny", "bm25"), ensemble="intra", short_queries="drop")
    result, _ = steps.mine_negatives(storage, models, DATASET, recipe, log=quiet)
    stats = result.stats
    assert stats["queries_dropped"] == stats["queries_short"] > 0 and stats["queries_with_full_set"] > 0
    kept = set(result.negatives["query_id"].unique().to_list())
    assert len(kept) == stats["queries"] - stats["queries_dropped"]
    folder = DatasetArtifacts(storage, DATASET).negatives_dir(recipe.name)
    flag = [json.loads(line) for line in (folder / "flag_embedding.jsonl").read_text().splitlines()]
    assert len(flag) == len(kept) and all(len(r["neg"]) == recipe.num_negatives for r in flag)

    report = steps.train_student(storage, models, DATASET, recipe.name, base_model=str(tiny_encoder),
                                 settings=SETTINGS, log=quiet).values
    # a dropped query does not train with in-batch negatives only: it is not trained on at all
    assert report["train_queries"] == len(kept)
    assert set(report["examples_by_negative_count"]) == {str(recipe.num_negatives)}


def _weights(folder: str):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(folder, device="cpu")
    return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


def test_a_distillation_recipe_trains_with_the_teacher_scores_and_records_it(mined, tiny_encoder):
    """The same negatives, seed and settings: with distill the loss and the student differ from pure InfoNCE, and
    the student manifest records the option (issue 23)."""
    import dataclasses

    import numpy as np

    storage, models = mined
    runs = {}
    for distill in ("none", "kldiv", "marginmse"):
        recipe = MiningRecipe(name=f"naive-tiny-{distill}", teachers=("tiny",), method="naive", distill=distill)
        steps.mine_negatives(storage, models, DATASET, recipe, log=quiet)
        settings = dataclasses.replace(SETTINGS, distill=recipe.distill, distill_weight=recipe.distill_weight)
        runs[distill] = steps.train_student(storage, models, DATASET, recipe.name, base_model=str(tiny_encoder),
                                            settings=settings, log=quiet).values
    plain = runs["none"]
    for distill in ("kldiv", "marginmse"):
        report = runs[distill]
        assert report["settings"]["distill"] == distill and report["settings"]["distill_weight"] == 1.0
        assert report["examples"] == plain["examples"] and report["steps"] == plain["steps"]
        assert report["loss_curve"][0][1] != pytest.approx(plain["loss_curve"][0][1], abs=1e-4)  # same first batch
        assert np.abs(_weights(report["model_dir"]) - _weights(plain["model_dir"])).max() > 1e-5
        assert report["data_fingerprint"] != plain["data_fingerprint"]
    assert plain["settings"]["distill"] == "none"


def test_distillation_needs_the_teacher_scores_of_one_cosine_teacher(mined, tiny_encoder):
    storage, models = mined
    recipe = MiningRecipe(name="intra-kldiv", teachers=("tiny", "bm25"), distill="kldiv")
    with pytest.raises(Exception, match="one dense teacher"):
        steps.mine_negatives(storage, models, DATASET, recipe, log=quiet)
