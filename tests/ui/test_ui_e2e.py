"""End to end through the Dagster UI: `dagster dev` on 127.0.0.1, the whole chain launched over GraphQL,
then the lineage and scores pages checked in headless Chromium as a person would see them.

Run with `pytest -m ui tests/ui` (CI does); needs Debian's chromium at /usr/bin/chromium.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import build_tiny_encoder

pytestmark = pytest.mark.ui

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHAIN = ["qa_corpus", "teacher_embeddings", "candidate_lists", "hard_negatives", "student_checkpoint", "mteb_scores"]
ARTIFACTS = REPO / "tests" / "artifacts"
SCREENSHOTS = REPO / "docs" / "screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(base: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{base}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        data = json.loads(response.read())
    assert "errors" not in data, data["errors"]
    return data["data"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("ui")
    tiny = build_tiny_encoder(tmp / "tiny")
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    (tmp / "tmp").mkdir()
    env = os.environ | {
        "DAGSTER_HOME": str(home), "TMPDIR": str(tmp / "tmp"), "RETRIEVER_STORAGE": str(tmp / "storage"),
        "RETRIEVER_TEACHER_MODEL": str(tiny), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf"), "MTEB_CACHE": str(tmp / "mteb"), "RETRIEVER_FORCE_CPU": "1",
    }
    subprocess.run([sys.executable, "-c", "import dagster as dg; dg.DagsterInstance.get().add_dynamic_partitions("
                    "'dataset', ['demo-qa'])"], env=env, check=True, cwd=REPO)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp / "dagster_dev.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p",
         str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/server_info", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((tmp / "dagster_dev.log").read_text()[-3000:]) from None
                time.sleep(1)
        _graphql(base, "mutation { setNuxSeen }")
        yield {"base": base, "tiny": tiny, "tmp": tmp, "port": port}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "dagster dev is still listening"


LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}"""


@pytest.fixture(scope="module")
def finished_run(server):
    tiny = str(server["tiny"])
    params = {
        "selector": {"repositoryLocationName": "retriever_assets", "repositoryName": "__repository__",
                     "jobName": "__ASSET_JOB", "assetSelection": [{"path": [k]} for k in CHAIN]},
        "runConfigData": {"ops": {
            "student_checkpoint": {"config": {"base_model": tiny, "max_seq_length": 64, "batch_size": 8}},
            "mteb_scores": {"config": {"batch_size": 32}},
        }},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "demo-qa"}]},
    }
    launched = _graphql(server["base"], LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline, status = time.monotonic() + 900, None
    while time.monotonic() < deadline:
        status = _graphql(server["base"], "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                          {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(3)
    assert status == "SUCCESS", f"run {run_id} ended {status}"
    scores = json.loads((server["tmp"] / "storage" / "demo-qa" / "scores" / "percpos-0.95" / "scores.json")
                        .read_text())
    return run_id, scores["results"]["student (percpos-0.95)"]["ndcg_at_10"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:  # playwright gives each launch a fresh, empty profile
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        try:
            yield b
        finally:
            b.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))
    shutil.copy(ARTIFACTS / name, SCREENSHOTS / name)


def test_lineage_shows_the_six_assets_in_order(server, finished_run, browser):
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    page.goto(f"{server['base']}/assets/mteb_scores?view=lineage&lineageScope=upstream&lineageDepth=8",
              wait_until="networkidle")
    for key in CHAIN:
        page.get_by_text(key, exact=True).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    _shot(page, "lineage.png")
    def node_box(key):  # the graph node, not the page title (the title also reads "mteb_scores")
        boxes = [m.bounding_box() for m in page.get_by_text(key, exact=True).all()]
        return max((b for b in boxes if b), key=lambda b: b["y"])

    boxes = [node_box(key) for key in CHAIN]
    xs, ys = [b["x"] for b in boxes], [b["y"] for b in boxes]
    assert xs == sorted(xs) or ys == sorted(ys), (xs, ys)


def test_scores_page_shows_the_partition_and_ndcg(server, finished_run, browser):
    _, ndcg = finished_run
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    page.goto(f"{server['base']}/assets/mteb_scores?partition=demo-qa", wait_until="networkidle")
    page.get_by_text("ndcg_at_10", exact=True).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    _shot(page, "mteb_scores.png")
    text = page.inner_text("body")
    assert "demo-qa" in text
    assert f"{ndcg:.4f}"[:5] in text or str(ndcg)[:6] in text, ndcg
