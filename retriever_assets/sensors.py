"""Register dataset folders found in the data root as partitions, and ingest them."""


import dagster as dg

from resources import DataRootResource
from retriever_assets.assets.ingest import qa_corpus
from retriever_assets.partitions import dataset_partitions


@dg.sensor(
    name="dataset_folder_sensor",
    asset_selection=[qa_corpus],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a `dataset` partition for each new BEIR folder in the data root and ingests it.",
)
def dataset_folder_sensor(context: dg.SensorEvaluationContext, data_root: DataRootResource) -> dg.SensorResult:
    found, rejected = data_root.discover()
    for reason in rejected:
        context.log.warning(f"skipped folder: {reason}")
    known = set(context.instance.get_dynamic_partitions(dataset_partitions.name))
    new = [name for name in found if name not in known]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=name, run_key=f"register-{name}") for name in new],
        dynamic_partitions_requests=[dataset_partitions.build_add_request(new)] if new else [],
        skip_reason=None if new else dg.SkipReason(f"no new dataset folder ({len(found)} known)"),
    )
