"""The tiny in-process chain on demo-qa shared by the pipeline tests: resources, run config, helpers, fixture."""

from pathlib import Path

import dagster as dg

from resources import ComputeResource, DataRootResource, ModelsResource, StorageResource, TeacherConfig
from retriever_assets.definitions import ALL_ASSETS, ALL_CHECKS

DATASET = "demo-qa"


def all_assets():
    return [*ALL_ASSETS, *ALL_CHECKS]


def resources_for(data_root: Path, storage: Path, tiny: Path) -> dict:
    return {
        "data_root": DataRootResource(path=str(data_root)),
        "storage": StorageResource(root=str(storage)),
        "compute": ComputeResource(),
        "models": ModelsResource(
            teachers=[TeacherConfig(name="tiny", model=str(tiny), max_seq_length=64),
                      TeacherConfig(name="bm25", kind="bm25")],
            device="cpu",
        ),
    }


def run_config(tiny: Path) -> dict:
    return {"ops": {
        "candidate_lists": {"config": {"top_k": 20, "query_chunk": 16, "doc_chunk": 128}},
        "hard_negatives": {"config": {"teachers": ["tiny", "bm25"], "ensemble": "intra"}},
        "student_checkpoint": {"config": {"base_model": str(tiny), "batch_size": 8, "max_seq_length": 64,
                                          "learning_rate": 1e-3, "epochs": 3,
                                          "save_steps": 3}},
        "mteb_scores": {"config": {"batch_size": 32}},
        "teacher_embeddings": {"config": {"batch_size": 32, "chunk_size": 100}},
        "leaderboard": {"config": {"judge_model": str(tiny)}},
    }}


def materialize(instance, resources, tiny, selection=None):
    config = run_config(tiny)
    if selection:
        config["ops"] = {k: v for k, v in config["ops"].items() if k in selection}
    return dg.materialize(all_assets(), partition_key=DATASET, instance=instance, resources=resources,
                          run_config=config, selection=selection)


def materializations(result, key: str):
    return [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
            if e.asset_key.to_user_string() == key]
