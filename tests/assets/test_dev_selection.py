"""Recipe choice on a held-out dev split, the `best_student` pointer, and scores on another dataset, in Dagster."""

import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
from chain import DATASET, materializations, resources_for, run_config
from sentence_transformers import SentenceTransformer

from retriever_assets.assets.compare import build_leaderboard_asset
from retriever_assets.assets.recipes import build_recipe_assets
from retriever_assets.definitions import ALL_ASSETS, RECIPES
from retriever_assets.lineage import lineages_of
from retriever_assets.partitions import dataset_partitions


def test_dev_split_chooses_the_best_student_and_students_are_scored_on_other_datasets(
        tmp_path, demo_root, tiny_encoder):
    root = tmp_path / "data"
    shutil.copytree(demo_root / DATASET, root / DATASET)
    shutil.copytree(demo_root / DATASET, root / "demo-copy")  # another dataset: here the same files
    storage = tmp_path / "storage"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, [DATASET, "demo-copy"])
    resources = resources_for(root, storage, tiny_encoder)
    two = [RECIPES[0], RECIPES[0].__class__(name="naive", method="naive", teachers=("tiny",))]
    lineages = lineages_of(two)
    recipe_assets = [a for lineage in lineages for a in build_recipe_assets(lineage)]
    board, best = build_leaderboard_asset(lineages)
    base = [a for a in ALL_ASSETS if a.key.to_user_string() in
            ("raw_qa_folder", "qa_corpus", "teacher_embeddings", "candidate_lists")]
    assets = [*base, *recipe_assets, board, best]
    ops = run_config(tiny_encoder)["ops"]
    ops["qa_corpus"] = {"config": {"dev_share": 0.2}}
    for prefix in ("naive__",):
        for stage in ("student_checkpoint", "mteb_scores"):
            ops[prefix + stage] = ops[stage]
    # the other dataset only needs its corpus ingested to be scored on
    assert dg.materialize(assets, partition_key="demo-copy", instance=instance, resources=resources,
                          selection=["qa_corpus"]).success
    result = dg.materialize(assets, partition_key=DATASET, instance=instance, resources=resources,
                            run_config={"ops": ops})
    assert result.success
    manifest = json.loads((storage / DATASET / "corpus" / "manifest.json").read_text())
    assert manifest["dev_split"] == "dev" and 10 <= manifest["dev_queries"] <= 28  # ~18 of 90
    qrels = pl.read_parquet(storage / DATASET / "corpus" / "qrels.parquet")
    dev_ids = set(qrels.filter(pl.col("split") == "dev")["query_id"])
    # held-out queries are neither mined nor trained on
    for recipe in ("percpos-0.95", "naive"):
        negatives = pl.read_parquet(storage / DATASET / "negatives" / recipe / "negatives.parquet")
        assert negatives.height and not dev_ids & set(negatives["query_id"])
        student = json.loads((storage / DATASET / "student" / recipe / "manifest.json").read_text())
        assert student["train_queries"] == 90 - len(dev_ids)
    scores = json.loads((storage / DATASET / "scores" / "naive" / "scores.json").read_text())
    assert scores["dev_split"] == "dev" and scores["cross_datasets"] == ["demo-copy"]
    base_row, student_row = scores["results"]["base student"], scores["results"]["student (naive)"]
    assert 0 < student_row["dev"]["ndcg_at_10"] <= 1 and 0 <= base_row["dev"]["ndcg_at_10"] <= 1  # a random base
    # the other dataset has the same test split: the same model must score the same there
    assert abs(base_row["cross"]["demo-copy"]["ndcg_at_10"] - base_row["ndcg_at_10"]) < 1e-9
    assert abs(student_row["cross"]["demo-copy"]["ndcg_at_10"] - student_row["ndcg_at_10"]) < 1e-9
    teacher = scores["results"]["teacher tiny"]  # here the same weights as the base: scored once, not re-scored
    assert teacher.get("same_as") == "base student" or "cross" not in teacher

    board_frame = pl.read_csv(storage / DATASET / "leaderboard" / "leaderboard.csv")
    students = board_frame.filter(pl.col("recipe").is_not_null())
    winner = students.sort("dev_ndcg_at_10", descending=True)["recipe"][0]
    assert students.filter(pl.col("best_by_dev"))["recipe"].to_list() == [winner]
    matrix = pl.read_csv(storage / DATASET / "leaderboard" / "cross_dataset.csv")
    assert matrix.columns == ["model", DATASET, "demo-copy"] and matrix.height == 3
    meta = materializations(result, "leaderboard")[0].metadata
    assert meta["best_by_dev"].value["dev_selected"] == winner
    pointer = json.loads((storage / DATASET / "leaderboard" / "best_student.json").read_text())
    assert pointer["selected"] == winner and pointer["selected_by"] == "dev_ndcg_at_10"
    assert materializations(result, "best_student")[0].metadata["selected"].value == winner
    assert SentenceTransformer(pointer["model_dir"], device="cpu").encode(["x"]).shape == (1, 32)
    assert Path(pointer["model_dir"]) == Path(json.loads(
        (storage / DATASET / "student" / winner / "manifest.json").read_text())["model_dir"])


