"""The whole chain materialized in-process on the bundled demo-qa set with tiny local models."""

import dataclasses
import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from chain import DATASET, all_assets, materializations, materialize, run_config
from sentence_transformers import SentenceTransformer

from retriever_assets.definitions import ALL_ASSETS, ALL_CHECKS


def test_whole_chain_materializes(pipeline):
    result, _, _, storage = pipeline
    assert result.success
    for key in ["qa_corpus", "teacher_embeddings", "candidate_lists", "hard_negatives", "student_checkpoint",
                "mteb_scores"]:
        assert len(materializations(result, key)) == 1, key
    embed = {r.data["teacher"]: r.data for r in
             materializations(result, "teacher_embeddings")[0].metadata["teachers"].value.records}
    assert embed["tiny"]["truncated_items"] > 0  # SciFact abstracts are longer than the tiny model's 64 tokens
    scores = materializations(result, "mteb_scores")[0].metadata
    assert 0 <= scores["ndcg_at_10"].value <= 1
    assert "delta_ndcg_at_10" in scores
    for key in ["qa_corpus", "teacher_embeddings", "candidate_lists", "hard_negatives", "student_checkpoint",
                "mteb_scores", "leaderboard"]:
        assert "disk_mib" in materializations(result, key)[0].metadata, key  # every asset says what it keeps
    student_meta = materializations(result, "student_checkpoint")[0].metadata
    assert student_meta["peak_rss_mib"].value > 50 and student_meta["disk_mib"].value > 0
    assert not (storage / DATASET / "student" / "percpos-0.95" / "trainer").exists()  # checkpoints pruned
    diag = {r.data["teacher"]: r.data for r in
            materializations(result, "candidate_lists")[0].metadata["teacher_diagnostics"].value.records}
    assert set(diag) == {"tiny", "bm25"} and 0 <= diag["tiny"]["train_ndcg_at_10"] <= 1
    assert diag["tiny"]["verdict"].startswith("weak")  # a random encoder is no teacher, and the metadata says so
    disk = materializations(result, "teacher_embeddings")[0].metadata["disk_mib"].value
    assert disk["tiny"] > 0 and disk["bm25"] > 0
    model_dir = Path(materializations(result, "student_checkpoint")[0].metadata["checkpoint"].value)
    assert SentenceTransformer(str(model_dir), device="cpu").encode(["a claim"]).shape == (1, 32)
    saved = json.loads((storage / DATASET / "scores" / "percpos-0.95" / "scores.json").read_text())
    assert Path(saved["results"]["base student"]["result_json"]).is_file()


def test_negatives_are_recorded_and_exported(pipeline):
    _, _, _, storage = pipeline
    folder = storage / DATASET / "negatives" / "percpos-0.95"
    negatives = pl.read_parquet(folder / "negatives.parquet")
    assert set(negatives.columns) >= {"query_id", "doc_id", "teacher", "rank", "score", "pos_score"}
    # the random tiny teacher ranks positives low, so percpos mostly keeps BM25's negatives
    assert "bm25" in set(negatives["teacher"]) and set(negatives["teacher"]) <= {"tiny", "bm25"}
    from datasets import load_from_disk

    ntuple = load_from_disk(str(folder / "ntuple"))
    assert ntuple.column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3", "negative_4"]
    triplets = load_from_disk(str(folder / "triplet"))
    assert triplets.column_names == ["anchor", "positive", "negative"] and triplets.num_rows >= ntuple.num_rows
    first = json.loads((folder / "flag_embedding.jsonl").read_text().splitlines()[0])
    assert set(first) == {"query", "pos", "neg"}


def test_leaderboard_and_audit(pipeline):
    result, _, _, storage = pipeline
    meta = materializations(result, "leaderboard")[0].metadata
    models = [r.data["model"] for r in meta["leaderboard"].value.records]
    assert set(models) == {"base student", "student: percpos-0.95", "teacher tiny"}
    audit = meta["false_negative_audit"].value["percpos-0.95"]
    assert audit["negatives"] > 0 and 0 <= audit["false_negative_share"] <= 1
    folder = storage / DATASET / "leaderboard"
    assert pl.read_csv(folder / "leaderboard.csv").height == 3
    assert (folder / "leaderboard.md").read_text().startswith("| model |")
    # no dev split here: nothing is chosen (test scores never choose), and the pointer says why
    assert "best_by_dev" not in pl.read_csv(folder / "leaderboard.csv").columns
    best = json.loads((folder / "best_student.json").read_text())
    assert best["selected"] is None and "dev_share" in best["reason"]
    assert materializations(result, "best_student")[0].metadata["selected"].value == "none"


