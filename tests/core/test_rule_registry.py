"""The mining-rule registry (`core.mining.RULES`): the one place a rule is defined, checked against the docs."""

import json
import re
from pathlib import Path
from typing import get_args

import polars as pl
import pytest

from retriever_assets.core import mining
from retriever_assets.core.mining import (
    METHODS,
    PAPER_DEFAULTS,
    RULES,
    SCORE_RULES_FOR_COSINE_ONLY,
    Method,
    MiningRecipe,
    MiningRule,
    RecipeError,
    keep_rule,
    mine_hard_negatives,
    rules_markdown_table,
)
from retriever_assets.recipes import BUILTIN_RECIPES, load_recipes

README = Path(__file__).resolve().parents[2] / "README.md"
KINDS = {"dense": "cosine", "bm25": "bm25"}


def test_registry_covers_exactly_the_methods():
    assert tuple(RULES) == METHODS == get_args(Method) == ("naive", "shifted", "abs", "marginpos", "percpos")
    assert all(name == rule.name for name, rule in RULES.items())
    assert PAPER_DEFAULTS == {"shifted": 10, "abs": 0.7, "marginpos": 0.05, "percpos": 0.95}
    assert SCORE_RULES_FOR_COSINE_ONLY == ("abs", "marginpos")
    assert {n: r.param_name for n, r in RULES.items()} == {"naive": "", "shifted": "N", "abs": "t", "marginpos": "m",
                                                           "percpos": "x"}
    with pytest.raises(RecipeError, match="unknown method"):
        keep_rule("nope", 1.0)


def rejected_before(method: str, t: float | None) -> bool:
    """The threshold checks `MiningRecipe.validate` had before the registry (one `if` per method)."""
    if method == "shifted":
        return t is None or t < 0 or t != int(t)
    if method == "percpos":
        return not (0 < t <= 1)
    if method == "marginpos":
        return t < 0
    return False


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("param", [-1, -0.01, 0, 0.05, 0.5, 0.95, 1, 1.0001, 1.5, 2, 2.5, 10, 10.5])
def test_check_rejects_what_validate_rejected_before(method, param):
    recipe = MiningRecipe(teachers=("dense",), method=method, param=param)
    problem = RULES[method].check(recipe.threshold)
    assert (problem is not None) == rejected_before(method, recipe.threshold)
    if problem is None:
        recipe.validate(KINDS)
    else:
        assert problem.endswith(f", got {recipe.threshold}")
        with pytest.raises(RecipeError, match=re.escape(problem)):
            recipe.validate(KINDS)


def test_check_messages_are_unchanged():
    assert RULES["shifted"].check(2.5) == "shifted needs a whole N >= 0, got 2.5"
    assert RULES["percpos"].check(1.5) == "percpos x must be in (0, 1], got 1.5"
    assert RULES["marginpos"].check(-0.1) == "marginpos margin must be >= 0, got -0.1"
    assert RULES["abs"].check(-5.0) is None and RULES["naive"].check(None) is None


@pytest.mark.parametrize("method", SCORE_RULES_FOR_COSINE_ONLY)
def test_cosine_only_rules_are_refused_for_bm25(method):
    with pytest.raises(RecipeError, match="BM25"):
        MiningRecipe(teachers=("bm25",), method=method).validate(KINDS)


@pytest.mark.parametrize("method", SCORE_RULES_FOR_COSINE_ONLY)
def test_cosine_only_rules_are_refused_for_dot_product_teachers(method):
    """A dense teacher with normalize=False scores dot products: unbounded like BM25, so t and m mean nothing."""
    kinds = {"e5": "dot", "minilm": "cosine"}
    with pytest.raises(RecipeError, match=r"dot products.*'e5'.*normalize=False"):
        MiningRecipe(teachers=("e5",), method=method).validate(kinds)
    with pytest.raises(RecipeError, match="'e5'"):  # one such teacher in an ensemble is enough
        MiningRecipe(teachers=("minilm", "e5"), method=method).validate(kinds)
    MiningRecipe(teachers=("minilm",), method=method).validate(kinds)
    for allowed in ("naive", "shifted", "percpos"):  # rank rules and the scale-free PercPos
        MiningRecipe(teachers=("e5",), method=allowed).validate(kinds)


