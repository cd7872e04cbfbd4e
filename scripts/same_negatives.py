"""Check that a refactor left the mined negatives unchanged: mine demo-qa with a tiny seeded encoder (+ BM25) at
another git revision and at the working tree, and compare candidates and four recipes' negatives exactly.

    .venv/bin/python scripts/same_negatives.py 77e007e      (prints one line per artifact; exit 1 on a difference)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MINE = r"""
import shutil, sys
from pathlib import Path
tree, out, tiny_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
sys.path[:0] = [tree, tree + "/tests"]
from conftest import build_tiny_encoder
try:
    from resources import ModelsResource as Models
except ImportError:  # revisions before the rename
    from resources import TeachersResource as Models
from resources import StorageResource, TeacherConfig
from retriever_assets import steps
from retriever_assets.core.mining import MiningRecipe
assert steps.__file__.startswith(tree), steps.__file__
tiny = build_tiny_encoder(tiny_dir)
storage = StorageResource(root=str(out))
models = Models(teachers=[TeacherConfig(name="tiny", model=str(tiny), max_seq_length=64),
                          TeacherConfig(name="bm25", kind="bm25")], device="cpu")
quiet = lambda m: None
steps.ingest_corpus(storage, "demo-qa", Path(tree) / "retriever_assets/bundled/demo-qa", mode="strict",
                    train_split="train", test_split="test")
steps.embed_teachers(storage, models, "demo-qa", batch_size=32, chunk_size=100, log=quiet)
steps.build_candidates(storage, models, "demo-qa", top_k=20, query_chunk=16, doc_chunk=128, log=quiet)
for r in [MiningRecipe(name="p", teachers=("tiny", "bm25")), MiningRecipe(name="n", teachers=("tiny",), method="naive"),
          MiningRecipe(name="s", teachers=("tiny", "bm25"), sampling="top1_sampled", ensemble="intra_dedup"),
          MiningRecipe(name="m", teachers=("tiny",), method="marginpos", param=0.01)]:
    steps.mine_negatives(storage, models, "demo-qa", r, log=quiet)
"""


def main(rev: str) -> int:
    import polars as pl

    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "-f", "--detach", str(before), rev], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            for tree, out in ((before, Path(tmp) / "out_before"), (ROOT, Path(tmp) / "out_after")):
                subprocess.run([sys.executable, "-c", MINE, str(tree), str(out), str(Path(tmp) / "tiny")], env=env,
                               check=True, capture_output=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, capture_output=True)
        same = True
        for rel in ["candidates/candidates.parquet", *(f"negatives/{r}/negatives.parquet" for r in "pnsm")]:
            a = pl.read_parquet(Path(tmp) / "out_before" / "demo-qa" / rel)
            b = pl.read_parquet(Path(tmp) / "out_after" / "demo-qa" / rel)
            print(f"{rel:36} rows {a.height:5} vs {b.height:5}  identical: {a.equals(b)}")
            same &= a.equals(b)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