def test_checks_pass(pipeline):
    result, *_ = pipeline
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} >= {"no_positive_among_negatives", "negatives_satisfy_rule"}
    assert all(e.passed for e in evaluations if e.check_name != "full_negative_sets")


def test_unchanged_inputs_reuse_the_student_and_the_scores(pipeline, tiny_encoder):
    _, instance, resources, _ = pipeline
    result = materialize(instance, resources, tiny_encoder, selection=["student_checkpoint", "mteb_scores"])
    assert materializations(result, "student_checkpoint")[0].metadata["reused_unchanged_inputs"].value is True
    assert materializations(result, "mteb_scores")[0].metadata["reused_unchanged_inputs"].value is True


def test_a_re_ingest_with_the_same_training_data_keeps_the_student_current(pipeline, demo_root, tiny_encoder,
                                                                           tmp_path):
    """A test-only edit changes the corpus version but not what the student learnt from: the reused student is
    recorded under the new version, so neither it nor its new scores are stale."""
    import shutil

    from chain import resources_for

    _, _, _, storage = pipeline
    root, copy = tmp_path / "data", tmp_path / "storage"
    shutil.copytree(demo_root / DATASET, root / DATASET)
    shutil.copytree(storage, copy)
    test_file = root / DATASET / "qrels" / "test.tsv"
    test_file.write_text("".join(test_file.read_text().splitlines(keepends=True)[:-1]))  # one judgement fewer
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("dataset", [DATASET])
    result = materialize(instance, resources_for(root, copy, tiny_encoder), tiny_encoder,
                         selection=["qa_corpus", "student_checkpoint", "mteb_scores"])
    manifest = json.loads((copy / DATASET / "corpus" / "manifest.json").read_text())
    before = json.loads((storage / DATASET / "corpus" / "manifest.json").read_text())
    assert manifest["version"] != before["version"]
    assert materializations(result, "student_checkpoint")[0].metadata["reused_unchanged_inputs"].value is True
    student = json.loads((copy / DATASET / "student" / "percpos-0.95" / "manifest.json").read_text())
    assert (student["corpus_version"], student["split_key"]) == (manifest["version"], manifest["split_key"])
    scores = json.loads((copy / DATASET / "scores" / "percpos-0.95" / "scores.json").read_text())
    assert scores["stale"] is None and scores["corpus_version"] == manifest["version"]
    assert materializations(result, "mteb_scores")[0].metadata["stale"].value == "no"


def test_a_seed_recipe_gets_its_own_lineage_seed_and_training_subset(pipeline, tiny_encoder):
    from retriever_assets.assets.compare import build_leaderboard_asset
    from retriever_assets.assets.recipes import build_recipe_assets
    from retriever_assets.definitions import RECIPES
    from retriever_assets.lineage import lineages_of

    _, instance, resources, storage = pipeline
    default = dataclasses.replace(RECIPES[0], teachers=("tiny", "bm25"), ensemble="intra")
    seeded = dataclasses.replace(default, name="percpos-seed3", student_seed=3)
    lineages = lineages_of([RECIPES[0], seeded])
    lineage = build_recipe_assets(lineages[1])
    board, best = build_leaderboard_asset(lineages)
    assets = [a for a in ALL_ASSETS if a.key not in (dg.AssetKey("leaderboard"), best.key)] + lineage + [board, best]
    config = run_config(tiny_encoder)["ops"]
    student = config["student_checkpoint"]["config"] | {"max_train_queries": 20}
    ops = {"percpos_seed3__student_checkpoint": {"config": student},
           "percpos_seed3__mteb_scores": config["mteb_scores"],
           "leaderboard": {"config": {"judge_model": str(tiny_encoder), "audit_max_queries": 10}}}
    result = dg.materialize(assets, partition_key=DATASET, instance=instance, resources=resources,
                            run_config={"ops": ops}, selection=[*(a.key for a in lineage), board.key])
    assert result.success
    manifest = json.loads((storage / DATASET / "student" / "percpos-seed3" / "manifest.json").read_text())
    assert manifest["settings"]["seed"] == 3 and manifest["settings"]["max_queries"] == 20
    assert manifest["train_queries"] == 20
    mined = {name: pl.read_parquet(storage / DATASET / "negatives" / name / "negatives.parquet")
             for name in ("percpos-0.95", "percpos-seed3")}
    assert mined["percpos-0.95"].equals(mined["percpos-seed3"])  # same mining; only the student differs
    seeds = pl.read_csv(storage / DATASET / "leaderboard" / "seeds.csv")
    # trained on 20 queries instead of all 90: not a second seed of the same experiment
    assert sorted(seeds["family"].to_list()) == ["percpos-0.95", "percpos-seed3"]
    assert seeds["students"].to_list() == [1, 1]
    audit = json.loads((storage / DATASET / "leaderboard" / "audit.json").read_text())
    assert {a["queries_audited"] for a in audit.values()} == {10}  # a fixed subset, the same for each recipe
    assert audit["percpos-0.95"]["negatives"] == audit["percpos-seed3"]["negatives"] <= 10 * 4


