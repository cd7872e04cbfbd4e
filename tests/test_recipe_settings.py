"""Recipe-level student seeds, the fixed training-query subset and CLI run config for every recipe lineage."""

import argparse

import pytest

from retriever_assets.cli import run_config
from retriever_assets.configs import StudentConfig
from retriever_assets.core.mining import RecipeError
from retriever_assets.core.training import select_training_queries
from retriever_assets.recipes import load_recipes


def test_student_seed_precedence_recipe_then_run_config_then_42():
    assert StudentConfig().settings().seed == 42
    assert StudentConfig().settings(recipe_seed=2).seed == 2
    assert StudentConfig(seed=7).settings().seed == 7
    assert StudentConfig(seed=7).settings(recipe_seed=2).seed == 2  # naive-seed2 never trains with another seed
    assert StudentConfig(max_train_queries=10).settings().max_queries == 10


def test_training_query_subset_is_fixed_and_independent_of_order():
    ids = [f"q{i}" for i in range(100)]
    a = select_training_queries(ids, 30)
    assert len(a) == 30 and set(a) <= set(ids)
    assert a == select_training_queries(list(reversed(ids)) + ids[:5], 30)  # order and duplicates do not matter
    assert len(set(select_training_queries(ids + ["x1", "x2"], 30)) & set(a)) >= 28
    assert select_training_queries(ids, None) == sorted(ids)
    assert select_training_queries(ids, 500) == sorted(ids)
    with pytest.raises(ValueError, match="max_queries"):
        select_training_queries(ids, 0)


def test_recipe_file_accepts_student_seed_and_rejects_a_bad_one(tmp_path):
    good = tmp_path / "r.yaml"
    good.write_text("recipes:\n  - {name: naive, method: naive}\n"
                    "  - {name: naive-s2, method: naive, student_seed: 2}\n")
    recipes = load_recipes(good)
    assert [r.student_seed for r in recipes] == [None, 2]
    bad = tmp_path / "bad.yaml"
    for value in ("-3", "true", "1.5"):
        bad.write_text(f"recipes:\n  - {{name: naive, method: naive, student_seed: {value}}}\n")
        with pytest.raises(RecipeError, match="student_seed"):
            load_recipes(bad)


def test_cli_settings_reach_every_selected_recipe_lineage():
    args = argparse.Namespace(epochs=2, batch_size=None, base_model=None, max_seq_length=128, seed=None,
                              learning_rate=None, max_train_queries=50, eval_max_seq_length=256,
                              lenient=False, top_k=None)
    ops = run_config(args, ["", "naive__"])["ops"]
    for prefix in ("", "naive__"):
        assert ops[f"{prefix}student_checkpoint"]["config"] == {"epochs": 2, "max_seq_length": 128,
                                                                "max_train_queries": 50}
        assert ops[f"{prefix}mteb_scores"]["config"] == {"max_seq_length": 256}
    args.skip_teacher_scores = True
    assert run_config(args)["ops"]["mteb_scores"]["config"] == {"max_seq_length": 256, "evaluate_teachers": False}


def test_teachers_from_list_presets_models_and_errors():
    from resources import ModelsResource, teachers_from_list
    from retriever_assets.core.mining import RecipeError
    from retriever_assets.recipes import with_builtin_recipes

    assert [(t.name, t.kind, t.model) for t in teachers_from_list(None)] == [
        ("minilm", "dense", "all-MiniLM-L6-v2"), ("bm25", "bm25", "all-MiniLM-L6-v2")]
    teachers = teachers_from_list("minilm, bm25,mpnet, e5=/models/e5")
    assert [(t.name, t.kind, t.spec().model) for t in teachers] == [
        ("minilm", "dense", "all-MiniLM-L6-v2"), ("bm25", "bm25", "bm25"), ("mpnet", "dense", "all-mpnet-base-v2"),
        ("e5", "dense", "/models/e5")]
    with pytest.raises(ValueError, match="unknown teacher 'gte'"):
        teachers_from_list("minilm,gte")
    # the mpnet recipes need the mpnet teacher configured, and are refused at load without it
    kinds = ModelsResource(teachers=teachers).kinds()
    names = ["percpos-mpnet", "naive-mpnet", "percpos-mpnet-bm25"]
    assert [r.name for r in with_builtin_recipes([], names, teacher_kinds=kinds)] == names
    with pytest.raises(RecipeError, match="mpnet"):
        with_builtin_recipes([], ["percpos-mpnet"], teacher_kinds=ModelsResource().kinds())


def test_distillation_is_a_recipe_option_for_a_single_cosine_teacher_only():
    """MarginMSE / KL on the teacher's scores compare them with the student's cosines: one dense teacher with
    normalized vectors (issue 23). BM25 and dot products are other scales; an ensemble mixes scales per negative."""
    import dataclasses

    from retriever_assets.core.mining import MiningRecipe
    from retriever_assets.recipes import BUILTIN_RECIPES

    kinds = {"gemma": "cosine", "minilm": "cosine", "bm25": "bm25", "e5": "dot"}
    for distill in ("marginmse", "kldiv"):
        recipe = MiningRecipe(name="d", teachers=("gemma",), distill=distill, distill_weight=0.5)
        recipe.validate(kinds)
        assert MiningRecipe.from_dict(recipe.to_dict()) == recipe
        for teachers, why in ((("bm25",), "BM25"), (("e5",), "normalize=False"), (("gemma", "minilm"), "one")):
            with pytest.raises(RecipeError, match=why):
                dataclasses.replace(recipe, teachers=teachers).validate(kinds)
    with pytest.raises(RecipeError, match="distill must be"):
        MiningRecipe(teachers=("gemma",), distill="mse").validate(kinds)
    with pytest.raises(RecipeError, match="distill_weight"):
        MiningRecipe(teachers=("gemma",), distill="kldiv", distill_weight=0).validate(kinds)
    assert MiningRecipe().distill == "none"
    first, second = BUILTIN_RECIPES["percpos-gemma-distill"], BUILTIN_RECIPES["percpos-gemma-distill-seed2"]
    assert first.teachers == ("gemma",) and first.method == "percpos" and first.distill != "none"
    assert dataclasses.replace(second, name=first.name, student_seed=None) == first and second.student_seed == 2
    first.validate(kinds)
    # the settings a student of the recipe trains with carry the option
    settings = StudentConfig().settings(first.student_seed, distill=first.distill, distill_weight=first.distill_weight)
    assert (settings.distill, settings.distill_weight) == (first.distill, first.distill_weight)
