"""The Dagster side of the ray backend: the `compute` resource chosen in Definitions, assets materialized on the
cluster with where-it-ran metadata, and the connection made (and closed) by the dagster-ray resource."""

import dagster as dg
from conftest import DATASET, tiny_models

from resources import ComputeResource, DataRootResource, StorageResource
from retriever_assets.definitions import ALL_ASSETS, ALL_CHECKS
from retriever_assets.partitions import dataset_partitions

SELECTION = ["qa_corpus", "teacher_embeddings", "candidate_lists"]
CONFIG = {"ops": {"teacher_embeddings": {"config": {"batch_size": 32}},
                  "candidate_lists": {"config": {"top_k": 10, "query_chunk": 16, "doc_chunk": 32}}}}


def _materialize(resources, selection=SELECTION):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, [DATASET])
    return dg.materialize([*ALL_ASSETS, *ALL_CHECKS], partition_key=DATASET, instance=instance, resources=resources,
                          run_config={"ops": {k: v for k, v in CONFIG["ops"].items() if k in selection}},
                          selection=selection)


def _metadata(result, key):
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return event.event_specific_data.materialization.metadata


def test_assets_run_on_the_cluster_through_the_compute_resource(ray_cluster, tmp_path, demo_root, tiny_encoder):
    import ray

    resources = {"data_root": DataRootResource(path=str(demo_root)), "storage": StorageResource(root=str(tmp_path)),
                 "models": tiny_models(tiny_encoder),
                 "compute": ComputeResource(backend="ray", address=ray_cluster.address)}
    result = _materialize(resources)
    assert result.success
    embedded = _metadata(result, "teacher_embeddings")["compute"].data
    assert embedded["backend"] == "ray" and embedded["nodes"] == 3 and embedded["cpus"] > 0
    teachers = _metadata(result, "candidate_lists")["teachers"].value.records
    assert {r.data["teacher"]: r.data["search"] for r in teachers}["tiny"] == "exact (ray shards)"

    # no connection in this process: the dagster-ray resource connects for the step and disconnects after it
    ray.shutdown()
    result = _materialize(resources, ["teacher_embeddings"])
    assert result.success and _metadata(result, "teacher_embeddings")["compute"].data["nodes"] == 3
    assert not ray.is_initialized()
    ray.init(address=ray_cluster.address, logging_level="ERROR", log_to_driver=False)  # for the package's next tests