def test_a_student_trained_before_a_re_ingest_is_shown_stale_and_never_chosen(tmp_path, demo_root, tiny_encoder):
    """Train with dev share 0, re-ingest with 0.2, materialize only the old lineage's mteb_scores: its student was
    trained on what are now dev queries, so its dev score is inflated; the board marks it stale and ranks it after
    every current row, and best_by_dev / best_student choose among current students only."""
    root = tmp_path / "data"
    shutil.copytree(demo_root / DATASET, root / DATASET)
    storage = tmp_path / "storage"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, [DATASET])
    resources = resources_for(root, storage, tiny_encoder)
    two = [RECIPES[0], RECIPES[0].__class__(name="naive", method="naive", teachers=("tiny",))]
    lineages = lineages_of(two)
    recipe_assets = [a for lineage in lineages for a in build_recipe_assets(lineage)]
    board, best = build_leaderboard_asset(lineages)
    base = [a for a in ALL_ASSETS if a.key.to_user_string() in
            ("raw_qa_folder", "qa_corpus", "teacher_embeddings", "candidate_lists")]
    assets = [*base, *recipe_assets, board, best]
    ops = run_config(tiny_encoder)["ops"]
    ops["student_checkpoint"] = {"config": ops["student_checkpoint"]["config"] | {"epochs": 1}}
    ops["naive__student_checkpoint"] = ops["student_checkpoint"]
    ops["mteb_scores"] = {"config": {"batch_size": 32, "cross_datasets": []}}
    ops["naive__mteb_scores"] = ops["mteb_scores"]

    def run(selection, corpus=None):
        config = {"ops": {k: v for k, v in (ops | {"qa_corpus": {"config": corpus or {}}}).items()
                          if k.replace("__", "/") in selection}}
        assert dg.materialize(assets, partition_key=DATASET, instance=instance, resources=resources,
                              run_config=config, selection=selection).success

    chain = ["qa_corpus", "teacher_embeddings", "candidate_lists"]
    run([*chain, "hard_negatives", "student_checkpoint"], {"dev_share": 0.0})  # percpos trained on all 90 queries
    old_student = json.loads((storage / DATASET / "student" / "percpos-0.95" / "manifest.json").read_text())
    run([*chain, "naive/hard_negatives", "naive/student_checkpoint", "naive/mteb_scores"], {"dev_share": 0.2})
    run(["mteb_scores"])  # only the scores of the old lineage: its student is not retrained
    manifest = json.loads((storage / DATASET / "corpus" / "manifest.json").read_text())
    assert old_student["corpus_version"] != manifest["version"] and old_student["split_key"] != manifest["split_key"]
    scores = json.loads((storage / DATASET / "scores" / "percpos-0.95" / "scores.json").read_text())
    assert scores["corpus_version"] == manifest["version"] and "trained on corpus version" in scores["stale"]
    naive = json.loads((storage / DATASET / "student" / "naive" / "manifest.json").read_text())
    assert (naive["corpus_version"], naive["split_key"]) == (manifest["version"], manifest["split_key"])

    result = dg.materialize(assets, partition_key=DATASET, instance=instance, resources=resources,
                            run_config={"ops": {"leaderboard": {"config": {}}}},
                            selection=["leaderboard", "best_student"])
    assert result.success
    frame = pl.read_csv(storage / DATASET / "leaderboard" / "leaderboard.csv")
    rows = {r["model"]: r for r in frame.to_dicts()}
    assert "trained on corpus version" in rows["student: percpos-0.95"]["stale"]
    assert rows["student: naive"]["stale"] is None and rows["base student"]["stale"] is None
    assert frame["model"].to_list()[-1] == "student: percpos-0.95"  # after every current row, whatever its score
    assert frame.filter(pl.col("best_by_dev"))["recipe"].to_list() == ["naive"]
    meta = materializations(result, "leaderboard")[0].metadata
    assert list(meta["stale_rows"].value) == ["student: percpos-0.95"]
    assert meta["best_by_dev"].value["dev_selected"] == "naive"
    pointer = json.loads((storage / DATASET / "leaderboard" / "best_student.json").read_text())
    assert pointer["selected"] == "naive"