def test_editing_one_document_re_embeds_exactly_one(pipeline, demo_root, tiny_encoder, tmp_path):
    _, instance, resources, _ = pipeline
    corpus = demo_root / DATASET / "corpus.jsonl"
    original = corpus.read_text(encoding="utf-8")
    lines = original.splitlines()
    record = json.loads(lines[5])
    record["text"] += " An edited sentence."
    lines[5] = json.dumps(record)
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        result = materialize(instance, resources, tiny_encoder, selection=["qa_corpus", "teacher_embeddings"])
        meta = materializations(result, "teacher_embeddings")[0].metadata
        rows = {r.data["teacher"]: r.data for r in meta["teachers"].value.records}
        assert rows["tiny"]["embedded"] == 1 and rows["tiny"]["deleted"] == 0
        assert rows["bm25"]["kind"] == "bm25"
        versions = meta["lancedb_table_versions"].value
        assert versions["tiny"] > 1
    finally:
        corpus.write_text(original, encoding="utf-8")



def test_candidate_lists_through_the_ann_index_report_recall(pipeline, tiny_encoder):
    _, instance, resources, storage = pipeline
    folder = storage / DATASET / "candidates"
    found = {}
    for search in ("exact", "ann"):
        config = {"ops": {"candidate_lists": {"config": {"top_k": 20, "search": search, "ann_nprobes": 50}}}}
        result = dg.materialize(all_assets(), partition_key=DATASET, instance=instance, resources=resources,
                                run_config=config, selection=["candidate_lists"])
        rows = {r.data["teacher"]: r.data for r in
                materializations(result, "candidate_lists")[0].metadata["teachers"].value.records}
        assert rows["tiny"]["search"] == search and rows["bm25"]["search"] == "bm25"
        found[search] = pl.read_parquet(folder / "candidates.parquet").filter(pl.col("teacher") == "tiny")
    assert rows["tiny"]["ann_recall_at_k"] >= 0.9 and rows["tiny"]["ann_recall_queries"] > 0
    pairs = {s: set(f.select("query_id", "doc_id").iter_rows()) for s, f in found.items()}
    assert len(pairs["ann"] & pairs["exact"]) >= 0.9 * len(pairs["exact"])
    both = found["ann"].join(found["exact"], on=["query_id", "doc_id"], suffix="_exact")
    assert (both["score"] - both["score_exact"]).abs().max() < 1e-4  # refined: exact cosines, like the positives


