"""Helpers of the UI end-to-end test: GraphQL calls, ports, process groups and the dagster dev lifecycle."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_START_TIMEOUT_S = 180
ARTIFACTS = Path(__file__).resolve().parents[2] / "tests" / "artifacts" / "ui"


def _missing(what: str):
    """A missing browser or driver fails a run that asked for the UI test (CI) and skips an incidental one."""
    if os.environ.get("RETRIEVER_UI_TESTS") == "1":
        pytest.fail(what, pytrace=False)
    pytest.skip(what)


# ---------------------------------------------------------------------------------------------- helpers


def graphql(base: str, query: str, variables: dict | None = None, *, timeout: float = 60) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{base}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = json.loads(response.read())
    assert not data.get("errors"), data["errors"]
    return data["data"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line mentions `text` (our temp dirs are unique, so: ours)."""
    try:
        import psutil
    except ImportError:
        return []
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(p.info["cmdline"] or []):
                found.append(f"{p.info['pid']}: {' '.join(p.info['cmdline'])[:160]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@dataclass
class DagsterUI:
    base: str
    port: int
    pid: int
    root: Path
    log: Path
    tiny_model: Path
    location: str
    repository: str
    artifacts: Path = ARTIFACTS


@dataclass
class ChainRun:
    assets: list[str]  # in lineage order
    partition: str
    run_id: str
    seconds: float
    ndcg_at_10: float  # the float the UI is given for mteb_scores' `ndcg_at_10` metadata


# ---------------------------------------------------------------------------------------------- fixtures


def _stop(proc: subprocess.Popen) -> None:
    """Stop dagster dev and everything it started: SIGINT to its process group (by PID), escalate if needed."""
    pgid = proc.pid  # start_new_session=True: the group id is the server's PID
    for sig, grace in ((signal.SIGINT, 45), (signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        if not _group_alive(pgid):
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(pgid):
                break
            time.sleep(0.5)
    proc.wait(timeout=15)


def _wait_for_code_location(base: str, proc: subprocess.Popen, log: Path) -> tuple[str, str]:
    """Poll /server_info, then the workspace, until the code location is loaded; its location and repository name."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"dagster dev did not come up (exit code {proc.poll()}):\n{_tail(log)}")
        try:
            urllib.request.urlopen(f"{base}/server_info", timeout=5).close()
            entries = graphql(base, """{ workspaceOrError { ... on Workspace { locationEntries { name
                locationOrLoadError { __typename ... on RepositoryLocation { repositories { name } }
                                      ... on PythonError { message } } } } } }""")["workspaceOrError"]
        except (OSError, urllib.error.URLError):
            entries = {}
        for entry in entries.get("locationEntries", []):
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                raise RuntimeError(f"code location {entry['name']} failed to load: {loaded['message']}")
            if loaded.get("__typename") == "RepositoryLocation":
                return entry["name"], loaded["repositories"][0]["name"]
        time.sleep(1)
