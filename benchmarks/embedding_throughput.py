"""Teacher-embedding path vs bare `SentenceTransformer.encode` on the same texts, model and batch size.

    .venv/bin/python benchmarks/embedding_throughput.py --data ../shared/data/scifact --docs 1000

Both sides encode the same documents (title + text, as the pipeline does) with the same model object settings;
ours also plans the update, writes every chunk to LanceDB and records hashes. Runs alternate (bare, ours, bare,
ours, ...) so machine noise hits both; the table reports items/s of each and the ratio ours/bare (goal >= 0.97).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import polars as pl  # noqa: E402

from resources import StorageResource, TeacherConfig, TeachersResource  # noqa: E402
from retriever_assets import steps  # noqa: E402
from retriever_assets.core.corpus import document_text, load_beir_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/scifact")
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    data = load_beir_folder(args.data, splits=("train",))
    corpus = data.corpus.head(args.docs)
    texts = [document_text(t, x) for t, x in corpus.select("title", "text").iter_rows()]
    spec = TeacherConfig(name="dense", model=args.model)
    teachers = TeachersResource(teachers=[spec])
    model, _ = teachers.load(spec.spec())
    model.encode(texts[:64], batch_size=args.batch_size)  # warm-up

    items = pl.DataFrame({"item_id": [f"d:{d}" for d in corpus["doc_id"]], "role": ["document"] * corpus.height,
                          "content_hash": corpus["content_hash"], "text": texts})
    bare, ours = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                     show_progress_bar=False)
        bare.append(time.perf_counter() - t0)
        tmp = tempfile.mkdtemp()
        try:
            storage = StorageResource(root=tmp)
            t0 = time.perf_counter()
            row = steps.embed_dense_teacher(storage, teachers, "bench", spec.spec(), items,
                                            batch_size=args.batch_size, chunk_size=1024, log=lambda m: None)
            ours.append(time.perf_counter() - t0)
            assert row["embedded"] == len(texts)
        finally:
            shutil.rmtree(tmp)
    b, o = min(bare), min(ours)
    print(f"{len(texts)} documents, model {args.model}, batch {args.batch_size}, device {teachers.resolved_device()}, "
          f"best of {args.repeats}")
    print(f"{'path':<28} {'seconds':>8} {'items/s':>8}")
    print(f"{'bare SentenceTransformer':<28} {b:>8.1f} {len(texts) / b:>8.1f}")
    print(f"{'pipeline teacher_embeddings':<28} {o:>8.1f} {len(texts) / o:>8.1f}")
    print(f"throughput ratio pipeline/bare: {b / o:.3f} (goal >= 0.97)")


if __name__ == "__main__":
    main()
