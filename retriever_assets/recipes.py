"""Named mining recipes: the default (the paper's TopK-PercPos 95%) or a YAML file of recipes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from retriever_assets.core.mining import MiningRecipe, RecipeError
from retriever_assets.core.naming import UnsafeNameError, validate_name

DEFAULT_RECIPES = [MiningRecipe()]

# The paper's mining ablation (Table 3 rows and the ensembling setting) over the default teachers, selectable by
# name without a recipe file: `cli run --recipe naive`, or RETRIEVER_RECIPE_NAMES=naive,abs-0.7 for the UI.
BUILTIN_RECIPES: dict[str, MiningRecipe] = {r.name: r for r in [
    MiningRecipe(name="percpos-0.95", method="percpos", param=0.95),
    MiningRecipe(name="naive", method="naive"),
    MiningRecipe(name="shifted-10", method="shifted", param=10),
    MiningRecipe(name="abs-0.7", method="abs", param=0.7),
    MiningRecipe(name="marginpos-0.05", method="marginpos", param=0.05),
    MiningRecipe(name="percpos-0.95-top1-sampled10", method="percpos", param=0.95, sampling="top1_sampled",
                 sample_k=10),
    MiningRecipe(name="percpos-intra-minilm-bm25", teachers=("minilm", "bm25"), method="percpos", param=0.95,
                 ensemble="intra"),
    MiningRecipe(name="percpos-0.95-seed2", method="percpos", param=0.95, student_seed=2),
    MiningRecipe(name="naive-seed2", method="naive", student_seed=2),
    MiningRecipe(name="percpos-intra-minilm-bm25-seed2", teachers=("minilm", "bm25"), method="percpos", param=0.95,
                 ensemble="intra", student_seed=2),
    # BM25 alone as the teacher (on SQuAD, whose questions reuse the paragraph's words, the strongest one here)
    MiningRecipe(name="percpos-bm25", teachers=("bm25",), method="percpos", param=0.95),
    MiningRecipe(name="percpos-bm25-seed2", teachers=("bm25",), method="percpos", param=0.95, student_seed=2),
    MiningRecipe(name="naive-bm25", teachers=("bm25",), method="naive"),
    MiningRecipe(name="naive-bm25-seed2", teachers=("bm25",), method="naive", student_seed=2),
    # a stronger teacher than the MiniLM student (issue 17): need RETRIEVER_TEACHERS=minilm,bm25,mpnet
    MiningRecipe(name="percpos-mpnet", teachers=("mpnet",), method="percpos", param=0.95),
    MiningRecipe(name="naive-mpnet", teachers=("mpnet",), method="naive"),
    MiningRecipe(name="percpos-mpnet-bm25", teachers=("mpnet", "bm25"), method="percpos", param=0.95,
                 ensemble="intra"),
    MiningRecipe(name="percpos-mpnet-seed2", teachers=("mpnet",), method="percpos", param=0.95, student_seed=2),
    # EmbeddingGemma, a teacher far stronger than the MiniLM student (issue 23): need RETRIEVER_TEACHERS with gemma
    # (`make gemma` installs it); each compared recipe with a second student seed
    *(dataclasses.replace(base, name=f"{base.name}{suffix}", student_seed=seed)
      for base in [
          MiningRecipe(name="naive-gemma", teachers=("gemma",), method="naive"),
          MiningRecipe(name="percpos-gemma", teachers=("gemma",), method="percpos", param=0.95),
          MiningRecipe(name="marginpos-gemma", teachers=("gemma",), method="marginpos", param=0.05),
          MiningRecipe(name="percpos-gemma-top1-sampled10", teachers=("gemma",), method="percpos", param=0.95,
                       sampling="top1_sampled", sample_k=10),
          MiningRecipe(name="percpos-intra-gemma-bm25", teachers=("gemma", "bm25"), method="percpos", param=0.95,
                       ensemble="intra"),
          # issue 23: + KL(teacher || student) over the positive and the negatives, the teacher's scores kept
          # with every negative, beside InfoNCE (weight 1, both on the logit scale 1/tau)
          MiningRecipe(name="percpos-gemma-distill", teachers=("gemma",), method="percpos", param=0.95,
                       distill="kldiv"),
      ] for suffix, seed in (("", None), ("-seed2", 2))),
]}


def default_teacher_kinds() -> dict[str, str]:
    """Score kind of each default teacher (resources.models.default_teachers)."""
    from resources.models import ModelsResource

    return ModelsResource().kinds()


def with_builtin_recipes(recipes: list[MiningRecipe], names: str | list[str] | None, *,
                         teacher_kinds: dict[str, str] | None = None) -> list[MiningRecipe]:
    """`recipes` plus the built-in recipes named (a list or a comma-separated string) that are not there yet,
    each validated against the configured teachers."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    have = {r.name for r in recipes}
    unknown = sorted(set(names or []) - have - set(BUILTIN_RECIPES))
    if unknown:
        raise RecipeError(f"unknown recipe(s) {unknown}: configured {sorted(have)}, built in {list(BUILTIN_RECIPES)}")
    added = [BUILTIN_RECIPES[n] for n in dict.fromkeys(names or []) if n not in have]
    for recipe in added:
        recipe.validate(teacher_kinds or default_teacher_kinds())
    return recipes + added


def load_recipes(path: str | Path | None, *, teacher_kinds: dict[str, str] | None = None) -> list[MiningRecipe]:
    """Read `recipes:` (a list of MiningRecipe fields) from YAML; the first recipe is the default lineage.

    Every recipe is validated here, so a bad recipe fails when the code location loads, before any run.
    """
    if not path:
        return list(DEFAULT_RECIPES)
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"{path}: cannot read recipes: {exc}") from exc
    entries = data.get("recipes") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise RecipeError(f"{path}: expected a non-empty list under 'recipes:'")
    kinds = teacher_kinds or default_teacher_kinds()
    recipes, names = [], set()
    known = set(MiningRecipe.__dataclass_fields__)
    for i, entry in enumerate(entries, start=1):
        where = f"{path}: recipe #{i}"
        if not isinstance(entry, dict) or "name" not in entry:
            raise RecipeError(f"{where}: each recipe is a mapping with at least a 'name'")
        unknown = set(entry) - known
        if unknown:
            raise RecipeError(f"{where} ({entry['name']}): unknown field(s) {sorted(unknown)}")
        try:
            validate_name(str(entry["name"]), what="recipe name")
        except UnsafeNameError as exc:
            raise RecipeError(f"{where}: {exc}") from exc
        if entry["name"] in names:
            raise RecipeError(f"{where}: recipe name {entry['name']!r} is used twice")
        names.add(entry["name"])
        recipe = MiningRecipe.from_dict(entry)
        recipe.validate(kinds)
        recipes.append(recipe)
    return recipes