def test_audits_are_kept_while_negatives_are_unchanged(pipeline, tiny_encoder):
    from retriever_assets import steps

    _, _, resources, storage = pipeline
    folder = storage / DATASET / "leaderboard"
    storage_res, teachers = resources["storage"], resources["models"]
    messages: list[str] = []
    # the same judge and settings again: the audit is reused, not recomputed
    first = steps.compare_recipes(storage_res, teachers, DATASET, ["percpos-0.95"], judge_model=str(tiny_encoder),
                                  audit_max_queries=10, log=messages.append)
    second = steps.compare_recipes(storage_res, teachers, DATASET, ["percpos-0.95"], judge_model=str(tiny_encoder),
                                   audit_max_queries=10, log=messages.append)
    assert any("audit reused" in m for m in messages)
    keys = ("false_negative_share", "negatives", "suspected_false_negatives", "queries_audited", "negatives_hash")

    def same(a: dict, b: dict) -> bool:
        return all(a[k] == b[k] for k in keys)

    assert same(second.values["audits"]["percpos-0.95"], first.values["audits"]["percpos-0.95"])
    # no judge now (e.g. a plain run adding another recipe): the earlier audit stays on the board
    plain = steps.compare_recipes(storage_res, teachers, DATASET, ["percpos-0.95"], judge_model=None,
                                  log=messages.append)
    assert same(plain.values["audits"]["percpos-0.95"], first.values["audits"]["percpos-0.95"])
    assert plain.values["board"].filter(pl.col("recipe") == "percpos-0.95")["false_negative_share"][0] is not None
    # negatives that changed since the audit: it is dropped rather than shown for other negatives
    audit = json.loads((folder / "audit.json").read_text())
    audit["percpos-0.95"]["negatives_hash"] = "something else"
    (folder / "audit.json").write_text(json.dumps(audit))
    stale = steps.compare_recipes(storage_res, teachers, DATASET, ["percpos-0.95"], judge_model=None,
                                  log=messages.append)
    assert stale.values["audits"] == {}
    steps.compare_recipes(storage_res, teachers, DATASET, ["percpos-0.95"], judge_model=str(tiny_encoder),
                          audit_max_queries=10, log=messages.append)  # leave an audit for the other tests


def test_an_audit_is_keyed_by_the_judge_weights_and_the_audited_query_ids(demo_root, tiny_encoder, wide_encoder,
                                                                          tmp_path):
    """Not by the judge's path nor by how many queries were audited: the same weights elsewhere reuse the audit,
    other weights under the same path or other audited queries of the same count are judged again."""
    import shutil

    from resources import ModelsResource, StorageResource
    from resources.artifacts import DatasetArtifacts
    from retriever_assets import steps

    store, models = StorageResource(root=str(tmp_path / "storage")), ModelsResource(teachers=[], device="cpu")
    steps.ingest_corpus(store, DATASET, demo_root / DATASET, mode="strict", train_split="train", test_split="test")
    artifacts = DatasetArtifacts(store, DATASET)
    corpus, _, qrels, _ = artifacts.read_corpus()
    # a hand-made lineage: two non-positive documents of each training query as its negatives
    positives = qrels.filter(pl.col("split") == "train")
    docs = corpus["doc_id"].to_list()
    rows = [(q, d) for q, pos in positives.group_by("query_id").agg("doc_id").iter_rows()
            for d in [d for d in docs if d not in pos][:2]]
    artifacts.negatives_dir("r").mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema=["query_id", "doc_id"], orient="row").write_parquet(artifacts.negatives_file("r"))
    artifacts.mining_stats_file("r").write_text(json.dumps({"candidates": 1, "candidates_dropped_by_rule": 0}))
    metrics = {"ndcg_at_10": 0.5, "recall_at_100": 0.5, "mrr_at_10": 0.5, "map_at_10": 0.5}
    artifacts.student_dir("r").mkdir(parents=True, exist_ok=True)
    artifacts.student_manifest_file("r").write_text(json.dumps({"fingerprint": "fp", "settings": {}}))
    artifacts.scores_dir("r").mkdir(parents=True, exist_ok=True)
    artifacts.scores_file("r").write_text(json.dumps({"results": {
        "base student": metrics, "student (r)": metrics | {"fingerprint": "fp"}}}))
    judge, moved = tmp_path / "judge", tmp_path / "moved"
    shutil.copytree(tiny_encoder, judge)
    shutil.copytree(tiny_encoder, moved)

    def audit(path: Path) -> tuple[dict, bool]:
        messages: list[str] = []
        report = steps.compare_recipes(store, models, DATASET, ["r"], judge_model=str(path), audit_max_queries=10,
                                       log=messages.append)
        return report.values["audits"]["r"], any("audit reused" in m for m in messages)

    first, _ = audit(judge)
    again, reused = audit(moved)  # the same weights in another folder
    assert reused and again["false_negative_share"] == first["false_negative_share"]
    shutil.rmtree(judge)
    shutil.copytree(wide_encoder, judge)  # other weights under the same path
    changed, reused = audit(judge)
    assert not reused and changed["judge_fingerprint"] != first["judge_fingerprint"]
    # other training queries (a dev split held out since) with the same audited count: judged again
    steps.ingest_corpus(store, DATASET, demo_root / DATASET, mode="strict", train_split="train", test_split="test",
                        dev_share=0.2)
    regrouped, reused = audit(judge)
    assert not reused and regrouped["queries_audited"] == changed["queries_audited"] == 10
    assert regrouped["audited_queries_hash"] != changed["audited_queries_hash"]


