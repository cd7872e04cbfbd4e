"""Mining rules, sampling and ensembling on hand-built score lists, plus hypothesis invariants."""

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retriever_assets.core.mining import (
    METHODS,
    MiningRecipe,
    RecipeError,
    filter_candidates,
    mine_hard_negatives,
)
from retriever_assets.core.rule_check import rule_violations

C_SCHEMA = {"query_id": pl.String, "teacher": pl.String, "rank": pl.Int32, "doc_id": pl.String, "score": pl.Float32}
P_SCHEMA = {"query_id": pl.String, "teacher": pl.String, "doc_id": pl.String, "score": pl.Float32}


def cands(rows):
    """rows: (query, teacher, doc, score); rank = order of appearance per (query, teacher)."""
    out, seen = [], {}
    for q, t, d, s in rows:
        seen[(q, t)] = seen.get((q, t), 0) + 1
        out.append((q, t, seen[(q, t)], d, s))
    return pl.DataFrame(out, schema=C_SCHEMA, orient="row")


def poss(rows):
    return pl.DataFrame(rows, schema=P_SCHEMA, orient="row")


def negs(result, q="q"):
    return result.negatives.filter(pl.col("query_id") == q)["doc_id"].to_list()


SCORES = [0.90, 0.86, 0.84, 0.80, 0.75, 0.70, 0.69, 0.60, 0.50, 0.40, 0.30, 0.20, 0.10]
CANDS = cands([("q", "t", f"d{i}", s) for i, s in enumerate(SCORES)])
POS = poss([("q", "t", "p", 0.88)])


@pytest.mark.parametrize(
    ("method", "param", "expected"),
    [
        ("naive", None, ["d0", "d1", "d2", "d3"]),
        ("shifted", 10, ["d10", "d11", "d12"]),  # ranks 11..13 only: 3 left
        ("shifted", 2, ["d2", "d3", "d4", "d5"]),
        # float32 0.70 is 0.69999999 < 0.7: kept, as the rule compares the stored scores exactly (float64)
        ("abs", 0.7, ["d5", "d6", "d7", "d8"]),
        ("abs", float(np.float32(0.7)), ["d6", "d7", "d8", "d9"]),  # a threshold equal to the score: not < it
        ("marginpos", 0.05, ["d3", "d4", "d5", "d6"]),  # < 0.83
        ("percpos", 0.95, ["d3", "d4", "d5", "d6"]),  # < 0.836
        ("percpos", 0.90, ["d4", "d5", "d6", "d7"]),  # < 0.792
    ],
)
def test_each_method_on_a_ranked_list(method, param, expected):
    recipe = MiningRecipe(teachers=("t",), method=method, param=param)
    result = mine_hard_negatives(CANDS, POS, recipe)
    assert negs(result) == expected


def test_lowest_positive_sets_the_threshold():
    pos = poss([("q", "t", "p1", 0.95), ("q", "t", "p2", 0.81)])
    result = mine_hard_negatives(CANDS, pos, MiningRecipe(teachers=("t",), method="percpos"))
    # 0.81 * 0.95 = 0.7695: 0.75 is the first kept
    assert negs(result) == ["d4", "d5", "d6", "d7"]
    assert result.negatives["pos_score"].unique().to_list() == [pytest.approx(0.81)]


def test_negative_positive_score_is_sign_safe():
    c = cands([("q", "t", "a", -0.10), ("q", "t", "b", -0.20), ("q", "t", "c", -0.21), ("q", "t", "d", -0.5)])
    pos = poss([("q", "t", "p", -0.2)])
    # naive p*x = -0.19 would keep b (-0.20 < -0.19), the sign-safe -0.21 must not
    result = mine_hard_negatives(c, pos, MiningRecipe(teachers=("t",), method="percpos", num_negatives=4))
    assert negs(result) == ["d"]


def test_a_positive_is_never_a_negative_even_if_listed_as_candidate():
    c = cands([("q", "t", "p2", 0.5), ("q", "t", "x", 0.4)])
    pos = poss([("q", "t", "p1", 0.9), ("q", "t", "p2", 0.5)])
    for method in METHODS:
        result = mine_hard_negatives(c, pos, MiningRecipe(teachers=("t",), method=method, param=0 if method ==
                                                          "shifted" else None))
        assert "p2" not in negs(result)


def test_ties_at_the_threshold_are_dropped_strictly():
    # binary-exact numbers: 0.75 - |0.75| * (1 - 0.5) is exactly 0.375, so "a" sits on the threshold
    c = cands([("q", "t", "a", 0.375), ("q", "t", "b", 0.3749), ("q", "t", "c", 0.1)])
    pos = poss([("q", "t", "p", 0.75)])
    result = mine_hard_negatives(c, pos, MiningRecipe(teachers=("t",), method="percpos", param=0.5))
    assert negs(result) == ["b", "c"]


