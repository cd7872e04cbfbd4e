"""Teacher-embedding path vs bare `SentenceTransformer.encode` on the same texts, model and batch size.

    .venv/bin/python benchmarks/embedding_throughput.py --data ../shared/data/scifact --docs 1000
    .venv/bin/python benchmarks/embedding_throughput.py --docs 0 --backends torch onnx-int8 --quality

Both sides encode the same documents (title + text, as the pipeline does) with the same model and batch size;
ours also loads the model, fingerprints the weights, plans the update, counts truncated texts, writes every
chunk to LanceDB and records hashes. Runs alternate (bare, ours[torch], ours[onnx-int8], bare, ...) so machine
noise hits every side; the table reports the best of `--repeats` per side, the ratio to bare torch encode
(goal >= 0.97 for the torch backend: the pipeline adds no overhead; > 1 for a faster backend) and where our
time went. `--quality` also scores each backend's model on the SciFact test split through mteb (nDCG@10 must
stay within 0.3 points of torch's).
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

from resources import ModelsResource, StorageResource, TeacherConfig  # noqa: E402
from retriever_assets import steps  # noqa: E402
from retriever_assets.core.corpus import document_text, load_beir_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/scifact")
    parser.add_argument("--docs", type=int, default=1000, help="first N documents (0 = all)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx-int8"],
                        choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--quality", action="store_true", help="score each backend on the test split (mteb)")
    args = parser.parse_args()

    data = load_beir_folder(args.data, splits=("train", "test"))
    corpus = data.corpus.head(args.docs) if args.docs else data.corpus
    texts = [document_text(t, x) for t, x in corpus.select("title", "text").iter_rows()]
    configs = {b: TeacherConfig(name="dense", model=args.model, backend=b) for b in args.backends}
    cache = tempfile.mkdtemp(prefix="onnx-cache-")
    teachers = {b: ModelsResource(teachers=[c], model_cache_dir=cache) for b, c in configs.items()}
    bare_model, _ = teachers[args.backends[0]].load(TeacherConfig(name="dense", model=args.model).spec())
    bare_model.encode(texts[:64], batch_size=args.batch_size)  # warm-up
    for b, t in teachers.items():  # one load per backend first: ONNX export/quantization happens once, untimed
        t.load(configs[b].spec())

    items = pl.DataFrame({"item_id": [f"d:{d}" for d in corpus["doc_id"]], "role": ["document"] * corpus.height,
                          "content_hash": corpus["content_hash"], "title": [""] * corpus.height, "text": texts})
    bare: list[float] = []
    ours: dict[str, list[tuple[float, dict]]] = {b: [] for b in args.backends}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        bare_model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                          show_progress_bar=False)
        bare.append(time.perf_counter() - t0)
        for backend in args.backends:
            tmp = tempfile.mkdtemp()
            try:
                t0 = time.perf_counter()
                row = steps.embed_dense_teacher(StorageResource(root=tmp), teachers[backend], "bench",
                                                configs[backend].spec(), items, batch_size=args.batch_size,
                                                chunk_size=1024, log=lambda m: None)
                ours[backend].append((time.perf_counter() - t0, row["phase_seconds"]))
                assert row["embedded"] == len(texts)
            finally:
                shutil.rmtree(tmp)
    b = min(bare)
    print(f"\n{len(texts)} documents, model {args.model}, batch {args.batch_size}, CPU threads "
          f"{os.environ.get('OMP_NUM_THREADS', 'default')}, best of {args.repeats}, sides alternating")
    print(f"{'path':<36} {'seconds':>8} {'items/s':>8} {'vs bare':>8}")
    print(f"{'bare SentenceTransformer.encode':<36} {b:>8.1f} {len(texts) / b:>8.1f} {1.0:>8.3f}")
    for backend, runs in ours.items():
        seconds, phases = min(runs, key=lambda r: r[0])
        print(f"{'pipeline teacher_embeddings [' + backend + ']':<36} {seconds:>8.1f} {len(texts) / seconds:>8.1f} "
              f"{b / seconds:>8.3f}")
        print("    " + ", ".join(f"{k} {v:.2f}s" for k, v in phases.items()))
    if "torch" in ours:
        print(f"throughput ratio pipeline[torch]/bare: {b / min(s for s, _ in ours['torch']):.3f} (goal >= 0.97)")
    if args.quality:
        quality(args, data, teachers, configs)
    shutil.rmtree(cache, ignore_errors=True)


def quality(args, data, teachers, configs) -> None:
    from retriever_assets.core.evaluation import evaluate_retrieval

    print(f"\nquality on {Path(args.data).name} test (mteb, whole corpus, max_seq_length 256)")
    print(f"{'backend':<12} {'nDCG@10':>8} {'R@100':>8} {'seconds':>8}")
    first = None
    for backend, config in configs.items():
        model, _ = teachers[backend].load(config.spec())
        out = Path(tempfile.mkdtemp())
        t0 = time.perf_counter()
        m = evaluate_retrieval(model, corpus=data.corpus, queries=data.queries, qrels=data.qrels, split="test",
                               dataset=Path(args.data).name, model_name=f"bench/{backend}", revision=backend,
                               output_dir=out, batch_size=args.batch_size)
        shutil.rmtree(out, ignore_errors=True)
        first = first if first is not None else m["ndcg_at_10"]
        delta = 100 * (m["ndcg_at_10"] - first)
        verdict = "within 0.3 points" if abs(delta) <= 0.3 else "MISSED: more than 0.3 points"
        print(f"{backend:<12} {m['ndcg_at_10']:>8.4f} {m['recall_at_100']:>8.4f} {time.perf_counter() - t0:>8.1f}"
              f"   delta nDCG@10 vs {args.backends[0]}: {delta:+.2f} points ({verdict})")


if __name__ == "__main__":
    main()
