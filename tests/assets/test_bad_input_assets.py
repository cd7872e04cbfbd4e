"""Bad input through the qa_corpus asset: strict fails naming file and line and keeps the last good data;
lenient skips, counts and shows the first examples in the materialization metadata."""

import shutil
from pathlib import Path

import dagster as dg
import polars as pl

from resources import ComputeResource, DataRootResource, ModelsResource, StorageResource
from retriever_assets.definitions import ALL_ASSETS, ALL_CHECKS
from retriever_assets.partitions import dataset_partitions

BUNDLED = Path(__file__).resolve().parents[2] / "retriever_assets" / "bundled" / "demo-qa"


def _run(instance, root, storage, mode):
    return dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS], partition_key="demo", instance=instance, selection=["qa_corpus"],
        resources={"data_root": DataRootResource(path=str(root)), "storage": StorageResource(root=str(storage)),
                   "models": ModelsResource(), "compute": ComputeResource()},
        run_config={"ops": {"qa_corpus": {"config": {"validation_mode": mode}}}}, raise_on_error=False,
    )


def test_strict_and_lenient_through_the_asset(tmp_path):
    root, storage = tmp_path / "data", tmp_path / "storage"
    shutil.copytree(BUNDLED, root / "demo")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, ["demo"])
    assert _run(instance, root, storage, "strict").success
    good = pl.read_parquet(storage / "demo" / "corpus" / "corpus.parquet")

    corpus = root / "demo" / "corpus.jsonl"
    lines = corpus.read_text(encoding="utf-8").splitlines()
    lines.insert(2, '{"_id": "broken", "text": ')
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")

    strict = _run(instance, root, storage, "strict")
    assert not strict.success
    failure = next(e for e in strict.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "corpus.jsonl, line 3: malformed JSON" in message
    # the last good materialization's data is untouched
    assert pl.read_parquet(storage / "demo" / "corpus" / "corpus.parquet").equals(good)

    lenient = _run(instance, root, storage, "lenient")
    assert lenient.success
    meta = lenient.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert meta["records_skipped_or_noted"].value == 1
    assert meta["issues_by_reason"].value == {"malformed JSON": 1}
    assert "corpus.jsonl:3" in meta["first_issues"].value
    assert meta["documents"].value == good.height
