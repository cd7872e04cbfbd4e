"""The `pipeline` fixture: the whole tiny chain materialized once per test module that asks for it."""

import dagster as dg
import pytest
from chain import DATASET, materialize, resources_for

from retriever_assets.partitions import dataset_partitions


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, demo_root, tiny_encoder):
    storage = tmp_path_factory.mktemp("storage")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, [DATASET])
    resources = resources_for(demo_root, storage, tiny_encoder)
    result = materialize(instance, resources, tiny_encoder)
    return result, instance, resources, storage