def test_fewer_candidates_than_n_and_empty_survivors_are_counted():
    c = cands([("q", "t", "a", 0.5), ("q", "t", "b", 0.4), ("r", "t", "c", 0.99)])
    pos = poss([("q", "t", "p", 0.9), ("r", "t", "p", 0.5), ("s", "t", "p", 0.5)])
    keep = mine_hard_negatives(c, pos, MiningRecipe(teachers=("t",)))
    assert negs(keep) == ["a", "b"] and negs(keep, "r") == []
    assert keep.stats["queries"] == 3
    assert keep.stats["queries_short"] == 3 and keep.stats["queries_without_negative"] == 2
    drop = mine_hard_negatives(c, pos, MiningRecipe(teachers=("t",), short_queries="drop"))
    assert drop.negatives.height == 0 and drop.stats["queries_dropped"] == 3


def test_dropped_queries_leave_the_training_positives_kept_ones_stay():
    from retriever_assets.core.mining import training_positives

    c = cands([("q", "t", "a", 0.5), ("q", "t", "b", 0.4), ("r", "t", "c", 0.3), ("r", "t", "d", 0.2)])
    pos = poss([("q", "t", "p1", 0.9), ("q", "t", "p2", 0.8), ("r", "t", "p", 0.5), ("s", "t", "p", 0.5)])
    recipe = MiningRecipe(teachers=("t",), num_negatives=2, short_queries="drop")
    drop = mine_hard_negatives(c, pos, recipe)  # q and r keep two each; s has no candidate: dropped
    kept = set(drop.negatives["query_id"].to_list())
    trained = training_positives(pos.select("query_id", "doc_id"), drop.negatives, "drop")
    assert kept == {"q", "r"} and set(trained["query_id"].to_list()) == kept and drop.stats["queries_dropped"] == 1
    assert trained.height == sum(pos["query_id"].is_in(list(kept)))  # every positive of a kept query
    everything = training_positives(pos.select("query_id", "doc_id"), drop.negatives, "keep")
    assert everything.height == pos.height


def test_sampling_is_seeded_and_draws_from_the_first_k_survivors():
    recipe = MiningRecipe(teachers=("t",), method="naive", sampling="sampled", sample_k=6, temperature=0.05)
    a = negs(mine_hard_negatives(CANDS, POS, recipe))
    b = negs(mine_hard_negatives(CANDS, POS, recipe))
    assert a == b and len(a) == 4 and set(a) <= {f"d{i}" for i in range(6)}
    other = {tuple(negs(mine_hard_negatives(CANDS, POS, MiningRecipe(
        teachers=("t",), method="naive", sampling="sampled", sample_k=6, seed=s)))) for s in range(20)}
    assert len(other) > 1


def test_top1_plus_sampled_always_keeps_the_hardest_survivor():
    for seed in range(10):
        recipe = MiningRecipe(teachers=("t",), method="percpos", sampling="top1_sampled", seed=seed)
        assert negs(mine_hard_negatives(CANDS, POS, recipe))[0] == "d3"


def test_softmax_sampling_follows_the_scores():
    c = cands([("q", "t", "hi", 1.0), ("q", "t", "lo", 0.0)])
    pos = poss([("q", "t", "p", 2.0)])
    picks = [negs(mine_hard_negatives(c, pos, MiningRecipe(
        teachers=("t",), method="naive", sampling="sampled", num_negatives=1, sample_k=2, seed=s)))[0]
        for s in range(400)]
    share = picks.count("hi") / len(picks)
    assert abs(share - math.e / (1 + math.e)) < 0.07  # softmax([1, 0]) = 0.731


def _two_teachers():
    c = cands([("q", "a", "x", 0.5), ("q", "a", "y", 0.4), ("q", "a", "z", 0.3),
               ("q", "b", "y", 9.0), ("q", "b", "w", 8.0), ("q", "b", "v", 7.0)])
    pos = poss([("q", "a", "p", 0.9), ("q", "b", "p", 20.0)])
    return c, pos


