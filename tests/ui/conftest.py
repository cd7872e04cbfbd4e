"""Fixtures of the UI end-to-end test: a real `dagster dev` on 127.0.0.1 with a fresh temporary instance, the whole
chain materialized for the bundled demo-qa partition through the UI's GraphQL API, and Debian's Chromium driven by
Playwright (launched from /usr/bin/chromium; `playwright install` is never needed).

The tests here are marked `ui` and are skipped unless selected on purpose: `pytest -m ui tests/ui` or
RETRIEVER_UI_TESTS=1 (what `.ci/run` does). The plain `pytest` / `make test` run never starts a server.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import (
    ChainRun,
    DagsterUI,
    _free_port,
    _group_alive,
    _missing,
    _port_open,
    _processes_mentioning,
    _stop,
    _tail,
    _wait_for_code_location,
    graphql,
)

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHAIN = ["qa_corpus", "teacher_embeddings", "candidate_lists", "hard_negatives", "student_checkpoint", "mteb_scores"]
PARTITION = "demo-qa"
ARTIFACTS = REPO / "tests" / "artifacts" / "ui"
RUN_TIMEOUT_S = 480


# ---------------------------------------------------------------------------------------------- selection


def _ui_selected(config) -> bool:
    """True when asked for on purpose: RETRIEVER_UI_TESTS=1, or a -m expression that needs the `ui` mark."""
    if os.environ.get("RETRIEVER_UI_TESTS") == "1":
        return True
    expr = (config.getoption("markexpr", default="") or "").strip()
    if not expr:
        return False
    try:
        from _pytest.mark.expression import Expression

        compiled = Expression.compile(expr)
        return compiled.evaluate(lambda name, **_: name == "ui") and not compiled.evaluate(lambda name, **_: False)
    except Exception:  # pytest moved its expression parser: fall back to a plain reading
        return "ui" in re.findall(r"[\w-]+", expr) and "not ui" not in expr


def pytest_collection_modifyitems(config, items):
    if _ui_selected(config):
        return
    skip = pytest.mark.skip(reason="UI end-to-end test: run `pytest -m ui tests/ui` (or set RETRIEVER_UI_TESTS=1)")
    for item in items:
        if item.get_closest_marker("ui"):
            item.add_marker(skip)




@pytest.fixture(scope="session")
def dagster_ui(tiny_encoder) -> DagsterUI:
    """`dagster dev -w workspace.yaml` on 127.0.0.1:<free port> over a fresh temporary DAGSTER_HOME."""
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the Python package playwright is not installed (pip install playwright; no browser download)")

    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # this run's screenshots and log only
    root = Path(tempfile.mkdtemp(prefix="retriever-ui-"))
    log = root / "dagster_dev.log"
    proc = port = None
    try:
        home, tmp = root / "dagster_home", root / "tmp"
        home.mkdir()
        tmp.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRIEVER_", "DAGSTER_"))}
        env.update({
            "DAGSTER_HOME": str(home), "TMPDIR": str(tmp),
            "RETRIEVER_DATA_ROOT": str(REPO / "retriever_assets" / "bundled"),
            "RETRIEVER_STORAGE": str(root / "storage"),
            "RETRIEVER_TEACHER_MODEL": str(tiny_encoder),
            "RETRIEVER_DEVICE": "cpu", "RETRIEVER_FORCE_CPU": "1",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(root / "hf"),
            "MTEB_CACHE": str(root / "mteb"), "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",  # a small machine shared with other work
        })
        # Register the partition before the daemon starts: otherwise dataset_folder_sensor finds the folder first
        # and launches an ingest run of its own next to ours.
        subprocess.run([sys.executable, "-c", "import dagster as dg; "
                        f"dg.DagsterInstance.get().add_dynamic_partitions('dataset', [{PARTITION!r}])"],
                       cwd=REPO, env=env, check=True, capture_output=True, timeout=120)

        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: the whole tree is stopped by this PID
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # else dagster dev ignores SIGINT
            )
        location, repository = _wait_for_code_location(base, proc, log)
        graphql(base, "mutation { setNuxSeen }")  # the welcome pop-up of a fresh instance
        yield DagsterUI(base=base, port=port, pid=proc.pid, root=root, log=log, tiny_model=tiny_encoder,
                        location=location, repository=repository)
    finally:
        if proc is not None:
            _stop(proc)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if log.exists():
            shutil.copy(log, ARTIFACTS / "dagster_dev.log")
        leftovers = _processes_mentioning(str(root))
        shutil.rmtree(root, ignore_errors=True)
        if proc is not None:
            assert not _group_alive(proc.pid), f"processes of dagster dev (group {proc.pid}) are still running"
            assert not leftovers, f"processes still running from the test instance: {leftovers}"
            assert not _port_open(port), f"something still listens on 127.0.0.1:{port}"


LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on PipelineNotFoundError { message }
  }
}"""

