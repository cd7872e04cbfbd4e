"""Peak RSS of student training (issue 14, item 6): all-MiniLM-L6-v2 on SciFact training pairs, 4 negatives each.

The negatives are the SciFact documents next in id order (the memory of a step depends on text lengths and batch
shape, not on how hard the negatives are), so no teacher embedding is needed. RSS is sampled every 50 ms by a
thread; the same run is repeated with each memory setting (plain MNRL as before, + malloc_trim after each step,
+ the cached loss in chunks of 16 texts: today's default), in fresh processes, one after the other.

    .venv/bin/python benchmarks/training_memory.py --queries 120 [--data ../shared/data/scifact]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, sys, threading, time, psutil
from pathlib import Path
import polars as pl
sys.path.insert(0, sys.argv[1])
from retriever_assets.core.corpus import load_beir_folder, document_text, positives_of
from retriever_assets.core.training import (TrainingSettings, build_training_examples, fine_tune_student,
                                             select_training_queries)
from retriever_assets.core.encoding import EncoderSpec, load_sentence_transformer

data, queries, variant, out = sys.argv[2], int(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
proc, peak, samples = psutil.Process(), [0], []
def sample():
    while True:
        rss = proc.memory_info().rss
        peak[0] = max(peak[0], rss)
        samples.append(rss)
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
b = load_beir_folder(data, splits=("train",))
pos = positives_of(b.qrels, "train")
chosen = select_training_queries(pos["query_id"].to_list(), queries)
pos = pos.filter(pl.col("query_id").is_in(chosen))
ids = b.corpus["doc_id"].to_list()
at = {d: i for i, d in enumerate(ids)}
rows = [(q, s, ids[(at[d] + s) % len(ids)]) for q, d in pos.iter_rows() for s in range(1, 5)]
neg = pl.DataFrame(rows, schema={"query_id": pl.String, "slot": pl.Int32, "doc_id": pl.String}, orient="row")
q_text = dict(b.queries.select("query_id", "text").iter_rows())
d_text = {d: document_text(t, x) for d, t, x in b.corpus.select("doc_id", "title", "text").iter_rows()}
groups = build_training_examples(neg, pos, q_text, d_text)
model, _ = load_sentence_transformer(EncoderSpec(name="s", model="all-MiniLM-L6-v2", max_seq_length=256), device="cpu")
before = proc.memory_info().rss
release, mini = {"mnrl": (False, None), "mnrl+release": (True, None), "cached16+release": (True, 16)}[variant]
settings = TrainingSettings(batch_size=16, max_seq_length=256, save_steps=10_000, release_memory=release,
                            mini_batch_size=mini)
t0 = time.perf_counter()
outcome = fine_tune_student(model, groups, settings, out, base_identity="bench", log=lambda m: None)
print(json.dumps({"variant": variant, "examples": outcome.examples, "steps": outcome.steps,
                  "seconds": round(time.perf_counter() - t0, 1), "rss_before_training_mib": before >> 20,
                  "peak_rss_mib": peak[0] >> 20, "end_rss_mib": proc.memory_info().rss >> 20}))
"""


VARIANTS = ("mnrl", "mnrl+release", "cached16+release")  # the old setting, memory release alone, today's default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"))
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    results = []
    for _ in range(args.rounds):
        for variant in VARIANTS:
            with tempfile.TemporaryDirectory() as tmp:
                done = subprocess.run([sys.executable, "-c", CHILD, str(root), args.data, str(args.queries), variant,
                                       tmp], env=env, capture_output=True, text=True)
                if done.returncode:
                    print(done.stderr[-3000:])
                    raise SystemExit(1)
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(results[-1]), flush=True)
    for variant in VARIANTS:
        mine = [r for r in results if r["variant"] == variant]
        print(f"{variant:18}: peak RSS {min(r['peak_rss_mib'] for r in mine)}-"
              f"{max(r['peak_rss_mib'] for r in mine)} MiB over {len(mine)} run(s), "
              f"{mine[0]['steps']} steps, {min(r['seconds'] for r in mine)} s")


if __name__ == "__main__":
    main()
