"""Compare recipes: a leaderboard over every recipe's student, the base model and the dense teachers."""

import os

import dagster as dg

from resources import ModelsResource, StorageResource
from resources.artifacts import DatasetArtifacts
from retriever_assets import steps
from retriever_assets.assets._meta import stage_asset, table
from retriever_assets.configs import LeaderboardConfig
from retriever_assets.core import plots
from retriever_assets.lineage import RecipeLineage


def _rounded(rows: list[dict]) -> list[dict]:
    """Scores shown to 4 decimals in the UI's tables."""
    return [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def build_leaderboard_asset(lineages: list[RecipeLineage]) -> list[dg.AssetsDefinition]:
    """The leaderboard over every lineage's scores and the `best_student` chosen from it on the dev split."""
    names = [lineage.recipe.name for lineage in lineages]

    @stage_asset(
        name="leaderboard", deps=[lineage.asset_key("mteb_scores") for lineage in lineages], group_name="evaluate",
        kinds={"polars", "mteb"}, eager=False,
        description="Every recipe's student against the base model and the teachers, with mining statistics.",
    )
    def leaderboard(
        context: dg.AssetExecutionContext, config: LeaderboardConfig, storage: StorageResource,
        models: ModelsResource,
    ) -> dg.MaterializeResult:
        judge = config.judge_model or os.environ.get("RETRIEVER_JUDGE_MODEL") or None
        report = steps.compare_recipes(storage, models, context.partition_key, names, judge_model=judge,
                                       audit_max_queries=config.audit_max_queries,
                                       judge_max_seq_length=config.judge_max_seq_length, log=context.log.info)
        board = report.values["board"]
        rows = board.to_dicts()
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": board.height,
                "recipes_compared": len(report.values["recipes"]),
                "leaderboard": table(_rounded(rows)),
                "seeds": table(_rounded(report.values["seeds"].to_dicts())),
                "chart": dg.MetadataValue.md(plots.bar_chart(board["model"].to_list(),
                                                             board["ndcg_at_10"].to_list(), title="nDCG@10")),
                "best_by_dev": dg.MetadataValue.json(report.values["selection"] or {
                    "selected": None, "reason": "no dev split: set qa_corpus dev_share (or RETRIEVER_DEV_SHARE)"}),
                "cross_dataset_ndcg_at_10": (
                    table(_rounded(report.values["cross_dataset"].to_dicts()))
                    if set(report.values["cross_dataset"].columns) - {"model", context.partition_key, "stale"}
                    else "no model scored on another dataset yet"),
                # students trained (or scored) under another corpus version or splits: shown last, never chosen
                "stale_rows": dg.MetadataValue.json(report.values["stale"]),
                "false_negative_audit": dg.MetadataValue.json(
                    {name: {k: v for k, v in audit.items() if k != "examples"}
                     for name, audit in report.values["audits"].items()}
                    or {"judge": "none configured (set judge_model or RETRIEVER_JUDGE_MODEL)"}),
                "exports": dg.MetadataValue.path(report.values["folder"]),
                "disk_mib": DatasetArtifacts.size_mib(report.values["folder"]),
                "seconds": round(report.seconds, 2),
            }
        )

    @stage_asset(name="best_student", deps=[leaderboard], group_name="evaluate", kinds={"json"}, eager=False,
                 description="The checkpoint of the recipe with the best nDCG@10 on the held-out dev split.")
    def best_student(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        report = steps.select_best_student(storage, context.partition_key, log=context.log.info)
        p = report.values
        artifacts = DatasetArtifacts(storage, context.partition_key)
        metadata = {"pointer": dg.MetadataValue.path(str(artifacts.best_student_file)),
                    "selected": p["selected"] or "none", "seconds": round(report.seconds, 2)}
        if p["selected"]:
            metadata |= {"model_dir": dg.MetadataValue.path(p["model_dir"]), "dev_ndcg_at_10": p["dev_ndcg_at_10"],
                         "test_ndcg_at_10": p["test_ndcg_at_10"]}
        else:
            metadata["reason"] = p["reason"]
        return dg.MaterializeResult(metadata=metadata,
                                    data_version=dg.DataVersion(p.get("fingerprint") or "none"))

    return [leaderboard, best_student]
