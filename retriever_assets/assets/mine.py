"""Stage 3: candidate lists (shared by every recipe); stage 4 lives in the recipe factory (recipes.py)."""


import dagster as dg

from resources import ComputeResource, ModelsResource, StorageResource
from resources.artifacts import DatasetArtifacts
from retriever_assets import steps
from retriever_assets.assets._meta import stage_asset, table
from retriever_assets.assets.embed import teacher_embeddings
from retriever_assets.configs import CandidateConfig


@stage_asset(deps=[teacher_embeddings], group_name="mine", kinds={"pytorch", "parquet"})
def candidate_lists(
    context: dg.AssetExecutionContext, config: CandidateConfig, storage: StorageResource, models: ModelsResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    """Each training query's top-K candidates per teacher (positives removed) with scores, and its positives' scores."""
    report = steps.build_candidates(
        storage, models, context.partition_key, top_k=config.top_k,
        query_chunk=config.query_chunk, doc_chunk=config.doc_chunk, search=config.search,
        ann={"min_docs": config.ann_min_docs, "nprobes": config.ann_nprobes,
             "refine_factor": config.ann_refine_factor, "recall_sample": config.ann_recall_sample,
             "recall_floor": config.ann_recall_floor},
        log=context.log.info, compute=compute, warn=context.log.warning,
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.values["rows"],
            "top_k": config.top_k,
            "compute": dg.MetadataValue.json(compute.describe()),
            "training_queries": report.values["queries"],
            "teachers": table(report.values["teachers"]),
            # is each teacher good enough for positive-aware mining? (positive ranks, train nDCG@10, empty shares)
            "teacher_diagnostics": table(report.values["diagnostics"]),
            "teacher_verdicts": dg.MetadataValue.md("\n".join(
                f"- **{d['teacher']}**: {d['verdict']}" for d in report.values["diagnostics"])),
            "lancedb_table_versions_read": dg.MetadataValue.json(report.values["lancedb_table_versions_read"]),
            "disk_mib": DatasetArtifacts.size_mib(DatasetArtifacts(storage, context.partition_key).candidates_dir),
            # seconds per phase (read ids, each teacher's search, write); each teacher's own in `teachers`
            "phase_seconds": dg.MetadataValue.json(report.values["phase_seconds"]),
            "seconds": round(report.seconds, 2),
        }
    )
