"""Two dataset partitions materialized at the same time into one storage root do not corrupt each other."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl

from resources import StorageResource

BUNDLED = Path(__file__).resolve().parents[2] / "retriever_assets" / "bundled" / "demo-qa"

CHILD = textwrap.dedent("""
    import sys
    import dagster as dg
    from resources import ComputeResource, DataRootResource, StorageResource, TeacherConfig, ModelsResource
    from retriever_assets.definitions import ALL_ASSETS, ALL_CHECKS
    from retriever_assets.partitions import dataset_partitions

    data_root, storage, tiny, dataset = sys.argv[1:5]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, [dataset])
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS], partition_key=dataset, instance=instance,
        selection=["qa_corpus", "teacher_embeddings", "candidate_lists", "hard_negatives"],
        resources={
            "data_root": DataRootResource(path=data_root),
            "storage": StorageResource(root=storage),
            "compute": ComputeResource(),
            "models": ModelsResource(teachers=[TeacherConfig(name="minilm", model=tiny, max_seq_length=64),
                                                   TeacherConfig(name="bm25", kind="bm25")], device="cpu"),
        },
        run_config={"ops": {"teacher_embeddings": {"config": {"chunk_size": 25, "batch_size": 16}},
                            "hard_negatives": {"config": {"method": "naive"}}}},
    )
    sys.exit(0 if result.success else 1)
""")


def test_two_partitions_at_once(tiny_encoder, tmp_path):
    root = tmp_path / "data"
    for name in ("alpha", "beta"):
        shutil.copytree(BUNDLED, root / name)
    storage = tmp_path / "storage"
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(storage), str(tiny_encoder), name],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                for name in ("alpha", "beta")]
    outcomes = [(c.wait(timeout=600), c.stderr.read()[-2000:]) for c in children]
    assert all(code == 0 for code, _ in outcomes), outcomes
    store = StorageResource(root=str(storage))
    for name in ("alpha", "beta"):
        index = store.embedding_store(name, "minilm").stored_index()
        assert index.height == 150 + 90 and index["item_id"].is_unique().all()
        negatives = pl.read_parquet(storage / name / "negatives" / "percpos-0.95" / "negatives.parquet")
        assert negatives["query_id"].n_unique() == 90
