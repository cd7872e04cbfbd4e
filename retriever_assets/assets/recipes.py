"""Stages 4-6 per mining recipe: hard negatives -> student checkpoint -> MTEB scores.

One factory call builds the three assets of one recipe. The default recipe's assets are named plainly
(`hard_negatives`, `student_checkpoint`, `mteb_scores`); other recipes get their name as a key prefix
(`naive/hard_negatives`, ...), so each recipe is its own readable lineage on top of the shared
`candidate_lists`.
"""


import dataclasses

import dagster as dg
import polars as pl

from resources import ComputeResource, ModelsResource, StorageResource
from resources.artifacts import DatasetArtifacts
from retriever_assets import steps
from retriever_assets.assets._meta import stage_asset, table
from retriever_assets.assets.mine import candidate_lists
from retriever_assets.configs import HardNegativesConfig, ScoresConfig, StudentConfig
from retriever_assets.core import plots
from retriever_assets.core.mining import MiningRecipe, negative_coverage
from retriever_assets.lineage import RecipeLineage
from retriever_assets.partitions import dataset_partitions


def _apply_overrides(recipe: MiningRecipe, config: HardNegativesConfig) -> MiningRecipe:
    changes = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(MiningRecipe)
        if hasattr(config, f.name) and getattr(config, f.name) is not None
    }
    if "teachers" in changes:
        changes["teachers"] = tuple(changes["teachers"])
    return dataclasses.replace(recipe, **changes)


def _score_plot(filtered: pl.DataFrame, positives: pl.DataFrame, negatives: pl.DataFrame, teacher: str) -> str:
    f = filtered.filter(pl.col("teacher") == teacher)
    n = negatives.filter(pl.col("teacher") == teacher)
    series = {
        "positives": positives.filter(pl.col("teacher") == teacher)["score"].to_list(),
        "kept negatives": n["score"].to_list(),
        "dropped by rule": f.filter(~pl.col("kept"))["score"].to_list(),
    }
    return plots.score_histogram(series, title=f"teacher {teacher}: score distributions")


