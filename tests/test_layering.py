"""core/ stays pure: nothing under it imports dagster, resources or the Ray stack (house style)."""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "retriever_assets" / "core"
FORBIDDEN = ("dagster", "resources", "ray", "lance_ray", "dagster_ray")


def test_core_does_not_import_dagster():
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders
