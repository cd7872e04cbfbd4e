"""The miner against an independent reference written here in plain Python (float64, one query at a time).

`core.mining` works on polars frames; the reference below restates the paper's rules, top-n selection, the
intra-sample ensemble and the short-query policy without polars, and every comparison is exact. Sampled
selection is checked for its window (the first `sample_k` survivors) and, by exact probabilities, for softmax
with temperature. These tests are what kills the mutants listed in scripts/mutants.py.
"""

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retriever_assets.core.mining import METHODS, MiningRecipe, filter_candidates, mine_hard_negatives
from retriever_assets.core.rule_check import rule_violations, satisfies_rule

C_SCHEMA = {"query_id": pl.String, "teacher": pl.String, "rank": pl.Int32, "doc_id": pl.String, "score": pl.Float32}
P_SCHEMA = {"query_id": pl.String, "teacher": pl.String, "doc_id": pl.String, "score": pl.Float32}


# ------------------------------------------------------------------ the reference


def _f32(x: float) -> float:
    return float(np.float32(x))  # the value a Float32 column holds


def reference_survivors(cand_rows, pos_rows, recipe: MiningRecipe, query: str, teacher: str) -> list[tuple]:
    """(doc, rank, score) of the query's candidates under one teacher that pass the rule, hardest first."""
    positives = {d for q, _, d, _ in pos_rows if q == query}
    scores = [s for q, t, _, s in pos_rows if q == query and t == teacher]
    low = min(scores) if scores else None
    mine = sorted((r, d, s) for q, t, r, d, s in cand_rows if q == query and t == teacher)
    return [(d, r, s) for r, d, s in mine if d not in positives
            and satisfies_rule(recipe.method, recipe.threshold, rank=r, score=s, pos_score=low)]


def reference_top_negatives(cand_rows, pos_rows, recipe: MiningRecipe, query_ids) -> dict[str, list[tuple]]:
    """query -> [(teacher, doc)] for top sampling: teachers take turns slot by slot (intra), first n kept."""
    out = {}
    n = recipe.num_negatives
    for q in query_ids:
        picks = {t: reference_survivors(cand_rows, pos_rows, recipe, q, t)[:n] for t in recipe.teachers}
        merged, taken = [], set()
        for slot in range(n):
            for t in recipe.teachers:
                if slot < len(picks[t]):
                    doc = picks[t][slot][0]
                    if recipe.ensemble == "intra_dedup" and doc in taken:
                        continue
                    taken.add(doc)
                    merged.append((t, doc))
        merged = merged[:n]
        if recipe.short_queries == "drop" and len(merged) < n:
            merged = []
        if merged:
            out[q] = merged
    return out


def _frames(cand_rows, pos_rows):
    return (pl.DataFrame(cand_rows, schema=C_SCHEMA, orient="row"),
            pl.DataFrame(pos_rows, schema=P_SCHEMA, orient="row"))


def _ours(negatives: pl.DataFrame) -> dict[str, list[tuple]]:
    return {q: list(zip(g.sort("slot")["teacher"], g.sort("slot")["doc_id"], strict=True))
            for (q,), g in negatives.group_by("query_id")}


# ------------------------------------------------------------------ the reference itself, by hand


@pytest.mark.parametrize(
    ("method", "threshold", "rank", "score", "pos", "expected"),
    [
        ("naive", None, 1, 0.99, 0.5, True),
        ("shifted", 10, 10, 0.1, 0.5, False),
        ("shifted", 10, 11, 0.1, 0.5, True),
        ("abs", 0.7, 3, 0.7, None, False),  # strict
        ("abs", 0.7, 3, 0.6999, None, True),
        ("marginpos", 0.25, 1, 0.5, 0.75, False),  # 0.75 - 0.25 = 0.5 exactly: not below
        ("marginpos", 0.25, 1, 0.49, 0.75, True),
        ("percpos", 0.5, 1, 0.25, 0.5, False),  # 0.5 * 0.5 = 0.25 exactly
        ("percpos", 0.95, 1, -0.21, -0.2, False),  # sign-safe: -0.2 - 0.2 * 0.05 = -0.21
        ("percpos", 0.95, 1, -0.2101, -0.2, True),
        ("marginpos", 0.05, 1, -5.0, None, False),  # no positive score: a positive-aware rule keeps nothing
        ("percpos", 0.95, 1, -5.0, float("nan"), False),
    ],
)
def test_the_reference_rule_by_hand(method, threshold, rank, score, pos, expected):
    assert satisfies_rule(method, threshold, rank=rank, score=score, pos_score=pos) is expected


