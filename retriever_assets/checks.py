"""Asset checks on mined negatives: no positive is a negative, every negative satisfies its rule, coverage."""


import dagster as dg

from resources import StorageResource
from resources.artifacts import DatasetArtifacts
from retriever_assets.core.corpus import positives_of
from retriever_assets.core.mining import EMPTY_SHARE_ERROR, FULL_SHARE_WARN, MiningRecipe, negative_coverage
from retriever_assets.core.rule_check import rule_violations
from retriever_assets.lineage import RecipeLineage


def _load(storage: StorageResource, dataset: str, recipe_name: str):
    artifacts = DatasetArtifacts(storage, dataset)
    stats = artifacts.read_mining_stats(recipe_name)
    return artifacts.read_negatives(recipe_name), stats, MiningRecipe.from_dict(stats["recipe"])


def build_recipe_checks(lineage: RecipeLineage) -> list:
    """The three checks of one recipe's hard_negatives asset."""
    recipe, asset = lineage.recipe, lineage.asset_key("hard_negatives")

    @dg.asset_check(asset=asset, name="no_positive_among_negatives", blocking=True,
                    description="No known positive of a query is among its negatives.")
    def no_positive_among_negatives(context: dg.AssetCheckExecutionContext, storage: StorageResource):
        dataset = context.partition_key if context.has_partition_key else None
        negatives, _, _ = _load(storage, dataset, recipe.name)
        _, _, qrels, manifest = DatasetArtifacts(storage, dataset).read_corpus()
        clash = negatives.join(positives_of(qrels, manifest["train_split"]), on=["query_id", "doc_id"], how="semi")
        return dg.AssetCheckResult(
            passed=clash.height == 0,
            metadata={"positives_among_negatives": clash.height, "examples": str(clash.head(5).rows())},
        )

    @dg.asset_check(asset=asset, name="negatives_satisfy_rule",
                    description="Every kept negative satisfies its recipe's filter, recomputed from stored scores.")
    def negatives_satisfy_rule(context: dg.AssetCheckExecutionContext, storage: StorageResource):
        negatives, _, effective = _load(storage, context.partition_key, recipe.name)
        # an independent float64 restatement of the rule, not the polars expression that mined them
        bad = rule_violations(negatives.select("rank", "score", "pos_score").iter_rows(named=True),
                              effective.method, effective.threshold)
        return dg.AssetCheckResult(passed=not bad, metadata={"violations": len(bad), "negatives": negatives.height,
                                                             "examples": str(bad[:5])})

    @dg.asset_check(asset=asset, name="full_negative_sets",
                    description=f"Most training queries got mined negatives: ERROR when {EMPTY_SHARE_ERROR:.0%} or "
                                f"more got none, WARN when fewer than {FULL_SHARE_WARN:.0%} got all n.")
    def full_negative_sets(context: dg.AssetCheckExecutionContext, storage: StorageResource):
        _, stats, _ = _load(storage, context.partition_key, recipe.name)
        coverage = negative_coverage(stats)
        return dg.AssetCheckResult(
            passed=coverage["level"] == "ok",
            severity=dg.AssetCheckSeverity.ERROR if coverage["level"] == "error" else dg.AssetCheckSeverity.WARN,
            description=coverage["message"],
            metadata={"share_full": coverage["share_full"],
                      "share_without_negative": coverage["share_without_negative"],
                      "queries_short": stats["queries_short"],
                      "queries_without_negative": stats["queries_without_negative"],
                      "message": coverage["message"]},
        )

    return [no_positive_among_negatives, negatives_satisfy_rule, full_negative_sets]
