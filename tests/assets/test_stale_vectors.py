"""candidate_lists never searches vectors the current teacher settings would not make (issue 27, item 5)."""

import dagster as dg
import pytest

from resources import StorageResource
from tests.assets.chain import DATASET, all_assets, materializations, materialize


def _candidates(instance, resources):
    return dg.materialize(all_assets(), partition_key=DATASET, instance=instance, resources=resources,
                          run_config={"ops": {"candidate_lists": {"config": {"top_k": 20}}}},
                          selection=["candidate_lists"], raise_on_error=False)


def test_a_table_holding_vectors_of_other_settings_is_refused_until_re_embedded(pipeline, tiny_encoder):
    _, instance, resources, storage = pipeline
    table = StorageResource(root=str(storage)).embedding_store(DATASET, "tiny")._table()
    first = table.to_arrow().select(["item_id"]).column(0)[0].as_py()
    # what a teacher change of the same dimension, or a run killed between chunk commits, leaves behind
    table.update(where=f"item_id = '{first}'", values={"cache_key": "key-of-another-model"})
    result = _candidates(instance, resources)
    assert not result.success
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    while error.cause is not None:
        error = error.cause
    assert error.cls_name == "StaleEmbeddingsError" and "1 of" in error.message and first in error.message
    assert "materialize teacher_embeddings" in error.message
    # re-embedding replaces exactly that vector, and the search runs again
    embedded = materialize(instance, resources, tiny_encoder, selection=["teacher_embeddings"])
    rows = {r.data["teacher"]: r.data for r in
            materializations(embedded, "teacher_embeddings")[0].metadata["teachers"].value.records}
    assert rows["tiny"]["embedded"] == 1
    assert _candidates(instance, resources).success


@pytest.mark.parametrize("precision", ["fp32"])
def test_vectors_record_device_and_dtype(pipeline, precision):
    _, instance, resources, storage = pipeline
    result = materialize(instance, resources, None, selection=["teacher_embeddings"])
    rows = {r.data["teacher"]: r.data for r in
            materializations(result, "teacher_embeddings")[0].metadata["teachers"].value.records}
    assert rows["tiny"]["device"] == "cpu" and rows["tiny"]["dtype"] == precision
    assert rows["tiny"]["embedded"] == 0  # same environment: nothing re-embedded
