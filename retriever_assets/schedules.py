"""Periodic refresh: re-ingest every dataset weekly; automation re-runs only what changed downstream."""


import dagster as dg

from retriever_assets.assets.ingest import qa_corpus
from retriever_assets.partitions import dataset_partitions

refresh_job = dg.define_asset_job("refresh_corpora", selection=[qa_corpus])  # partitioned like qa_corpus


@dg.schedule(job=refresh_job, cron_schedule="0 3 * * 1", default_status=dg.DefaultScheduleStatus.STOPPED)
def weekly_refresh(context: dg.ScheduleEvaluationContext):
    """Mondays 03:00: re-read each dataset folder (a new data version triggers the affected downstream only)."""
    for name in context.instance.get_dynamic_partitions(dataset_partitions.name):
        yield dg.RunRequest(partition_key=name, run_key=f"weekly-{name}-{context.scheduled_execution_time:%Y%m%d}")