MATERIALIZATIONS = """
query($keys: [AssetKeyInput!]!, $partition: String!) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    partitionStats { numMaterialized numPartitions }
    assetMaterializations(partitions: [$partition], limit: 1) {
      runId partition
      metadataEntries { label ... on FloatMetadataEntry { floatValue } }
    }
  }
}"""


@pytest.fixture(scope="session")
def chain_run(dagster_ui) -> ChainRun:
    """Materialize the six assets for demo-qa with one `launchRun` (what "Materialize all" does) and wait for it."""
    tiny = str(dagster_ui.tiny_model)
    params = {
        "selector": {"repositoryLocationName": dagster_ui.location, "repositoryName": dagster_ui.repository,
                     "jobName": "__ASSET_JOB", "assetSelection": [{"path": [key]} for key in CHAIN]},
        "runConfigData": {
            "execution": {"config": {"in_process": {}}},  # one process: ~30 s instead of ~3 min of step start-ups
            "ops": {
                "teacher_embeddings": {"config": {"batch_size": 32}},
                "student_checkpoint": {"config": {"base_model": tiny, "max_seq_length": 64, "batch_size": 8}},
                "mteb_scores": {"config": {"batch_size": 32}},
            },
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": PARTITION},
                                       {"key": "launched_by", "value": "tests/ui"}]},
    }
    started = time.monotonic()
    launched = graphql(dagster_ui.base, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    status = None
    while time.monotonic() - started < RUN_TIMEOUT_S:
        status = graphql(dagster_ui.base, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                         {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    seconds = time.monotonic() - started
    assert status == "SUCCESS", f"run {run_id} ended {status} after {seconds:.0f} s:\n{_tail(dagster_ui.log)}"

    nodes = graphql(dagster_ui.base, MATERIALIZATIONS,
                    {"keys": [{"path": [key]} for key in CHAIN], "partition": PARTITION})["assetNodes"]
    by_key = {node["assetKey"]["path"][-1]: node for node in nodes}
    assert sorted(by_key) == sorted(CHAIN)
    for key, node in by_key.items():
        assert node["partitionStats"] == {"numMaterialized": 1, "numPartitions": 1}, (key, node["partitionStats"])
        [event] = node["assetMaterializations"]
        assert (event["runId"], event["partition"]) == (run_id, PARTITION), (key, event)
    floats = {e["label"]: e.get("floatValue") for e in by_key["mteb_scores"]["assetMaterializations"][0]
              ["metadataEntries"]}
    ndcg = floats["ndcg_at_10"]
    # the metadata is the student's score written by the asset (scores.json under the storage root)
    [scores_file] = (dagster_ui.root / "storage" / PARTITION / "scores").glob("*/scores.json")
    results = json.loads(scores_file.read_text())["results"]
    [student] = [v for label, v in results.items() if label.startswith("student (")]
    assert student["ndcg_at_10"] == ndcg
    return ChainRun(assets=CHAIN, partition=PARTITION, run_id=run_id, seconds=seconds, ndcg_at_10=ndcg)


@pytest.fixture(scope="session")
def chromium():
    """Headless Debian Chromium with a fresh profile in a temp dir; closed and checked gone at the end."""
    from playwright.sync_api import sync_playwright

    profile = Path(tempfile.mkdtemp(prefix="retriever-ui-chromium-"))
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1600, "height": 1000}, locale="en-US", timezone_id="UTC",
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        leftovers = _processes_mentioning(str(profile))
        shutil.rmtree(profile, ignore_errors=True)
        assert not leftovers, f"chromium processes still running: {leftovers}"
