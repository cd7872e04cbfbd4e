"""Assemble the code location: assets, checks, sensors, schedules and resources."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from resources import ComputeResource, DataRootResource, ModelsResource, StorageResource, teachers_from_list
from retriever_assets.assets.compare import build_leaderboard_asset
from retriever_assets.assets.embed import teacher_embeddings
from retriever_assets.assets.ingest import qa_corpus, raw_qa_folder
from retriever_assets.assets.mine import candidate_lists
from retriever_assets.assets.recipes import build_recipe_assets
from retriever_assets.checks import build_recipe_checks
from retriever_assets.lineage import lineages_of
from retriever_assets.recipes import load_recipes, with_builtin_recipes
from retriever_assets.schedules import refresh_job, weekly_refresh
from retriever_assets.sensors import dataset_folder_sensor

BUNDLED = Path(__file__).parent / "bundled"

MODELS = ModelsResource(teachers=teachers_from_list(os.environ.get("RETRIEVER_TEACHERS"),
                                                   os.environ.get("RETRIEVER_TEACHER_MODEL", "all-MiniLM-L6-v2")),
                        device=os.environ.get("RETRIEVER_DEVICE", "auto"))
# every recipe is validated against the teachers configured here, when the code location loads
RECIPES = with_builtin_recipes(load_recipes(os.environ.get("RETRIEVER_RECIPES"), teacher_kinds=MODELS.kinds()),
                               os.environ.get("RETRIEVER_RECIPE_NAMES"), teacher_kinds=MODELS.kinds())
LINEAGES = lineages_of(RECIPES)
recipe_assets = [a for lineage in LINEAGES for a in build_recipe_assets(lineage)]
recipe_checks = [c for lineage in LINEAGES for c in build_recipe_checks(lineage)]
leaderboard, best_student = build_leaderboard_asset(LINEAGES)

ALL_ASSETS = [raw_qa_folder, qa_corpus, teacher_embeddings, candidate_lists, *recipe_assets, leaderboard, best_student]
ALL_CHECKS = recipe_checks

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[refresh_job],
    sensors=[dataset_folder_sensor, dg.AutomationConditionSensorDefinition(
        "retriever_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.STOPPED)],
    schedules=[weekly_refresh],
    resources={
        "data_root": DataRootResource(path=os.environ.get("RETRIEVER_DATA_ROOT", str(BUNDLED))),
        "storage": StorageResource(
            root=os.environ.get("RETRIEVER_STORAGE", ".retriever_data"),
            lancedb_uri=os.environ.get("RETRIEVER_LANCEDB_URI") or None,
        ),
        "models": MODELS,
        # local (default) or ray: RETRIEVER_COMPUTE=ray, RETRIEVER_RAY_ADDRESS=<head>:6379 (unset: RAY_ADDRESS or a
        # Ray instance started in the step's process); README "Scaling out"
        "compute": ComputeResource(
            backend=os.environ.get("RETRIEVER_COMPUTE", "local"),
            address=os.environ.get("RETRIEVER_RAY_ADDRESS") or None,
            actors=int(os.environ.get("RETRIEVER_RAY_ACTORS", "2")),
            train_workers=int(os.environ.get("RETRIEVER_RAY_TRAIN_WORKERS", "2")),
        ),
    },
)
