"""Change-driven refresh: the folder sensor adds partitions; automation re-runs only the changed dataset's chain."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from resources import DataRootResource
from retriever_assets.core.naming import UnsafeNameError, path_inside, validate_name
from retriever_assets.definitions import defs
from retriever_assets.partitions import dataset_partitions
from retriever_assets.sensors import dataset_folder_sensor

BUNDLED = Path(__file__).resolve().parents[2] / "retriever_assets" / "bundled" / "demo-qa"
CHAIN = ["qa_corpus", "teacher_embeddings", "candidate_lists", "hard_negatives", "student_checkpoint", "mteb_scores"]


def test_sensor_registers_new_folders_and_rejects_unsafe_names(tmp_path):
    shutil.copytree(BUNDLED, tmp_path / "alpha")
    shutil.copytree(BUNDLED, tmp_path / "bad name!")
    (tmp_path / "not-a-dataset").mkdir()
    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(instance=instance, resources={"data_root": DataRootResource(path=str(tmp_path))})
    result = dataset_folder_sensor(context)
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [["alpha"]]
    assert [r.partition_key for r in result.run_requests] == ["alpha"]
    instance.add_dynamic_partitions(dataset_partitions.name, ["alpha"])
    shutil.copytree(BUNDLED, tmp_path / "beta")
    again = dataset_folder_sensor(dg.build_sensor_context(
        instance=instance, resources={"data_root": DataRootResource(path=str(tmp_path))}))
    assert [r.partition_keys for r in again.dynamic_partitions_requests] == [["beta"]]


@pytest.mark.parametrize("name", ["..", "../etc", "a/b", "a\\\\b", ".hidden", "", "x" * 65, "a..b", "naïve"])
def test_unsafe_dataset_names_are_refused(name):
    with pytest.raises(UnsafeNameError):
        validate_name(name)


def test_paths_stay_inside_the_root(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafeNameError):
        path_inside(tmp_path / "root", "link", "..")
    with pytest.raises(UnsafeNameError, match="outside the storage root"):
        path_inside(tmp_path / "root", "link")
    assert path_inside(tmp_path / "root", "ok") == (tmp_path / "root" / "ok").resolve()


def _materialized(instance, key: str, partition: str, version: str = "1"):
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=key, partition=partition, tags={"dagster/data_version": version}))


def _observed(instance, partition: str, version: str):
    instance.report_runless_asset_event(dg.AssetObservation(
        asset_key="raw_qa_folder", partition=partition, tags={"dagster/data_version": version}))


def requested(result) -> dict[str, set]:
    return {k: result.get_requested_partitions(dg.AssetKey(k)) for k in CHAIN
            if result.get_num_requested(dg.AssetKey(k))}


def test_automation_refreshes_only_the_changed_dataset_downstream():
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, ["a", "b"])
    for p in ("a", "b"):
        _observed(instance, p, "v1")
        for key in CHAIN:
            _materialized(instance, key, p)
    selection = dg.AssetSelection.assets(*CHAIN)
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
    assert first.total_requested == 0  # everything is up to date

    _observed(instance, "a", "v2")  # dataset a's folder changed
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                               cursor=first.cursor)
    # eager plans the whole downstream chain of the changed partition in one tick, and nothing of b
    assert requested(second) == {key: {"a"} for key in CHAIN}

    for key in CHAIN:
        _materialized(instance, key, "a", "2")
    third = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                              cursor=second.cursor)
    assert third.total_requested == 0
