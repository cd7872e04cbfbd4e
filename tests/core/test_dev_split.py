"""The held-out dev split: deterministic, independent of the training-subset order, and the only thing that chooses."""

import polars as pl
import pytest

from retriever_assets.core.corpus import dev_split_name, hold_out_dev
from retriever_assets.core.leaderboard import (
    best_by_dev,
    build_leaderboard,
    cross_dataset_matrix,
    dev_selection_summary,
    summarize_seeds,
)
from retriever_assets.core.training import select_training_queries


def qrels(n: int = 400) -> pl.DataFrame:
    rows = [("train", f"q{i}", f"d{i}", 1) for i in range(n)]
    rows += [("train", f"q{i}", f"d{i + 1}", 1) for i in range(0, n, 7)]  # some queries have two positives
    rows += [("test", f"t{i}", f"d{i}", 1) for i in range(50)]
    return pl.DataFrame(rows, schema={"split": pl.String, "query_id": pl.String, "doc_id": pl.String,
                                      "score": pl.Int32}, orient="row")


def test_dev_hold_out_is_deterministic_whole_queries_and_leaves_test_alone():
    q = qrels()
    held = hold_out_dev(q, "train", 0.2)
    dev_ids = set(held.filter(pl.col("split") == "dev")["query_id"])
    assert 50 <= len(dev_ids) <= 110  # ~80 of 400
    assert held.height == q.height
    assert held.filter(pl.col("split") == "test").equals(q.filter(pl.col("split") == "test"))
    # a query moves with every judgement it has; none is both train and dev
    assert not dev_ids & set(held.filter(pl.col("split") == "train")["query_id"])
    # same choice whatever the row order; another seed chooses differently
    again = hold_out_dev(q.sample(fraction=1.0, shuffle=True, seed=1), "train", 0.2)
    assert set(again.filter(pl.col("split") == "dev")["query_id"]) == dev_ids
    other = set(hold_out_dev(q, "train", 0.2, seed=1).filter(pl.col("split") == "dev")["query_id"])
    assert other != dev_ids
    # adding queries keeps the earlier choice for the queries already there
    bigger = set(hold_out_dev(qrels(800), "train", 0.2).filter(pl.col("split") == "dev")["query_id"])
    assert dev_ids <= bigger


def test_dev_is_not_the_training_subset_order():
    ids = [f"q{i}" for i in range(400)]
    dev_ids = set(hold_out_dev(qrels(), "train", 0.2).filter(pl.col("split") == "dev")["query_id"])
    first = set(select_training_queries(ids, len(dev_ids)))  # the unsalted hash order of training subsets
    assert len(first & dev_ids) < len(dev_ids) / 2


def test_dev_share_zero_is_a_no_op_and_bad_shares_are_refused():
    q = qrels()
    assert hold_out_dev(q, "train", 0.0) is q
    for share in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="dev share"):
            hold_out_dev(q, "train", share)
    with pytest.raises(ValueError, match="holds out 0 of the 2"):
        hold_out_dev(qrels(2), "train", 0.001)
    assert dev_split_name("train", "test") == "dev" and dev_split_name("train", "dev") == "heldout-dev"


def _scores(recipe: str, test: float, dev: float | None, cross: float | None = None) -> dict:
    def result(t, d):
        return {"ndcg_at_10": t, "recall_at_100": 0.9, "mrr_at_10": t, "map_at_10": t,
                **({"dev": {"ndcg_at_10": d}} if d is not None else {}),
                **({"cross": {"other": {"ndcg_at_10": cross}}} if cross is not None else {})}
    return {"results": {"base student": result(0.60, 0.55 if dev is not None else None),
                        f"student ({recipe})": result(test, dev), "teacher m": result(0.60, None)}}


def test_best_by_dev_chooses_on_dev_even_when_test_disagrees():
    scores = {"a": _scores("a", test=0.70, dev=0.61), "b": _scores("b", test=0.68, dev=0.64)}
    board = build_leaderboard(scores, {}, {})
    assert best_by_dev(board)["recipe"] == "b"
    assert board.filter(pl.col("best_by_dev"))["model"].to_list() == ["student: b"]
    assert summarize_seeds(board.with_columns(family=pl.col("recipe")))["dev_ndcg_at_10_mean"].to_list() == [0.61, 0.64]
    summary = dev_selection_summary(board)
    assert summary["dev_selected"] == "b" and summary["test_best"] == "a"
    assert summary["test_points_lost_by_choosing_on_dev"] == pytest.approx(2.0)
    # without dev scores nothing is chosen, and test scores are not used instead
    plain = build_leaderboard({"a": _scores("a", 0.70, None)}, {}, {})
    assert best_by_dev(plain) is None and dev_selection_summary(plain) is None and "best_by_dev" not in plain.columns


def test_cross_dataset_matrix_has_a_row_per_model_and_a_column_per_dataset():
    scores = {"a": _scores("a", 0.70, 0.6, cross=0.40), "b": _scores("b", 0.68, 0.6, cross=0.45)}
    scores["a"]["results"]["base student"]["cross"] = {"other": {"ndcg_at_10": 0.5}}  # b's base row is the same model
    matrix = cross_dataset_matrix("mine", scores)
    assert matrix.columns == ["model", "mine", "other"]
    rows = {r["model"]: r for r in matrix.to_dicts()}
    assert set(rows) == {"base student", "student: a", "student: b"}  # teachers are not scored elsewhere
    assert rows["student: b"]["other"] == 0.45 and rows["base student"]["other"] == 0.5


def test_ingest_refuses_a_negative_share_naming_the_qrels_file(demo_root, tmp_path):
    from resources import StorageResource
    from retriever_assets.steps import ingest_corpus

    with pytest.raises(ValueError, match=r"qrels/train.tsv: dev share must be in \[0, 1\), got -0.1"):
        ingest_corpus(StorageResource(root=str(tmp_path)), "demo-qa", demo_root / "demo-qa", mode="strict",
                      train_split="train", test_split="test", dev_share=-0.1)
    assert not (tmp_path / "demo-qa" / "corpus" / "manifest.json").exists()  # nothing half-written