# nDCG@10 on demo-qa's 40 test queries of the tiny deterministic chain (seeded random encoder, seeded training),
# measured on 2 CPU cores and again with OMP_NUM_THREADS=1: identical to 4 decimals. The random 2-layer encoder is
# weak (base 0.0627), but a student that stopped learning (= base) or learnt from other negatives leaves the band;
# `0 <= x <= 1` would notice neither. Mining is pinned exactly, by counts.
EXPECTED_NDCG = {"base student": 0.0627, "teacher tiny": 0.0627, "student (percpos-0.95)": 0.0875}
BAND = 0.002
EXPECTED_MINING = {"queries": 90, "queries_with_full_set": 72, "negatives": 297, "candidates": 3477,
                   "candidates_dropped_by_rule": 2207}


def test_scores_of_the_tiny_chain_stay_where_they_were(pipeline):
    _, _, _, storage = pipeline
    saved = json.loads((storage / DATASET / "scores" / "percpos-0.95" / "scores.json").read_text())
    got = {label: round(r["ndcg_at_10"], 4) for label, r in saved["results"].items()}
    for label, expected in EXPECTED_NDCG.items():
        assert got[label] == pytest.approx(expected, abs=BAND), (label, got)
    stats = json.loads((storage / DATASET / "negatives" / "percpos-0.95" / "stats.json").read_text())
    counts = {k: stats[k] for k in ("queries", "queries_with_full_set", "negatives", "candidates",
                                    "candidates_dropped_by_rule")}
    assert counts == EXPECTED_MINING


def test_rule_check_fails_on_a_negative_that_breaks_its_rule(pipeline, tiny_encoder):
    _, instance, resources, storage = pipeline
    path = storage / DATASET / "negatives" / "percpos-0.95" / "negatives.parquet"
    original = pl.read_parquet(path)
    # a negative scored above its positive can never pass percpos: the check must see it
    tampered = original.with_columns(score=pl.when(pl.int_range(pl.len()) == 0).then(pl.col("pos_score") + 0.01)
                                     .otherwise(pl.col("score")))
    tampered.write_parquet(path)
    try:
        job = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, resources=resources
                             ).resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(partition_key=DATASET, instance=instance, raise_on_error=False,
                                        op_selection=["hard_negatives_negatives_satisfy_rule"])
        evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "negatives_satisfy_rule")
        assert not evaluation.passed and evaluation.metadata["violations"].value == 1
    finally:
        original.write_parquet(path)


def test_each_scoring_length_keeps_its_own_mteb_result_file(pipeline, tiny_encoder):
    _, instance, resources, storage = pipeline
    saved_path = storage / DATASET / "scores" / "percpos-0.95" / "scores.json"
    files = {}
    for length in (16, 64):
        config = {"ops": {"mteb_scores": {"config": {"batch_size": 32, "max_seq_length": length}}}}
        dg.materialize(all_assets(), partition_key=DATASET, instance=instance, resources=resources,
                       run_config=config, selection=["mteb_scores"])
        student = json.loads(saved_path.read_text())["results"]["student (percpos-0.95)"]
        files[length] = (Path(student["result_json"]), student["ndcg_at_10"])
    assert files[16][0] != files[64][0]
    for path, ndcg in files.values():  # each file still holds the score the cache points it at
        result = json.loads(path.read_text())
        assert result["scores"]["test"][0]["ndcg_at_10"] == pytest.approx(ndcg)
    assert files[16][1] != files[64][1]


