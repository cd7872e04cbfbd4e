"""A recipe's lineage: its three assets' keys and op names, owned in one place (assets, checks and the CLI ask here).

The first (default) recipe's assets keep the plain names (`hard_negatives`, ...); every other recipe's are
prefixed with its key-safe name (`naive/hard_negatives`; op `naive__hard_negatives` in run config).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import dagster as dg

from retriever_assets.core.mining import MiningRecipe

STAGES = ("hard_negatives", "student_checkpoint", "mteb_scores")


@dataclass(frozen=True)
class RecipeLineage:
    recipe: MiningRecipe
    default: bool = False

    @property
    def key(self) -> str:
        """Asset-key-safe form of the recipe name (`percpos-0.95` -> `percpos_0_95`)."""
        return re.sub(r"[^A-Za-z0-9_]", "_", self.recipe.name)

    @property
    def key_prefix(self) -> list[str]:
        return [] if self.default else [self.key]

    @property
    def op_prefix(self) -> str:
        return "" if self.default else f"{self.key}__"

    def asset_key(self, stage: str) -> dg.AssetKey:
        return dg.AssetKey([*self.key_prefix, stage])

    def op_name(self, stage: str) -> str:
        return f"{self.op_prefix}{stage}"

    def asset_keys(self) -> list[dg.AssetKey]:
        return [self.asset_key(stage) for stage in STAGES]


def lineages_of(recipes: list[MiningRecipe]) -> list[RecipeLineage]:
    """One lineage per recipe; the first is the default."""
    return [RecipeLineage(recipe, default=i == 0) for i, recipe in enumerate(recipes)]