def test_from_dict_round_trips_to_dict():
    recipes = [*BUILTIN_RECIPES.values(), MiningRecipe(),
               MiningRecipe(name="x", teachers=("a", "b"), method="shifted", param=3, sampling="sampled",
                            sample_k=7, temperature=0.5, ensemble="cross", short_queries="drop", seed=9)]
    for recipe in recipes:
        stored = json.loads(json.dumps(recipe.to_dict()))  # as in stats.json: teachers a list, plus "threshold"
        assert isinstance(stored["teachers"], list) and "threshold" in stored
        assert MiningRecipe.from_dict(stored) == recipe
        assert MiningRecipe.from_dict(recipe.to_dict()) == recipe
    assert MiningRecipe.from_dict({"name": "n", "method": "naive"}) == MiningRecipe(name="n", method="naive")
    with pytest.raises(RecipeError, match=r"unknown field\(s\) \['bogus', 'margin'\]"):
        MiningRecipe.from_dict({"name": "n", "bogus": 1, "margin": 0.1})


# ----------------------------------------------------------------- docs agree with the registry

def _readme_paragraph(start: str) -> str:
    text = README.read_text(encoding="utf-8")
    return " ".join(text[text.index(start):].split("\n\n")[0].split())


def test_module_docstring_table_is_the_generated_table():
    table = rules_markdown_table()
    assert table in mining.__doc__
    doc_rows = [line for line in mining.__doc__.splitlines() if line.startswith("| ")]
    assert doc_rows == table.splitlines()
    for rule in RULES.values():
        assert f"| {rule.name} | {rule.keep_text} |" in table
        if rule.paper_default is not None:
            assert f"{rule.param_name} = {rule.paper_default:g} |" in table


def test_readme_rule_description_agrees_with_the_registry():
    text = README.read_text(encoding="utf-8")
    methods = ", ".join(f"`{n}`" for n in RULES)
    assert f"| hard_negatives | `method` | `{MiningRecipe().method}` | {methods} |" in text
    defaults = ", ".join(f"{r.param_name}={r.paper_default:g} ({n})" for n, r in RULES.items()
                         if r.paper_default is not None)
    assert f"| | `param` | paper default | {defaults} |" in text
    paragraph = _readme_paragraph("Mining rules compare a candidate's teacher score")
    for name, rule in RULES.items():
        assert f"`{name}`" in paragraph
        if rule.param_name:
            assert f"`{rule.keep_text}`" in paragraph
    refused = " and ".join(f"`{n}`" for n in SCORE_RULES_FOR_COSINE_ONLY)
    assert f"{refused} are refused for BM25 teachers" in paragraph


# ----------------------------------------------------------------- a new rule is one registry entry

HALFPOS = MiningRule("halfpos", 0.5, "h", True, "s < p * h", lambda rank, s, p, h: s < p * float(h),
                     valid=lambda h: 0 < h < 1, invalid="halfpos h must be in (0, 1)")


def test_a_new_rule_works_end_to_end_from_one_registry_entry(monkeypatch, tmp_path):
    monkeypatch.setitem(RULES, "halfpos", HALFPOS)
    scores = [0.90, 0.60, 0.45, 0.44, 0.40, 0.30, 0.20, 0.10]
    cands = pl.DataFrame([("q", "minilm", i + 1, f"d{i}", s) for i, s in enumerate(scores)], orient="row",
                         schema={"query_id": pl.String, "teacher": pl.String, "rank": pl.Int32, "doc_id": pl.String,
                                 "score": pl.Float32})
    pos = pl.DataFrame([("q", "minilm", "p", 0.88)], orient="row",
                       schema={"query_id": pl.String, "teacher": pl.String, "doc_id": pl.String, "score": pl.Float32})
    recipe_file = tmp_path / "recipes.yaml"
    recipe_file.write_text("recipes:\n  - {name: half, method: halfpos, teachers: [minilm]}\n")
    [recipe] = load_recipes(recipe_file)  # validated through the registry
    assert recipe.threshold == 0.5 and MiningRecipe.from_dict(recipe.to_dict()) == recipe
    result = mine_hard_negatives(cands, pos, recipe)
    # float32 0.44 is exactly half the float32 0.88: on the threshold, dropped (strict <, as for the built-in rules)
    assert result.negatives["doc_id"].to_list() == ["d4", "d5", "d6", "d7"]
    assert result.stats["recipe"]["threshold"] == 0.5 and result.stats["candidates_dropped_by_rule"] == 4
    assert "| halfpos | s < p * h | h = 0.5 |" in rules_markdown_table()
    with pytest.raises(RecipeError, match=r"halfpos h must be in \(0, 1\), got 1.0"):
        MiningRecipe(teachers=("dense",), method="halfpos", param=1).validate(KINDS)
    with pytest.raises(RecipeError, match="BM25"):
        MiningRecipe(teachers=("bm25",), method="halfpos").validate(KINDS)
