"""Stage 1: the raw QA corpus, validated and stored with a content hash per document."""


import dagster as dg
import polars as pl

from resources import DataRootResource, StorageResource
from resources.artifacts import DatasetArtifacts
from retriever_assets import steps
from retriever_assets.assets._meta import OWNERS, stage_asset, table
from retriever_assets.configs import QaCorpusConfig
from retriever_assets.core.corpus import folder_fingerprint
from retriever_assets.partitions import dataset_partitions


@dg.observable_source_asset(
    partitions_def=dataset_partitions,
    group_name="ingest",
    owners=OWNERS,
    automation_condition=dg.AutomationCondition.cron_tick_passed("*/15 * * * *"),
)
def raw_qa_folder(context: dg.AssetExecutionContext, data_root: DataRootResource) -> dg.DataVersionsByPartition:
    """The dataset's BEIR folder as found in the data root; its data version is a hash of the files' bytes."""
    keys = [context.partition_key] if context.has_partition_key else data_root.discover()[0]
    return dg.DataVersionsByPartition(
        {key: dg.DataVersion(folder_fingerprint(data_root.dataset_dir(key))) for key in keys}
    )


@stage_asset(deps=[raw_qa_folder], group_name="ingest", kinds={"polars", "parquet"})
def qa_corpus(
    context: dg.AssetExecutionContext, config: QaCorpusConfig, data_root: DataRootResource, storage: StorageResource
) -> dg.MaterializeResult:
    """Validated BEIR corpus, queries and qrels of one dataset, with a content hash per document."""
    dataset = context.partition_key
    folder = data_root.dataset_dir(dataset)
    given = config.model_dump(exclude={"reset_settings"})
    settings = steps.resolve_ingest_settings(storage, dataset, given, reset=config.reset_settings,
                                             log=context.log.warning)
    for change in settings.changed:
        context.log.info(f"ingest setting of {dataset!r} changed on request: {change} (stored for later runs)")
    s = settings.values
    loaded, report = steps.ingest_corpus(
        storage, dataset, folder, mode=s["validation_mode"], train_split=s["train_split"],
        test_split=s["test_split"], dev_share=s["dev_share"], dev_seed=s["dev_seed"],
    )
    split_rows = (
        loaded.qrels.group_by("split")
        .agg(
            judgements=pl.len(),
            positives=(pl.col("score") > 0).sum(),
            queries=pl.col("query_id").n_unique(),
            documents=pl.col("doc_id").n_unique(),
        )
        .sort("split")
        .to_dicts()
    )
    skipped = dict(loaded.report.counts)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": loaded.corpus.height,
            "documents": loaded.corpus.height,
            "queries": loaded.queries.height,
            "splits": table(split_rows),
            "validation_mode": s["validation_mode"],
            "ingest_settings": dg.MetadataValue.json(settings.describe()),
            "settings_changed": dg.MetadataValue.json(settings.changed),
            "records_skipped_or_noted": sum(skipped.values()),
            "issues_by_reason": dg.MetadataValue.json(skipped),
            "first_issues": dg.MetadataValue.md("\n".join(f"- `{e}`" for e in loaded.report.examples) or "none"),
            "source": dg.MetadataValue.path(str(folder)),
            "corpus_version": report.values["version"],
            "dev_split": (f"{report.values['dev_queries']} training queries held out as "
                          f"'{report.values['dev_split']}' (share {report.values['dev_share']}, seed "
                          f"{report.values['dev_seed']})" if "dev_split" in report.values
                          else "none (set dev_share or RETRIEVER_DEV_SHARE to choose recipes on held-out queries)"),
            "disk_mib": DatasetArtifacts.size_mib(DatasetArtifacts(storage, dataset).corpus_dir),
            "seconds": round(report.seconds, 2),
        },
        data_version=dg.DataVersion(report.values["version"]),
    )