def test_intra_sample_ensemble_with_and_without_dedup():
    c, pos = _two_teachers()
    no_dedup = mine_hard_negatives(c, pos, MiningRecipe(teachers=("a", "b"), ensemble="intra"))
    assert negs(no_dedup) == ["x", "y", "y", "w"]
    dedup = mine_hard_negatives(c, pos, MiningRecipe(teachers=("a", "b"), ensemble="intra_dedup"))
    assert negs(dedup) == ["x", "y", "w", "z"]
    assert dedup.negatives["teacher"].to_list() == ["a", "b", "b", "a"]
    # two teachers' scores are not on one scale: no pooled mean, one mean per teacher instead
    assert dedup.stats["mean_negative_score"] is None
    per = {t["teacher"]: t for t in dedup.stats["per_teacher"]}
    for t in ("a", "b"):
        mine = dedup.negatives.filter(pl.col("teacher") == t)
        assert per[t]["negatives"] == mine.height
        assert per[t]["mean_negative_score"] == pytest.approx(mine["score"].mean())


def test_cross_sample_ensemble_takes_one_teacher_per_query():
    c, pos = _two_teachers()
    teachers_seen = set()
    for seed in range(12):
        r = mine_hard_negatives(c, pos, MiningRecipe(teachers=("a", "b"), ensemble="cross", seed=seed))
        assert r.negatives["teacher"].n_unique() == 1
        teachers_seen |= set(r.negatives["teacher"])
    assert teachers_seen == {"a", "b"}


def test_invalid_recipes_fail_before_work():
    kinds = {"dense": "cosine", "bm25": "bm25"}
    with pytest.raises(RecipeError, match="BM25"):
        MiningRecipe(teachers=("bm25",), method="abs").validate(kinds)
    with pytest.raises(RecipeError, match="unknown teacher 'nope'"):
        MiningRecipe(teachers=("nope",)).validate(kinds)
    with pytest.raises(RecipeError, match="percpos x"):
        MiningRecipe(teachers=("dense",), param=1.5).validate(kinds)
    with pytest.raises(RecipeError, match="sample_k"):
        MiningRecipe(teachers=("dense",), sampling="sampled", sample_k=2).validate(kinds)
    with pytest.raises(RecipeError, match="student_seed"):
        MiningRecipe(teachers=("dense",), student_seed=-1).validate(kinds)
    MiningRecipe(teachers=("bm25", "dense"), method="percpos").validate(kinds)


# ----------------------------------------------------------------- properties

score = st.floats(min_value=-1, max_value=1, allow_nan=False, width=32)


@st.composite
def mining_problem(draw):
    n_q = draw(st.integers(1, 4))
    c_rows, p_rows = [], []
    for qi in range(n_q):
        q = f"q{qi}"
        positives = draw(st.lists(score, min_size=1, max_size=3))
        p_rows += [(q, "t", f"{q}p{j}", s) for j, s in enumerate(positives)]
        cs = sorted(draw(st.lists(score, max_size=15)), reverse=True)
        docs = [f"{q}p0" if draw(st.booleans()) and j == 0 else f"{q}d{j}" for j in range(len(cs))]
        c_rows += [(q, "t", d, s) for d, s in zip(docs, cs, strict=True)]
    method = draw(st.sampled_from(METHODS))
    sampling = draw(st.sampled_from(["top", "sampled", "top1_sampled"]))
    n = draw(st.integers(1, 5))
    recipe = MiningRecipe(teachers=("t",), method=method, sampling=sampling, num_negatives=n,
                          sample_k=n + draw(st.integers(0, 5)), seed=draw(st.integers(0, 1000)),
                          param=2 if method == "shifted" else None)
    return cands(c_rows), poss(p_rows), recipe


@settings(max_examples=150, deadline=None)
@given(mining_problem())
def test_invariants(problem):
    c, pos, recipe = problem
    result = mine_hard_negatives(c, pos, recipe)
    n = result.negatives
    # no known positive is ever a negative
    assert n.join(pos.select("query_id", "doc_id"), on=["query_id", "doc_id"], how="semi").height == 0
    # every kept negative satisfies its rule (the independent float64 restatement, not keep_rule)
    assert not rule_violations(n.iter_rows(named=True), recipe.method, recipe.threshold)
    # at most n per query, no duplicates for a single teacher, and the threshold is the lowest positive
    assert (n.group_by("query_id").len()["len"] <= recipe.num_negatives).all()
    assert n.select("query_id", "doc_id").is_unique().all()
    lowest = pos.group_by("query_id").agg(pl.col("score").min().alias("low"))
    joined = n.join(lowest, on="query_id")
    assert (joined["pos_score"] == joined["low"]).all()
    # same inputs, same negatives
    assert mine_hard_negatives(c, pos, recipe).negatives.equals(n)


def test_filter_marks_dropped_candidates():
    f = filter_candidates(CANDS, POS, MiningRecipe(teachers=("t",)))
    assert f.filter(~pl.col("kept"))["doc_id"].to_list() == ["d0", "d1", "d2"]
