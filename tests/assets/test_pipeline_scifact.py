"""The whole chain on a slice of real SciFact (400 documents) with tiny local models: slow, needs ../shared/data."""

import dagster as dg
import pytest
from chain import all_assets, materializations, resources_for, run_config

from retriever_assets.partitions import dataset_partitions


@pytest.mark.slow
def test_whole_chain_on_a_scifact_slice(tmp_path, scifact_slice_root, tiny_encoder):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, ["scifact-mini"])
    result = dg.materialize(all_assets(), partition_key="scifact-mini", instance=instance,
                            resources=resources_for(scifact_slice_root, tmp_path / "storage", tiny_encoder),
                            run_config=run_config(tiny_encoder))
    assert result.success
    embed = {r.data["teacher"]: r.data for r in
             materializations(result, "teacher_embeddings")[0].metadata["teachers"].value.records}
    assert embed["tiny"]["truncated_items"] > 0  # SciFact abstracts are longer than the tiny model's 64 tokens
    assert 0 < materializations(result, "mteb_scores")[0].metadata["ndcg_at_10"].value <= 1