def test_rule_violations_names_the_offending_rows():
    rows = [{"rank": 1, "score": 0.9, "pos_score": 0.8}, {"rank": 2, "score": 0.5, "pos_score": 0.8}]
    assert rule_violations(rows, "percpos", 0.95) == [rows[0]]


# ------------------------------------------------------------------ hand-built edge cases the mutants hide in


def test_a_query_without_a_positive_score_keeps_nothing_under_positive_aware_rules():
    # q has a positive only under teacher "t"; its candidates from "u" have no positive score to compare with
    cand_rows = [("q", "t", 1, "a", 0.1), ("q", "u", 1, "b", 0.1), ("q", "u", 2, "c", 0.0)]
    pos_rows = [("q", "t", "p", 0.9)]
    c, p = _frames(cand_rows, pos_rows)
    for method in ("marginpos", "percpos"):
        recipe = MiningRecipe(teachers=("t", "u"), method=method)
        result = mine_hard_negatives(c, p, recipe)
        assert result.negatives["doc_id"].to_list() == ["a"], method
        assert _ours(result.negatives) == reference_top_negatives(cand_rows, pos_rows, recipe, ["q"])


def test_marginpos_is_strict_at_an_exact_tie():
    # float32-exact numbers: 0.75 - 0.25 == 0.5, so 0.5 sits exactly on the threshold and must be dropped
    cand_rows = [("q", "t", 1, "a", 0.5), ("q", "t", 2, "b", 0.25)]
    c, p = _frames(cand_rows, [("q", "t", "p", 0.75)])
    result = mine_hard_negatives(c, p, MiningRecipe(teachers=("t",), method="marginpos", param=0.25))
    assert result.negatives["doc_id"].to_list() == ["b"]


def test_drop_removes_only_the_short_queries():
    cand_rows = [("full", "t", i, f"f{i}", 0.1 * (9 - i)) for i in range(1, 6)] + [("short", "t", 1, "s1", 0.1)]
    pos_rows = [("full", "t", "p", 0.9), ("short", "t", "p2", 0.9)]
    c, p = _frames(cand_rows, pos_rows)
    recipe = MiningRecipe(teachers=("t",), method="naive", short_queries="drop")
    result = mine_hard_negatives(c, p, recipe)
    assert result.negatives["query_id"].unique().to_list() == ["full"]
    assert result.negatives.height == 4 and result.stats["queries_dropped"] == 1


def test_sampling_never_leaves_the_first_sample_k_survivors():
    # equal scores: without the window every candidate would be equally likely
    cand_rows = [("q", "t", i, f"d{i}", 0.3) for i in range(1, 11)]
    c, p = _frames(cand_rows, [("q", "t", "p", 0.9)])
    seen = set()
    for seed in range(60):
        recipe = MiningRecipe(teachers=("t",), method="naive", sampling="sampled", num_negatives=2, sample_k=3,
                              seed=seed)
        seen |= set(mine_hard_negatives(c, p, recipe).negatives["doc_id"])
    assert seen == {"d1", "d2", "d3"}


@pytest.mark.parametrize("temperature", [0.25, 4.0])
def test_sampling_follows_softmax_of_score_over_temperature(temperature):
    cand_rows = [("q", "t", 1, "hi", 1.0), ("q", "t", 2, "lo", 0.0)]
    c, p = _frames(cand_rows, [("q", "t", "p", 2.0)])
    draws = 500
    hits = sum(
        mine_hard_negatives(c, p, MiningRecipe(teachers=("t",), method="naive", sampling="sampled", num_negatives=1,
                                               sample_k=2, temperature=temperature, seed=s)).negatives["doc_id"][0]
        == "hi" for s in range(draws))
    expected = 1 / (1 + math.exp(-1.0 / temperature))  # softmax([1, 0] / T)[0]: 0.982 at T=0.25, 0.562 at T=4
    assert abs(hits / draws - expected) < 4 * math.sqrt(expected * (1 - expected) / draws) + 0.01


