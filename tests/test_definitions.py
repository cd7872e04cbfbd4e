"""The code location loads, with the six assets in method order and the checks, sensors and schedules."""

import dagster as dg

from retriever_assets.definitions import defs


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys >= {"qa_corpus", "teacher_embeddings", "candidate_lists", "hard_negatives", "student_checkpoint",
                    "mteb_scores"}
    chain = ["qa_corpus", "teacher_embeddings", "candidate_lists", "hard_negatives", "student_checkpoint",
             "mteb_scores"]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        parents = {p.to_user_string() for p in graph.get(dg.AssetKey(downstream)).parent_keys}
        assert upstream in parents
    assert defs.resolve_sensor_def("dataset_folder_sensor")
    assert defs.resolve_schedule_def("weekly_refresh")


def test_loading_the_code_location_prints_no_warnings():
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run([sys.executable, "-W", "always", "-c", "import retriever_assets.definitions"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Warning" not in done.stderr, done.stderr[-2000:]
