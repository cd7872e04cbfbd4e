"""Stage 2: teacher embeddings in LanceDB (dense teachers) and BM25 indexes, updated incrementally."""


import dagster as dg

from resources import ComputeResource, ModelsResource, StorageResource
from resources.artifacts import DatasetArtifacts
from retriever_assets import steps
from retriever_assets.assets._meta import stage_asset, table
from retriever_assets.assets.ingest import qa_corpus
from retriever_assets.configs import EmbeddingConfig


@stage_asset(deps=[qa_corpus], group_name="embed", kinds={"pytorch", "lancedb"})
def teacher_embeddings(
    context: dg.AssetExecutionContext, config: EmbeddingConfig, storage: StorageResource, models: ModelsResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    """Every teacher's vectors of the corpus and the training queries (only new or changed items are embedded)."""
    report = steps.embed_teachers(
        storage, models, context.partition_key,
        batch_size=config.batch_size, chunk_size=config.chunk_size, log=context.log.info, compute=compute,
    )
    per_teacher = report.values["teachers"]
    versions = {t["teacher"]: t["table_version"] for t in per_teacher if t["kind"] == "dense"}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(t.get("embedded", 0) + t.get("unchanged", 0) for t in per_teacher),
            "device": report.values["device"],
            "compute": dg.MetadataValue.json(report.values["compute"]),
            "documents": report.values["documents"],
            "training_queries": report.values["queries"],
            "items_embedded": sum(t.get("embedded", 0) for t in per_teacher),
            "teachers": table(per_teacher, columns=[
                "teacher", "kind", "embedded", "deleted", "unchanged", "truncated_items", "items_per_second",
                "device", "dtype", "table", "table_version", "tokenized", "terms_reused", "seconds",
            ]),
            # seconds per phase (load, fingerprint, plan, count_truncated, encode_and_write, ...; BM25:
            # tokenize_and_index, save) per teacher; BM25 rows count the documents tokenized and those whose
            # cached terms were reused
            "phase_seconds": dg.MetadataValue.json({t["teacher"]: t.get("phase_seconds", {}) for t in per_teacher}),
            "lancedb_table_versions": dg.MetadataValue.json(versions),
            # on-disk size of every teacher's table (all LanceDB versions) or BM25 index, in MiB
            "disk_mib": dg.MetadataValue.json({
                t["teacher"]: storage.table_disk_mib(context.partition_key, t["teacher"]) if t["kind"] == "dense"
                else DatasetArtifacts.size_mib(DatasetArtifacts(storage, context.partition_key).bm25_dir(t["teacher"]))
                for t in per_teacher}),
            "seconds": round(report.seconds, 2),
        },
        data_version=dg.DataVersion(
            "|".join(f"{t['teacher']}:{t.get('fingerprint', 'bm25')}:{t.get('table_version')}" for t in per_teacher)
        ),
    )
