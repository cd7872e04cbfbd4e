"""The command line as a user meets it: the root cause of a bad input with the --lenient hint, built-in recipes
selectable by name, and a loud warning when a rule left most queries without a mined negative."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from retriever_assets.cli import _coverage_warning, failure_summary

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "retriever_assets" / "bundled" / "demo-qa"


def _cli(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = os.environ | {"DAGSTER_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT),
                         "HF_HOME": str(tmp_path / "hf"), "MTEB_CACHE": str(tmp_path / "mteb")}
    base.pop("RETRIEVER_RECIPES", None)
    base.pop("RETRIEVER_RECIPE_NAMES", None)
    return subprocess.run([sys.executable, "-m", "retriever_assets.cli", *args], cwd=tmp_path, env=base | (env or {}),
                          capture_output=True, text=True, timeout=600)


def test_a_bad_record_prints_file_line_problem_and_the_lenient_hint(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(BUNDLED, root / "mine")
    with (root / "mine" / "corpus.jsonl").open("a") as fh:
        fh.write(json.dumps({"_id": "empty", "title": "Only a title", "text": "   "}) + "\n")
    done = _cli(tmp_path, "run", "--dataset", "mine", "--data-root", str(root), "--storage", str(tmp_path / "st"))
    assert done.returncode == 1, done.stderr[-2000:]
    tail = done.stderr.strip().splitlines()[-4:]
    text = "\n".join(tail)
    assert "step qa_corpus failed: CorpusFormatError:" in text, text
    assert "corpus.jsonl, line 151: empty document text: id 'empty'" in text
    assert "--lenient" in text and "Error occurred while executing" not in text


def test_builtin_recipes_are_listed_and_selectable_without_a_recipe_file(tmp_path):
    listed = _cli(tmp_path, "recipes")
    assert listed.returncode == 0
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert {"naive", "percpos-0.95", "shifted-10", "abs-0.7", "marginpos-0.05"} <= set(names)
    # a built-in name is accepted (the run stops later, at the dataset that does not exist) ...
    known = _cli(tmp_path, "run", "--dataset", "nowhere", "--recipe", "naive", "--storage", str(tmp_path / "st"))
    assert known.returncode == 2 and "dataset 'nowhere' not found" in known.stderr, known.stderr[-1500:]
    # ... an unknown one is refused naming the built-ins
    unknown = _cli(tmp_path, "run", "--dataset", "demo-qa", "--recipe", "nope")
    assert unknown.returncode == 2 and "unknown recipe(s) ['nope']" in unknown.stderr and "naive" in unknown.stderr
    # the named built-in gets its own lineage in the code location (what the CLI and the UI load)
    probe = subprocess.run(
        [sys.executable, "-c", "from retriever_assets.definitions import RECIPES, ALL_ASSETS; "
                               "print([r.name for r in RECIPES]); print(sorted(a.key.to_user_string() for a in "
                               "ALL_ASSETS if 'naive' in a.key.to_user_string()))"],
        cwd=ROOT, env=os.environ | {"RETRIEVER_RECIPE_NAMES": "naive"}, capture_output=True, text=True, timeout=300)
    assert "['percpos-0.95', 'naive']" in probe.stdout, probe.stderr[-1500:]
    assert "naive/hard_negatives" in probe.stdout and "naive/mteb_scores" in probe.stdout


def test_failure_summary_unwraps_dagster_to_the_root_cause():
    from dagster._utils.error import SerializableErrorInfo

    root = SerializableErrorInfo("retriever_assets.core.corpus.CorpusFormatError: /d/corpus.jsonl, line 3: "
                                 "malformed JSON\n", [], "CorpusFormatError")
    wrapped = SerializableErrorInfo('Error occurred while executing op "qa_corpus":\n', [],
                                    "DagsterExecutionStepExecutionError", cause=root)
    line = failure_summary("qa_corpus", wrapped)
    assert line.startswith("step qa_corpus failed: CorpusFormatError: /d/corpus.jsonl, line 3: malformed JSON")
    assert "--lenient" in line
    other = failure_summary("x", SerializableErrorInfo("boom", [], "RuntimeError"))
    assert other == "step x failed: RuntimeError: boom"


def test_a_rule_that_leaves_most_queries_empty_is_said_loudly(tmp_path):
    folder = tmp_path / "ds" / "negatives" / "percpos-0.95"
    folder.mkdir(parents=True)
    stats = {"queries": 100, "queries_without_negative": 82, "queries_with_full_set": 10,
             "recipe": {"name": "percpos-0.95", "num_negatives": 4}}
    (folder / "stats.json").write_text(json.dumps(stats))
    from resources import StorageResource
    from resources.artifacts import DatasetArtifacts

    artifacts = DatasetArtifacts(StorageResource(root=str(tmp_path)), "ds")
    [line] = _coverage_warning(artifacts, "percpos-0.95")
    assert line.startswith("ERROR: recipe 'percpos-0.95': 82/100 training queries (82%) got no mined negative")
    assert "stronger teacher" in line and "bm25" in line.lower()
    (folder / "stats.json").write_text(json.dumps(stats | {"queries_without_negative": 5, "queries_with_full_set": 70}))
    assert _coverage_warning(artifacts, "percpos-0.95")[0].startswith("WARNING:")
    (folder / "stats.json").write_text(json.dumps(stats | {"queries_without_negative": 0, "queries_with_full_set": 95}))
    assert _coverage_warning(artifacts, "percpos-0.95") == []


def test_ingest_holds_out_the_dev_split_and_a_bad_share_names_the_file(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(BUNDLED, root / "demo-qa")
    store = tmp_path / "st"
    done = _cli(tmp_path, "ingest", "--data-root", str(root), "--storage", str(store), "--dev-share", "0.2")
    assert done.returncode == 0, done.stderr[-1500:]
    line = [x for x in done.stdout.splitlines() if x.startswith("demo-qa:")][0]
    manifest = json.loads((store / "demo-qa" / "corpus" / "manifest.json").read_text())
    assert f"{manifest['dev_queries']} training queries held out as 'dev'" in line and manifest["dev_share"] == 0.2
    # the share given once is stored: a later plain ingest keeps it whatever the environment says now
    settings = store / "demo-qa" / "corpus" / "ingest_settings.json"
    kept = _cli(tmp_path, "ingest", "--data-root", str(root), "--storage", str(store),
                env={"RETRIEVER_DEV_SHARE": "0.9999999"})
    assert kept.returncode == 0 and "stored one is kept" in kept.stderr, kept.stderr[-1500:]
    assert json.loads((store / "demo-qa" / "corpus" / "manifest.json").read_text()) == manifest
    # after a reset the environment variable is the default; a share that holds out everything is refused, naming
    # the qrels file, and neither the corpus nor the stored settings change
    before = settings.read_text()
    bad = _cli(tmp_path, "ingest", "--data-root", str(root), "--storage", str(store), "--reset-ingest-settings",
               env={"RETRIEVER_DEV_SHARE": "0.9999999"})
    assert bad.returncode == 1 and "qrels/train.tsv" in bad.stderr and "holds out 90 of the 90" in bad.stderr, \
        bad.stderr[-1500:]
    assert json.loads((store / "demo-qa" / "corpus" / "manifest.json").read_text()) == manifest  # nothing lost
    assert settings.read_text() == before


def test_seed_applies_to_recipes_without_their_own_and_the_cli_says_so(tmp_path):
    """--seed trains every recipe without a student_seed; a second-seed recipe keeps its own (else naive-seed2 would
    train the very student naive trains, and the seed table would show no spread). Help, README and run agree."""
    from retriever_assets.configs import StudentConfig

    assert StudentConfig(seed=7).settings(recipe_seed=2).seed == 2 and StudentConfig(seed=7).settings().seed == 7
    helped = _cli(tmp_path, "run", "--help")
    help_text = " ".join(helped.stdout.split())
    assert "recipes without their own student_seed" in help_text and "keeps its own" in help_text, help_text
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "| | `seed` | none | training seed of every recipe without its own `student_seed`" in readme
    assert "`--seed` trains every recipe without its own `student_seed`" in readme
    done = _cli(tmp_path, "run", "--dataset", "nowhere", "--recipe", "naive", "--recipe", "naive-seed2",
                "--seed", "7", "--storage", str(tmp_path / "st"))
    assert done.returncode == 2 and "dataset 'nowhere' not found" in done.stderr, done.stderr[-1500:]
    notes = [line for line in done.stderr.splitlines() if line.startswith("note: --seed")]
    assert notes == ["note: --seed 7 does not apply to recipe 'naive-seed2': it trains with its own student_seed 2"]