# ------------------------------------------------------------------ properties against the reference

SCORES = st.one_of(st.sampled_from([-0.5, 0.0, 0.25, 0.5, 0.75, 0.8, 0.9]),
                   st.floats(min_value=-1, max_value=1, allow_nan=False, width=32))
PARAMS = {
    "naive": st.none(),
    "shifted": st.integers(0, 6),
    "abs": st.sampled_from([0.25, 0.5, 0.7]) | st.floats(-1, 1, width=32),
    "marginpos": st.sampled_from([0.05, 0.25]) | st.floats(0, 0.5, width=32),
    "percpos": st.sampled_from([0.5, 0.95, 1.0]) | st.floats(0.0625, 1, width=32),
}


@st.composite
def mining_problem(draw, sampling: str = "top"):
    teachers = ("t", "u")
    cand_rows, pos_rows, query_ids = [], [], []
    for qi in range(draw(st.integers(1, 4))):
        q = f"q{qi}"
        query_ids.append(q)
        n_pos = draw(st.integers(0, 2))  # 0: a query with candidates and no positive at all
        for t in teachers:
            if draw(st.booleans()) or t == "t":  # sometimes a teacher scored no positive of this query
                pos_rows += [(q, t, f"{q}p{j}", _f32(draw(SCORES))) for j in range(n_pos)]
            scores = sorted((_f32(draw(SCORES)) for _ in range(draw(st.integers(0, 8)))), reverse=True)
            docs = [f"{q}d{draw(st.integers(0, 9))}" for _ in scores]
            docs = list(dict.fromkeys(docs))  # one row per document and teacher
            if n_pos and draw(st.booleans()):
                docs.insert(0, f"{q}p0")  # a positive listed as a candidate must still never be a negative
            cand_rows += [(q, t, r, d, s) for r, (d, s) in enumerate(zip(docs, scores, strict=False), start=1)]
    method = draw(st.sampled_from(METHODS))
    n = draw(st.integers(1, 4))
    recipe = MiningRecipe(
        teachers=draw(st.sampled_from([("t",), ("u",), ("t", "u"), ("u", "t")])), method=method,
        param=draw(PARAMS[method]), num_negatives=n, sampling=sampling, sample_k=n + draw(st.integers(0, 3)),
        ensemble=draw(st.sampled_from(["intra", "intra_dedup"])), short_queries=draw(st.sampled_from(["keep", "drop"])),
        seed=draw(st.integers(0, 1000)),
    )
    return cand_rows, pos_rows, recipe, query_ids


@settings(max_examples=200, deadline=None)
@given(mining_problem())
def test_top_selection_equals_the_reference(problem):
    cand_rows, pos_rows, recipe, query_ids = problem
    c, p = _frames(cand_rows, pos_rows)
    result = mine_hard_negatives(c, p, recipe, query_ids=query_ids)
    assert _ours(result.negatives) == reference_top_negatives(cand_rows, pos_rows, recipe, query_ids)
    # every candidate's kept flag is the reference rule (positives removed first)
    for row in filter_candidates(c, p, recipe).iter_rows(named=True):
        assert row["kept"] == satisfies_rule(recipe.method, recipe.threshold, rank=row["rank"], score=row["score"],
                                             pos_score=row["pos_score"]), row


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["sampled", "top1_sampled"]).flatmap(lambda s: mining_problem(sampling=s)))
def test_sampled_selection_stays_in_the_reference_window(problem):
    cand_rows, pos_rows, recipe, query_ids = problem
    recipe_single = MiningRecipe(**{**recipe.__dict__, "teachers": recipe.teachers[:1], "short_queries": "keep"})
    c, p = _frames(cand_rows, pos_rows)
    got = _ours(mine_hard_negatives(c, p, recipe_single, query_ids=query_ids).negatives)
    teacher = recipe_single.teachers[0]
    for q in query_ids:
        window = [d for d, _, _ in reference_survivors(cand_rows, pos_rows, recipe_single, q, teacher)]
        window = window[: recipe_single.sample_k]
        picked = [d for _, d in got.get(q, [])]
        assert set(picked) <= set(window) and len(picked) == len(set(picked))
        assert len(picked) == min(recipe_single.num_negatives, len(window))
        if recipe_single.sampling == "top1_sampled" and window:
            assert window[0] in picked
