"""Full teacher embedding vs re-embedding after editing a fraction of the documents (issue: incremental refresh).

    .venv/bin/python benchmarks/incremental_embedding.py --data ../shared/data/scifact --fraction 0.01

Copies the dataset to a temporary data root (the source is never written), embeds it from scratch with the
pipeline's teacher_embeddings step, edits `fraction` of the documents, and runs the step again. Prints the
documents embedded and the wall time of both runs, and their ratios.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from resources import ModelsResource, StorageResource, TeacherConfig  # noqa: E402
from retriever_assets import steps  # noqa: E402


def edit_documents(corpus: Path, fraction: float, seed: int) -> int:
    lines = corpus.read_text(encoding="utf-8").splitlines()
    rng = random.Random(seed)
    chosen = rng.sample(range(len(lines)), max(1, round(len(lines) * fraction)))
    for i in chosen:
        record = json.loads(lines[i])
        record["text"] += " (Revised.)"
        lines[i] = json.dumps(record, ensure_ascii=False)
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(chosen)


def run(storage: StorageResource, teachers: ModelsResource, name: str, folder: Path, batch_size: int) -> dict:
    steps.ingest_corpus(storage, name, folder, mode="strict", train_split="train", test_split="test")
    t0 = time.perf_counter()
    report = steps.embed_teachers(storage, teachers, name, batch_size=batch_size, chunk_size=1024, log=lambda m: None)
    seconds = time.perf_counter() - t0
    row = report.values["teachers"][0]
    return {"embedded": row["embedded"], "unchanged": row["unchanged"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/scifact")
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    source = Path(args.data).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        folder = root / source.name
        shutil.copytree(source, folder)
        for path in folder.rglob("*"):
            path.chmod(0o644 if path.is_file() else 0o755)
        storage = StorageResource(root=str(Path(tmp) / "storage"))
        teachers = ModelsResource(teachers=[TeacherConfig(name="dense", model=args.model)])
        full = run(storage, teachers, source.name, folder, args.batch_size)
        edited = edit_documents(folder / "corpus.jsonl", args.fraction, args.seed)
        incremental = run(storage, teachers, source.name, folder, args.batch_size)
    items = full["embedded"]
    print(f"dataset {source.name}: {items} items (documents + training queries), {edited} documents edited "
          f"({args.fraction:.1%}), model {args.model}, device {teachers.resolved_device()}")
    print(f"{'run':<22} {'embedded':>9} {'unchanged':>9} {'seconds':>9}")
    print(f"{'full':<22} {full['embedded']:>9} {full['unchanged']:>9} {full['seconds']:>9.1f}")
    print(f"{'after edit':<22} {incremental['embedded']:>9} {incremental['unchanged']:>9} "
          f"{incremental['seconds']:>9.1f}")
    print(f"ratio embedded: {incremental['embedded'] / items:.4f} (goal <= 0.01 of the items)")
    print(f"ratio time:     {incremental['seconds'] / full['seconds']:.4f} (goal <= 0.05)")


if __name__ == "__main__":
    main()