def build_recipe_assets(lineage: RecipeLineage) -> list:
    """The hard_negatives, student_checkpoint and mteb_scores assets of one recipe's lineage."""
    recipe, prefix, tags = lineage.recipe, lineage.key_prefix, {"recipe": lineage.key}

    @stage_asset(
        name="hard_negatives", key_prefix=prefix, deps=[candidate_lists], group_name="mine", tags=tags,
        kinds={"polars", "parquet"},
        description=f"Positive-aware hard negatives mined with recipe '{recipe.name}' ({recipe.method}).",
    )
    def hard_negatives(
        context: dg.AssetExecutionContext,
        config: HardNegativesConfig,
        storage: StorageResource,
        models: ModelsResource,
    ) -> dg.MaterializeResult:
        effective = _apply_overrides(recipe, config)
        result, report = steps.mine_negatives(storage, models, context.partition_key, effective, log=context.log.info)
        s = result.stats
        coverage = negative_coverage(s)
        if coverage["level"] != "ok":
            context.log.warning(coverage["message"])
        _, positives = DatasetArtifacts(storage, context.partition_key).read_candidates()
        plot_md = "\n\n".join(
            _score_plot(result.filtered, positives, result.negatives, t) for t in effective.teachers
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": s["negatives"],
                "recipe": dg.MetadataValue.json(s["recipe"]),
                "queries": s["queries"],
                "queries_with_full_set": s["queries_with_full_set"],
                "queries_short_of_negatives": s["queries_short"],
                "queries_without_negative": s["queries_without_negative"],
                "share_without_negative": coverage["share_without_negative"],
                "coverage": dg.MetadataValue.md(("**Warning**: " if coverage["level"] != "ok" else "")
                                                + coverage["message"]),
                "queries_dropped": s["queries_dropped"],
                "candidates": s["candidates"],
                "candidates_dropped_by_rule": s["candidates_dropped_by_rule"],
                "share_dropped_by_rule": round(s["candidates_dropped_by_rule"] / max(s["candidates"], 1), 4),
                "per_teacher": table(s["per_teacher"]),
                "mean_negative_score": s["mean_negative_score"],
                "score_distributions": dg.MetadataValue.md(plot_md),
                "ntuple_rows": report.values["ntuple_rows"],
                "triplet_rows": report.values["triplet_rows"],
                "exports": dg.MetadataValue.path(report.values["folder"]),
                "disk_mib": DatasetArtifacts.size_mib(report.values["folder"]),
                # seconds per phase: read, mine (rules, sampling, ensemble), read_texts, export
                "phase_seconds": dg.MetadataValue.json(report.values["phase_seconds"]),
                "seconds": round(report.seconds, 2),
            }
        )

    @stage_asset(
        name="student_checkpoint", key_prefix=prefix, deps=[hard_negatives], group_name="train", tags=tags,
        kinds={"pytorch", "sentence_transformers"},
        description=f"Student fine-tuned with InfoNCE"
        f"{'' if recipe.distill == 'none' else f' + {recipe.distill} distillation'} on recipe '{recipe.name}' "
        "negatives (loads with SentenceTransformer(path)).",
    )
    def student_checkpoint(
        context: dg.AssetExecutionContext, config: StudentConfig, storage: StorageResource, models: ModelsResource,
        compute: ComputeResource,
    ) -> dg.MaterializeResult:
        report = steps.train_student(
            storage, models, context.partition_key, recipe.name,
            base_model=config.base_model, log=context.log.info, compute=compute,
            settings=config.settings(recipe.student_seed, distill=recipe.distill, distill_weight=recipe.distill_weight),
        )
        v = report.values
        return dg.MaterializeResult(
            metadata={
                "checkpoint": dg.MetadataValue.path(v["model_dir"]),
                "base_model": v["base_model"],
                "examples": v["examples"],
                "examples_by_negative_count": dg.MetadataValue.json(v["examples_by_negative_count"]),
                "steps": v["steps"],
                "train_seconds": v["train_seconds"],
                "final_loss": v["loss_curve"][-1][1] if v["loss_curve"] else None,
                "loss_curve": dg.MetadataValue.md(plots.loss_curve(v["loss_curve"])),
                "resumed_from_checkpoint": v["resumed_from"] or "no",
                "reused_unchanged_inputs": v.get("reused", False),
                "settings": dg.MetadataValue.json(v["settings"]),
                "compute": dg.MetadataValue.json(v.get("compute", {"backend": "local"})),
                "train_workers": v.get("train_workers", 1),
                "peak_rss_mib": v.get("peak_rss_mib"),
                # the model only: checkpoints are removed once training succeeded
                "disk_mib": DatasetArtifacts.size_mib(v["model_dir"]),
                "seconds": round(report.seconds, 2),
            },
            data_version=dg.DataVersion(v["fingerprint"]),
        )

    scores_description = (f"MTEB retrieval scores on the test split (and the held-out dev split): base vs student "
                          f"of recipe '{recipe.name}' (and the dense teachers); student and base also on the other "
                          "datasets' test splits.")

    @stage_asset(name="mteb_scores", key_prefix=prefix, deps=[student_checkpoint], group_name="evaluate", tags=tags,
                 kinds={"mteb"}, description=scores_description)
    def mteb_scores(context: dg.AssetExecutionContext, config: ScoresConfig, storage: StorageResource,
                    models: ModelsResource) -> dg.MaterializeResult:
        cross = (config.cross_datasets if config.cross_datasets is not None
                 else context.instance.get_dynamic_partitions(dataset_partitions.name))
        report = steps.score_models(storage, models, context.partition_key, recipe.name, batch_size=config.batch_size,
                                    evaluate_teachers=config.evaluate_teachers, max_seq_length=config.max_seq_length,
                                    cross_datasets=cross, log=context.log.info)
        results = report.values["results"]
        base = results["base student"]
        rows = []
        for label, r in results.items():
            rows.append({
                "model": label,
                "ndcg_at_10": round(r["ndcg_at_10"], 4),
                "delta_ndcg_at_10": round(r["ndcg_at_10"] - base["ndcg_at_10"], 4),
                "recall_at_100": round(r["recall_at_100"], 4),
                "mrr_at_10": round(r["mrr_at_10"], 4),
                "map_at_10": round(r["map_at_10"], 4),
                **({"dev_ndcg_at_10": round(r["dev"]["ndcg_at_10"], 4)} if "dev" in r else {}),
                **{f"{other} ndcg_at_10": round(c["ndcg_at_10"], 4) for other, c in r.get("cross", {}).items()},
            })
        student = results[f"student ({recipe.name})"]
        metadata = {
            "split": report.values["split"],
            "max_seq_length": report.values.get("max_seq_length"),
            "scores": table(rows),
            "ndcg_at_10": student["ndcg_at_10"],
            "base_ndcg_at_10": base["ndcg_at_10"],
            "delta_ndcg_at_10": round(student["ndcg_at_10"] - base["ndcg_at_10"], 4),
            "recall_at_100": student["recall_at_100"],
            "mrr_at_10": student["mrr_at_10"],
            "map_at_10": student["map_at_10"],
            "dev_ndcg_at_10": (student["dev"]["ndcg_at_10"] if "dev" in student
                               else "no dev split (qa_corpus dev_share)"),
            "cross_dataset_ndcg_at_10": dg.MetadataValue.json(
                {other: round(c["ndcg_at_10"], 4) for other, c in student.get("cross", {}).items()}),
            "chart": dg.MetadataValue.md(
                plots.bar_chart([r["model"] for r in rows], [r["ndcg_at_10"] for r in rows], title="nDCG@10")
            ),
            "mteb_result_json": dg.MetadataValue.path(student.get("result_json") or ""),
            "reused_unchanged_inputs": report.values.get("reused", False),
            # a student trained under another corpus version or splits (e.g. before a re-ingest with a dev share)
            "stale": report.values.get("stale") or "no",
            "seconds": round(report.seconds, 2),
        }
        artifacts = DatasetArtifacts(storage, context.partition_key)
        metadata["disk_mib"] = DatasetArtifacts.size_mib(artifacts.scores_dir(recipe.name))
        return dg.MaterializeResult(metadata=metadata)

    return [hard_negatives, student_checkpoint, mteb_scores]