def test_a_distillation_recipe_is_its_own_lineage_and_trains_another_student(pipeline, tiny_encoder):
    """The built-in percpos-gemma-distill on the tiny teacher, next to its pure-InfoNCE twin (same negatives and
    seed): its student records the option, differs from the twin's, is scored, and is its own family (issue 23).
    Naive mining: the random tiny teacher ranks no candidate below a positive, so percpos would leave no negative
    (and nothing to distill)."""
    from retriever_assets.assets.compare import build_leaderboard_asset
    from retriever_assets.assets.recipes import build_recipe_assets
    from retriever_assets.definitions import RECIPES
    from retriever_assets.lineage import lineages_of
    from retriever_assets.recipes import BUILTIN_RECIPES

    _, instance, resources, storage = pipeline
    distill = dataclasses.replace(BUILTIN_RECIPES["percpos-gemma-distill"], name="naive-tiny-distill",
                                  teachers=("tiny",), method="naive", param=None)
    twin = dataclasses.replace(distill, name="naive-tiny-infonce", distill="none")
    lineages = lineages_of([RECIPES[0], distill, twin])
    recipe_assets = [a for lineage in lineages[1:] for a in build_recipe_assets(lineage)]
    board, best = build_leaderboard_asset(lineages)
    assets = [a for a in ALL_ASSETS if a.key not in (dg.AssetKey("leaderboard"), best.key)] + recipe_assets + [
        board, best]
    config = run_config(tiny_encoder)["ops"]
    ops = {f"{lineage.op_prefix}{stage}": config[stage] for lineage in lineages[1:]
           for stage in ("student_checkpoint", "mteb_scores")}
    result = dg.materialize(assets, partition_key=DATASET, instance=instance, resources=resources,
                            run_config={"ops": ops}, selection=[*(a.key for a in recipe_assets), board.key])
    assert result.success
    [meta] = materializations(result, "naive_tiny_distill/student_checkpoint")
    assert meta.metadata["settings"].value["distill"] == "kldiv"
    student = {name: json.loads((storage / DATASET / "student" / name / "manifest.json").read_text())
               for name in (distill.name, twin.name)}
    mined = {name: pl.read_parquet(storage / DATASET / "negatives" / name / "negatives.parquet")
             for name in (distill.name, twin.name)}
    assert mined[distill.name].equals(mined[twin.name]) and mined[twin.name].height > 0  # same mining
    assert [student[n]["settings"]["distill"] for n in (distill.name, twin.name)] == ["kldiv", "none"]
    assert student[distill.name]["settings"]["seed"] == student[twin.name]["settings"]["seed"]
    assert student[distill.name]["distilled_examples"] == student[distill.name]["examples"] > 0
    assert student[distill.name]["loss_curve"] != student[twin.name]["loss_curve"]
    assert student[distill.name]["fingerprint"] != student[twin.name]["fingerprint"]
    scores = json.loads((storage / DATASET / "scores" / distill.name / "scores.json").read_text())
    assert 0 <= scores["results"][f"student ({distill.name})"]["ndcg_at_10"] <= 1
    seeds = pl.read_csv(storage / DATASET / "leaderboard" / "seeds.csv")
    assert {distill.name, twin.name} <= set(seeds["family"].to_list())  # not seeds of one experiment


def test_a_configured_teacher_judges_from_its_stored_vectors_and_says_when_it_is_not_independent(
        pipeline, tiny_encoder):
    """judge_model naming a dense teacher (e.g. gemma) reuses its LanceDB vectors: the same judgement as encoding
    again with the same model and length, and flagged as not independent for the recipes that teacher mined."""
    from retriever_assets import steps

    _, _, resources, storage = pipeline
    storage_res, teachers = resources["storage"], resources["models"]
    by_path = steps.compare_recipes(storage_res, teachers, DATASET, ["percpos-0.95"], judge_model=str(tiny_encoder),
                                    judge_max_seq_length=64, audit_max_queries=10, log=print)
    by_teacher = steps.compare_recipes(storage_res, teachers, DATASET, ["percpos-0.95"], judge_model="tiny",
                                       audit_max_queries=10, log=print)
    a, b = by_path.values["audits"]["percpos-0.95"], by_teacher.values["audits"]["percpos-0.95"]
    assert a["negatives"] == b["negatives"] > 0
    assert b["suspected_false_negatives"] == a["suspected_false_negatives"]
    assert a["judge_independent"] is True  # a judge given as a model path is no teacher of the recipe
    mined_by = json.loads((storage / DATASET / "negatives" / "percpos-0.95" / "stats.json").read_text())
    assert "tiny" in mined_by["recipe"]["teachers"]
    assert b["judge_independent"] is False and "not an independent audit" in b["audit_note"]  # tiny mined them
    assert b["judge_fingerprint"].startswith("teacher tiny: ")
    with pytest.raises(ValueError, match="dense judge"):
        steps.compare_recipes(storage_res, teachers, DATASET, ["percpos-0.95"], judge_model="bm25",
                              audit_max_queries=10, log=print)
    steps.compare_recipes(storage_res, teachers, DATASET, ["percpos-0.95"], judge_model=str(tiny_encoder),
                          audit_max_queries=10, log=print)  # leave the usual audit for the other tests
