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


def _ingest(instance, root: Path, storage: Path, config: dict | None = None, *, ok: bool = True):
    from resources import StorageResource
    from retriever_assets.assets.ingest import qa_corpus, raw_qa_folder

    result = dg.materialize([raw_qa_folder, qa_corpus], partition_key="alpha", instance=instance,
                            resources={"data_root": DataRootResource(path=str(root)),
                                       "storage": StorageResource(root=str(storage))},
                            run_config={"ops": {"qa_corpus": {"config": config}}} if config else None,
                            selection=["qa_corpus"], raise_on_error=False)
    assert result.success is ok
    return result


def test_ingest_settings_given_once_persist_through_the_schedule_and_the_sensor(tmp_path, monkeypatch):
    import json

    from retriever_assets.schedules import weekly_refresh

    monkeypatch.delenv("RETRIEVER_DEV_SHARE", raising=False)
    root, storage = tmp_path / "data", tmp_path / "storage"
    shutil.copytree(BUNDLED, root / "alpha")
    (root / "alpha" / "qrels" / "train.tsv").rename(root / "alpha" / "qrels" / "fit.tsv")  # own split names
    with (root / "alpha" / "corpus.jsonl").open("a") as fh:  # a bad record: strict stops on it
        fh.write(json.dumps({"_id": "empty", "title": "", "text": " "}) + "\n")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, ["alpha"])
    given = {"validation_mode": "lenient", "train_split": "fit", "dev_share": 0.2, "dev_seed": 3}
    _ingest(instance, root, storage, given)
    manifest_file = storage / "alpha" / "corpus" / "manifest.json"
    first = json.loads(manifest_file.read_text())
    assert (first["train_split"], first["dev_share"], first["dev_seed"]) == ("fit", 0.2, 3)

    # the weekly schedule (and the folder sensor, and automation) request runs without any run config
    import datetime

    with dg.instance_for_test() as scheduling:
        scheduling.add_dynamic_partitions(dataset_partitions.name, ["alpha"])
        requests = list(weekly_refresh(dg.build_schedule_context(
            instance=scheduling, scheduled_execution_time=datetime.datetime(2026, 12, 7, 3))))
    assert [r.partition_key for r in requests] == ["alpha"] and not requests[0].run_config
    shutil.copytree(BUNDLED, root / "beta")
    sensed = dataset_folder_sensor(dg.build_sensor_context(instance=instance,
                                                           resources={"data_root": DataRootResource(path=str(root))}))
    assert not sensed.run_requests[0].run_config
    again = _ingest(instance, root, storage, requests[0].run_config)
    assert json.loads(manifest_file.read_text()) == first  # same splits, same dev queries, same corpus version
    meta = again.asset_materializations_for_node("qa_corpus")[0].metadata
    assert meta["validation_mode"].value == "lenient"
    assert meta["ingest_settings"].value["dev_share"] == {"value": 0.2, "from": "stored"}

    # an explicit new value replaces the stored one, and says so
    changed = _ingest(instance, root, storage, {"dev_share": 0.1})
    meta = changed.asset_materializations_for_node("qa_corpus")[0].metadata
    assert meta["settings_changed"].value == ["dev_share: 0.2 -> 0.1"]
    assert json.loads(manifest_file.read_text())["dev_share"] == 0.1
    _ingest(instance, root, storage)
    assert json.loads(manifest_file.read_text())["dev_share"] == 0.1
    # reset: back to the defaults (and RETRIEVER_DEV_SHARE), except what the run names
    monkeypatch.setenv("RETRIEVER_DEV_SHARE", "0.3")
    _ingest(instance, root, storage, {"reset_settings": True, "train_split": "fit"}, ok=False)  # strict again
    assert json.loads(manifest_file.read_text())["dev_share"] == 0.1  # a failed run changes nothing
    _ingest(instance, root, storage, {"reset_settings": True, "train_split": "fit", "validation_mode": "lenient"})
    reset = json.loads(manifest_file.read_text())
    assert (reset["dev_share"], reset["dev_seed"]) == (0.3, 0)


def test_a_corpus_ingested_before_settings_were_stored_is_re_ingested_the_same(tmp_path, monkeypatch):
    """A storage written by an earlier version (no ingest_settings.json; the manifest says what was used) keeps its
    splits and dev hold-out, so nothing is re-embedded or re-trained, whatever RETRIEVER_DEV_SHARE says now."""
    import json

    import polars as pl

    monkeypatch.delenv("RETRIEVER_DEV_SHARE", raising=False)
    root, storage = tmp_path / "data", tmp_path / "storage"
    shutil.copytree(BUNDLED, root / "alpha")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, ["alpha"])
    _ingest(instance, root, storage, {"dev_share": 0.2})
    corpus_dir = storage / "alpha" / "corpus"
    (corpus_dir / "ingest_settings.json").unlink(missing_ok=True)
    legacy_keys = {"dev_queries", "dev_seed", "dev_share", "dev_split", "documents", "queries", "source",
                   "test_split", "train_split", "version"}  # what a manifest held before
    manifest = {k: v for k, v in json.loads((corpus_dir / "manifest.json").read_text()).items() if k in legacy_keys}
    (corpus_dir / "manifest.json").write_text(json.dumps(manifest))
    hashes = pl.read_parquet(corpus_dir / "corpus.parquet")["content_hash"].to_list()
    monkeypatch.setenv("RETRIEVER_DEV_SHARE", "0.5")  # a later environment: the stored choice stands
    _ingest(instance, root, storage)
    after = json.loads((corpus_dir / "manifest.json").read_text())
    assert {k: after[k] for k in legacy_keys} == manifest
    assert pl.read_parquet(corpus_dir / "corpus.parquet")["content_hash"].to_list() == hashes
    assert json.loads((corpus_dir / "ingest_settings.json").read_text())["dev_share"] == 0.2
