"""Mutation check of the mining rules: each mutant below must make the default mining tests fail.

Every mutant is applied to a fresh copy of the project in a temporary folder (the working tree is never touched),
then the default-suite test files that guard the rules are run there. A mutant that the tests do not kill is a hole
in the suite. Run: `make mutants` (or `.venv/bin/python scripts/mutants.py [name ...]`); exit status 1 if any survives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MINING = "retriever_assets/core/mining.py"
TESTS = ["tests/core/test_rule_reference.py", "tests/core/test_mining.py"]


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    file: str
    old: str
    new: str


MUTANTS = [
    Mutant("no-positive-keeps-all", "a query with no positive score keeps all candidates", MINING,
           "kept = keep_rule(recipe.method, recipe.threshold).fill_null(False)",
           "kept = keep_rule(recipe.method, recipe.threshold).fill_null(True)"),
    Mutant("temperature-ignored", "softmax sampling ignores the temperature", MINING,
           'key = pl.col("score").cast(pl.Float64) / recipe.temperature + pl.Series(noise)',
           'key = pl.col("score").cast(pl.Float64) + pl.Series(noise)'),
    Mutant("sample-k-ignored", "sampling draws from all survivors, not the first sample_k", MINING,
           'df = df.filter(pl.col("survivor_rank") <= k)', "df = df"),
    Mutant("drop-drops-full", "short_queries: drop also drops queries with a full set", MINING,
           'negatives = negatives.join(short.select("query_id"), on="query_id", how="anti")',
           'negatives = negatives.join(per_query.select("query_id"), on="query_id", how="anti")'),
    Mutant("marginpos-le", "marginpos keeps s <= p - m instead of s < p - m", MINING,
           "lambda rank, s, p, m: s < p - float(m)", "lambda rank, s, p, m: s <= p - float(m)"),
    Mutant("percpos-sign-unsafe", "percpos threshold p * x (wrong for a negative positive score)", MINING,
           "lambda rank, s, p, x: s < p - p.abs() * (1.0 - float(x))", "lambda rank, s, p, x: s < p * float(x)"),
    Mutant("shifted-ge", "shifted keeps rank >= N instead of rank > N", MINING,
           "lambda rank, s, p, n: rank > int(n)", "lambda rank, s, p, n: rank >= int(n)"),
    Mutant("highest-positive", "the threshold uses the highest positive score, not the lowest", MINING,
           'agg(pl.col("score").min().alias("pos_score"))', 'agg(pl.col("score").max().alias("pos_score"))'),
    Mutant("positives-not-removed", "a known positive listed among candidates is not removed", MINING,
           'cands = cands.join(known, on=["query_id", "doc_id"], how="anti")', "cands = cands"),
    Mutant("float32-threshold", "rule thresholds computed in float32", MINING,
           'score, pos = pl.col("score").cast(pl.Float64), pl.col("pos_score").cast(pl.Float64)',
           'score, pos = pl.col("score"), pl.col("pos_score")'),
]


def copy_project(target: Path) -> None:
    for name in ("retriever_assets", "resources", "tests"):
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "artifacts"))
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")


def run_tests(cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(cwd), "HYPOTHESIS_STORAGE_DIRECTORY": str(cwd / ".hypothesis")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly", *TESTS], cwd=cwd, env=env,
                          capture_output=True, text=True)


def main(names: list[str]) -> int:
    chosen = [m for m in MUTANTS if not names or m.name in names]
    survived = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        copy_project(base)
        check = subprocess.run([sys.executable, "-c", "import retriever_assets; print(retriever_assets.__file__)"],
                               cwd=base, env=os.environ | {"PYTHONPATH": str(base)}, capture_output=True, text=True)
        assert check.stdout.strip().startswith(str(base)), f"the copy is not what gets imported: {check.stdout}"
        clean = run_tests(base)
        if clean.returncode != 0:
            print(clean.stdout[-3000:])
            print("the unmutated tests fail: fix them first")
            return 2
        print(f"{'mutant':24} {'result':8} {'seconds':>7}  what")
        for mutant in chosen:
            work = Path(tmp) / mutant.name
            shutil.copytree(base, work)
            path = work / mutant.file
            source = path.read_text()
            if source.count(mutant.old) != 1:
                print(f"{mutant.name:24} {'STALE':8} {'':>7}  the mutated line is no longer in {mutant.file}")
                survived.append(mutant.name)
                continue
            path.write_text(source.replace(mutant.old, mutant.new))
            start = time.perf_counter()
            result = run_tests(work)
            killed = result.returncode != 0
            failed = [line.split(" ")[1] for line in result.stdout.splitlines() if line.startswith("FAILED")]
            print(f"{mutant.name:24} {'killed' if killed else 'SURVIVED':8} {time.perf_counter() - start:7.1f}  "
                  f"{mutant.what}" + (f"  [by {failed[0]}]" if failed else ""))
            if not killed:
                survived.append(mutant.name)
    print(f"{len(chosen) - len(survived)}/{len(chosen)} mutants killed" +
          (f"; survived: {', '.join(survived)}" if survived else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
