"""Leaderboard rows and the false-negative audit on tiny hand-built data."""

import numpy as np
import polars as pl
import pytest

from retriever_assets.core.leaderboard import (
    best_by_dev,
    build_leaderboard,
    dev_selection_summary,
    false_negative_audit,
    recipe_family,
    summarize_seeds,
    to_markdown,
)


def scores(student):
    return {"results": {
        "base student": {"ndcg_at_10": 0.60, "recall_at_100": 0.9, "mrr_at_10": 0.5, "map_at_10": 0.5},
        "student (x)": {"ndcg_at_10": student, "recall_at_100": 0.92, "mrr_at_10": 0.55, "map_at_10": 0.52},
        "teacher minilm": {"ndcg_at_10": 0.60, "recall_at_100": 0.9, "mrr_at_10": 0.5, "map_at_10": 0.5},
    }}


def test_leaderboard_has_one_row_per_model_sorted_with_deltas():
    board = build_leaderboard(
        {"naive": scores(0.70), "percpos": scores(0.68)},
        {"naive": {"candidates": 100, "candidates_dropped_by_rule": 0, "mean_negative_score": 0.8,
                   "queries_short": 0},
         "percpos": {"candidates": 100, "candidates_dropped_by_rule": 25, "mean_negative_score": 0.6,
                     "queries_short": 3}},
        {"naive": {"train_seconds": 10.0, "settings": {"seed": 42}}, "percpos": {"train_seconds": 9.0}},
        {"percpos": {"false_negative_share": 0.1}},
    )
    assert board["model"].to_list() == ["student: naive", "student: percpos", "base student", "teacher minilm"]
    assert board["delta_ndcg_at_10"].to_list() == pytest.approx([0.10, 0.08, 0.0, 0.0])
    assert board.filter(pl.col("recipe") == "percpos")["share_dropped_by_rule"][0] == pytest.approx(0.25)
    table = to_markdown(board)
    assert "| student: naive | naive | 0.7000 |" in table
    assert "| 10.0 | 42 |" in table  # seconds keep one decimal, metrics four


def test_audit_flags_negatives_the_judge_scores_at_or_above_the_lowest_positive():
    judge_scores = {("q1", "p"): 0.8, ("q1", "p2"): 0.6, ("q1", "a"): 0.7, ("q1", "b"): 0.6, ("q1", "c"): 0.1,
                    ("q2", "p"): 0.9, ("q2", "d"): 0.2}

    def judge(qs, ds):
        return np.array([judge_scores[(q, d)] for q, d in zip(qs, ds, strict=True)])

    negatives = pl.DataFrame({"query_id": ["q1", "q1", "q1", "q2"], "doc_id": ["a", "b", "c", "d"]})
    positives = pl.DataFrame({"query_id": ["q1", "q1", "q2"], "doc_id": ["p", "p2", "p"]})
    audit = false_negative_audit(negatives, positives, judge)
    assert audit["suspected_false_negatives"] == 2  # a (0.7 >= 0.6) and b (tie counts)
    assert audit["false_negative_share"] == pytest.approx(0.5)


def test_seed_summary_groups_students_that_differ_only_in_name_and_seed():
    mined = {"method": "naive", "param": None, "teachers": ["minilm"]}
    board = build_leaderboard(
        {"naive": scores(0.70), "naive-seed2": scores(0.66), "percpos": scores(0.67)},
        {"naive": {"recipe": mined | {"name": "naive", "student_seed": None}},
         "naive-seed2": {"recipe": mined | {"name": "naive-seed2", "student_seed": 2}},
         "percpos": {"recipe": mined | {"name": "percpos", "method": "percpos", "param": 0.95}}},
        {"naive": {"settings": {"seed": 42}}, "naive-seed2": {"settings": {"seed": 2}},
         "percpos": {"settings": {"seed": 42}}},
    )
    assert dict(zip(board["recipe"], board["family"], strict=True)) == {
        "naive": "naive", "naive-seed2": "naive", "percpos": "percpos", None: None}
    seeds = summarize_seeds(board)
    naive = seeds.filter(pl.col("family") == "naive").row(0, named=True)
    assert naive["students"] == 2 and naive["seeds"] == "2,42"
    assert naive["ndcg_at_10_mean"] == pytest.approx(0.68)
    assert (naive["ndcg_at_10_min"], naive["ndcg_at_10_max"]) == pytest.approx((0.66, 0.70))
    assert seeds["family"].to_list() == ["naive", "percpos"]  # best mean first
    assert recipe_family({"a": {"name": "a", "method": "abs"}, "b": {"name": "b", "method": "naive"}}) == {
        "a": "a", "b": "b"}


def test_students_trained_or_scored_differently_are_not_seeds_of_one_family():
    mined = {"method": "naive", "param": None, "teachers": ["minilm"]}
    settings = {"seed": 42, "epochs": 1, "max_queries": None, "save_steps": 20}
    board = build_leaderboard(
        {"naive": scores(0.70), "naive-subset": scores(0.66), "naive-seed2": scores(0.69) | {"max_seq_length": 128},
         "mystery": scores(0.60)},
        {"naive": {"recipe": mined | {"name": "naive"}},
         "naive-subset": {"recipe": mined | {"name": "naive-subset"}},
         "naive-seed2": {"recipe": mined | {"name": "naive-seed2", "student_seed": 2}}},
        {"naive": {"settings": settings},
         "naive-subset": {"settings": settings | {"max_queries": 100}},  # trained on fewer queries
         "naive-seed2": {"settings": settings | {"seed": 2, "save_steps": 5}}},  # scored at another length
    )
    families = dict(zip(board["recipe"], board["family"], strict=True))
    assert families == {"naive": "naive", "naive-subset": "naive-subset", "naive-seed2": "naive-seed2",
                        "mystery": "mystery", None: None}
    assert summarize_seeds(board)["students"].to_list() == [1, 1, 1, 1]


def test_students_trained_or_scored_under_another_corpus_are_stale_never_chosen_nor_ranked_as_current():
    now = {"corpus_version": "v2", "split_key": "s2"}

    def scored(test, dev, fingerprint, corpus=now):
        s = scores(test)
        s["results"]["student (x)"] |= {"dev": {"ndcg_at_10": dev}, "fingerprint": fingerprint}
        s["results"]["base student"]["dev"] = {"ndcg_at_10": 0.5}
        return s | corpus

    board = build_leaderboard(
        {"old": scored(0.80, 0.95, "fp-old"),  # trained with dev share 0, scored after a re-ingest with 0.2
         "late": scored(0.78, 0.90, "fp-late", {"corpus_version": "v1", "split_key": "s1"}),  # scores not re-run
         "legacy": scored(0.77, 0.90, "fp-legacy"),  # trained before corpus versions were recorded
         "retrained": scored(0.76, 0.90, "fp-before"),  # student retrained since its scores
         "new": scored(0.70, 0.75, "fp-new")},
        {},
        {"old": {"corpus_version": "v1", "split_key": "s1", "fingerprint": "fp-old"},
         "late": now | {"fingerprint": "fp-late"}, "legacy": {"fingerprint": "fp-legacy"},
         "retrained": now | {"fingerprint": "fp-after"}, "new": now | {"fingerprint": "fp-new"}},
        current=now,
    )
    stale = dict(zip(board["model"], board["stale"], strict=True))
    assert "trained on corpus version v1 (splits s1)" in stale["student: old"]
    assert "scored on corpus version v1" in stale["student: late"]
    assert "not recorded" in stale["student: legacy"] and "earlier student" in stale["student: retrained"]
    assert stale["student: new"] is None and stale["base student"] is None
    # current rows first (best first), then the stale ones: a stale score is never ranked as if current
    assert board["model"].to_list()[:3] == ["student: new", "base student", "teacher minilm"]
    assert set(board["model"].to_list()[3:]) == {"student: old", "student: late", "student: legacy",
                                                 "student: retrained"}
    assert best_by_dev(board)["recipe"] == "new"
    assert board.filter(pl.col("best_by_dev"))["recipe"].to_list() == ["new"]
    assert dev_selection_summary(board)["test_best"] == "new"
    assert summarize_seeds(board)["family"].to_list() == ["new"]  # stale students take no part in seed means
