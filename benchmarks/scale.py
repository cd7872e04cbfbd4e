"""Exact search at scale vs the machine's matrix-multiply floor, the mining step at 10k queries, and a LanceDB ANN path.

    .venv/bin/python benchmarks/scale.py                                   # default grid (see below)
    .venv/bin/python benchmarks/scale.py --corpus 100000 --queries 1000     # quick smoke run
    .venv/bin/python benchmarks/scale.py --corpus 100000,1000000,2000000 --queries 1000,10000,100000

Data: synthetic clustered vectors, 384-d float32, L2-normalised: `--clusters` Gaussian clusters (unit-norm centres
plus N(0, noise^2) per dimension), generated in blocks of 65,536 rows from seeded generators, so a 100k corpus
is the first 100k rows of the 1M one and every process regenerates identical data without holding extra copies.
Queries come from the same clusters (another seed).

1. Grid: for each corpus size x query count, `core.search.exact_top_k(k=30)` with the pipeline's default chunks
   (query_chunk 4096, doc_chunk 65536) -> queries/s. The floor is a plain `qc @ dc.T` over the same chunk loop
   without top-k (same shapes, same FLOPs), run right after ours in the same process; for big cells it stops after
   `--floor-seconds` and is extrapolated from the FLOP rate of the blocks it ran (shown as the share of blocks).
   Peak RSS: absolute (includes the corpus: 1M x 384 float32 = 1.5 GB) and growth during our search, polled every
   10 ms; one process per corpus size.
2. Mining step: `core.candidates.dense_candidates(k=30)` end to end (search + candidate/positive frames) with one
   synthetic positive per query (a random document of the query's cluster), then `core.mining.mine_hard_negatives`
   (PercPos 95%, 4 negatives, top), at `--mine-docs` x `--mine-queries`; the search part is timed by wrapping the
   `exact_top_k` that `core.candidates` calls, so frames = total - search.
3. ANN: a LanceDB table of the `--ann-docs` corpus (written in blocks), an IVF_RQ (default) or IVF_PQ index with
   metric cosine, then batched searches (one `table.search(<matrix of --ann-batch queries>)` call per chunk) for each
   `--ann-settings` nprobes:refine_factor pair; recall@30 against the exact top-30 of the grid cell with the same
   corpus and query count (run that cell, or the ANN part reports throughput without recall).

Default (about 10 minutes on 2 busy cores): cells 100k x 1k, 100k x 10k and 1M x 10k (growth with query count at
100k, with corpus size at 10k queries); mining at 100k x 10k; ANN IVF_RQ (4 bits) on 1M with the same 10k queries,
nprobes:refine 20:0, 20:5 (LanceDB's refine), 20:5m (the pipeline's default: 150 candidates from the index, exact
cosines computed in memory) and 50:5m. The 1M x 10k cell dominates (7.7 TFLOP: about
4-6 minutes when the cores are shared).
`--corpus 100000,1000000 --queries 1000,10000` runs the full cross product instead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402

DIM = 384
GEN_BLOCK = 65536
GIB = 2**30


# ----------------------------------------------------------------------------------------------- data


def centres(args) -> np.ndarray:
    c = np.random.default_rng([args.seed, 0]).standard_normal((args.clusters, DIM), dtype=np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def gen_block(args, c: np.ndarray, kind: int, b: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Block `b` of stream `kind` (1 = corpus, 2 = queries): (vectors, cluster labels)."""
    rng = np.random.default_rng([args.seed, kind, b])
    labels = rng.integers(0, len(c), size=rows)
    x = rng.standard_normal((rows, DIM), dtype=np.float32)
    x *= np.float32(args.noise)
    x += c[labels]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def generate(args, kind: int, n: int, with_labels: bool = False):
    c = centres(args)
    out = np.empty((n, DIM), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    for b, r0 in enumerate(range(0, n, GEN_BLOCK)):
        rows = min(GEN_BLOCK, n - r0)
        out[r0 : r0 + rows], labels[r0 : r0 + rows] = gen_block(args, c, kind, b, rows)
    return (out, labels) if with_labels else out


# ----------------------------------------------------------------------------------------------- measuring


class PeakRSS:
    def __init__(self, interval: float = 0.01):
        import psutil

        self.proc, self.interval = psutil.Process(), interval
        self._stop = threading.Event()

    def __enter__(self):
        self.start = self.peak = self.proc.memory_info().rss
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        return False


def maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def floor_matmul(q: np.ndarray, d: np.ndarray, query_chunk: int, doc_chunk: int, budget: float) -> dict:
    """Plain `qc @ dc.T` over exact_top_k's chunk loop, no top-k; stops after `budget` s and extrapolates."""
    import torch

    qt, dt = torch.as_tensor(q), torch.as_tensor(d)
    blocks = [(q0, d0) for q0 in range(0, len(q), query_chunk) for d0 in range(0, len(d), doc_chunk)]
    total_flops = 2.0 * len(q) * len(d) * DIM
    done_flops, elapsed, ran = 0.0, 0.0, 0
    with torch.inference_mode():
        for q0, d0 in blocks:
            qc, dc = qt[q0 : q0 + query_chunk], dt[d0 : d0 + doc_chunk]
            t0 = time.perf_counter()
            sims = qc @ dc.T
            elapsed += time.perf_counter() - t0
            del sims
            done_flops += 2.0 * qc.shape[0] * dc.shape[0] * DIM
            ran += 1
            if elapsed > budget:
                break
    rate = done_flops / elapsed
    return {"seconds": total_flops / rate, "gflops": rate / 1e9, "measured_share": ran / len(blocks),
            "measured_seconds": elapsed}


# ----------------------------------------------------------------------------------------------- tasks


def task_exact(args, n_docs: int, work: Path) -> dict:
    import torch

    from retriever_assets.core.search import exact_top_k

    counts = sorted(q for d, q in args.grid if d == n_docs)
    t0 = time.perf_counter()
    docs = generate(args, 1, n_docs)
    queries = generate(args, 2, max(counts))
    gen_s = time.perf_counter() - t0
    exact_top_k(queries[:64], docs[:GEN_BLOCK], args.k)  # thread pool and allocator warm-up
    cells = []
    for n_q in counts:
        q = queries[:n_q]
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            _, idx = exact_top_k(q, docs, args.k, query_chunk=args.query_chunk, doc_chunk=args.doc_chunk)
            ours = time.perf_counter() - t0
        floor = floor_matmul(q, docs, args.query_chunk, args.doc_chunk, args.floor_seconds)
        flops = 2.0 * n_q * n_docs * DIM
        cells.append({"docs": n_docs, "queries": n_q, "ours": ours, "ours_qps": n_q / ours,
                      "ours_gflops": flops / ours / 1e9, "floor": floor, "rss_start": mem.start,
                      "rss_peak": mem.peak, "rss_growth": mem.peak - mem.start})
        if n_docs == args.ann_docs and n_q == args.ann_queries:
            np.save(work / f"exact_{n_docs}_{n_q}.npy", idx)
        print(f"    {n_docs:>9,} docs x {n_q:>7,} queries: ours {ours:7.1f} s ({n_q / ours:8.1f} q/s), floor "
              f"{floor['seconds']:7.1f} s ({floor['gflops']:.1f} GFLOP/s, {floor['measured_share']:.0%} of blocks), "
              f"peak RSS {mem.peak / GIB:.2f} GiB", flush=True)
    return {"gen_seconds": gen_s, "cells": cells, "maxrss": maxrss(), "torch_threads": torch.get_num_threads()}


def task_mine(args, work: Path) -> dict:
    import polars as pl

    import retriever_assets.core.candidates as candidates
    from retriever_assets.core.mining import MiningRecipe, mine_hard_negatives

    docs, d_lab = generate(args, 1, args.mine_docs, with_labels=True)
    queries, q_lab = generate(args, 2, args.mine_queries, with_labels=True)
    rng = np.random.default_rng([args.seed, 3])
    order = np.argsort(d_lab, kind="stable")
    starts = np.searchsorted(d_lab[order], np.arange(args.clusters))
    ends = np.searchsorted(d_lab[order], np.arange(args.clusters), side="right")
    pos_doc = np.array([order[rng.integers(starts[c], ends[c])] if ends[c] > starts[c] else rng.integers(len(docs))
                        for c in q_lab])
    doc_ids = [f"d{i}" for i in range(len(docs))]
    query_ids = [f"q{i}" for i in range(len(queries))]
    positives = pl.DataFrame({"query_id": query_ids, "doc_id": [doc_ids[i] for i in pos_doc]})

    search_time = {"s": 0.0}
    original = candidates.exact_top_k

    def timed(*a, **kw):
        t0 = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            search_time["s"] += time.perf_counter() - t0

    candidates.exact_top_k = timed  # this process only
    recipe = MiningRecipe(teachers=("t",), method="percpos", param=0.95, num_negatives=4, sampling="top")
    original(queries[:64], docs[:GEN_BLOCK], args.k)  # warm-up
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        cands, pos_scores = candidates.dense_candidates("t", query_ids, queries, doc_ids, docs, positives, k=args.k,
                                                        query_chunk=args.query_chunk, doc_chunk=args.doc_chunk)
        t1 = time.perf_counter()
        result = mine_hard_negatives(cands, pos_scores, recipe, query_ids=query_ids)
        t2 = time.perf_counter()
    return {"docs": len(docs), "queries": len(queries), "dense_candidates": t1 - t0, "search": search_time["s"],
            "frames": t1 - t0 - search_time["s"], "mining": t2 - t1, "candidates": cands.height,
            "negatives": result.negatives.height, "rss_start": mem.start, "rss_peak": mem.peak}


def task_ann(args, work: Path) -> dict:
    import lancedb
    import pyarrow as pa
    from lancedb.index import IvfPq, IvfRq

    c = centres(args)
    n = args.ann_docs
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float32(), DIM))])

    gen_time = {"s": 0.0}

    def batches():
        for b, r0 in enumerate(range(0, n, GEN_BLOCK)):
            rows = min(GEN_BLOCK, n - r0)
            g0 = time.perf_counter()
            x, _ = gen_block(args, c, 1, b, rows)
            gen_time["s"] += time.perf_counter() - g0
            vec = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM)
            yield pa.record_batch([pa.array(np.arange(r0, r0 + rows, dtype=np.int64)), vec], schema=schema)

    db_dir = tempfile.mkdtemp(prefix="lance_", dir=work)
    db = lancedb.connect(db_dir)
    with PeakRSS() as mem_build:
        b0 = time.perf_counter()
        table = db.create_table("vectors", data=pa.RecordBatchReader.from_batches(schema, batches()))
        b1 = time.perf_counter()
        if args.ann_index == "ivf_pq":
            config = IvfPq(distance_type="cosine", num_sub_vectors=args.pq_sub_vectors,
                           num_partitions=args.partitions)
        else:
            config = IvfRq(distance_type="cosine", num_bits=args.rq_bits, num_partitions=args.partitions)
        table.create_index("vector", config=config)
        b2 = time.perf_counter()
    gen_s = gen_time["s"]  # generation runs inside create_table (streamed); reported apart from the write
    index = table.list_indices()[0]
    queries = generate(args, 2, args.ann_queries)
    exact_file = work / f"exact_{n}_{args.ann_queries}.npy"
    exact = np.load(exact_file) if exact_file.exists() else None
    from retriever_assets.core.search import hits_by_query, rescore_top_k

    in_memory = any(s.endswith("m") for s in args.ann_settings)
    corpus = generate(args, 1, n) if in_memory else None  # the pipeline holds the corpus vectors in memory
    runs = []
    for setting in args.ann_settings:
        local = setting.endswith("m")  # refine with exact cosines in memory (core.search.rescore_top_k)
        nprobes, refine = (int(v) for v in setting.rstrip("m").split(":"))
        fetch = args.k * refine if local and refine else args.k
        found = np.full((len(queries), fetch), -1, dtype=np.int64)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            for q0 in range(0, len(queries), args.ann_batch):
                qb = queries[q0 : q0 + args.ann_batch]
                query = table.search(list(qb)).distance_type("cosine").limit(fetch).select(["id", "_distance"])
                if nprobes:
                    query = query.nprobes(nprobes)
                if refine and not local:
                    query = query.refine_factor(refine)
                res = query.to_arrow()
                _, found[q0 : q0 + len(qb)] = hits_by_query(res["query_index"].to_numpy(), res["_distance"].to_numpy(),
                                                            res["id"].to_numpy(), len(qb), fetch, -1)
            if local and refine:
                _, found = rescore_top_k(queries, corpus, found, args.k)
            elapsed = time.perf_counter() - t0
        recall = None
        if exact is not None:
            hits = sum(len(set(found[i][found[i] >= 0]) & set(exact[i])) for i in range(len(queries)))
            recall = hits / exact.size
        runs.append({"nprobes": nprobes, "refine_factor": refine, "refine_in_memory": local, "seconds": elapsed,
                     "qps": len(queries) / elapsed,
                     "recall": recall, "rss_peak": mem.peak})
        where = " in memory" if local else ""
        print(f"    ANN nprobes={nprobes or 'default'} refine={refine or 'none'}{where}: "
              f"{len(queries) / elapsed:8.1f} q/s, "
              f"recall@{args.k} " + (f"{recall:.4f}" if recall is not None else "n/a"), flush=True)
    size = sum(f.stat().st_size for f in Path(db_dir).rglob("*") if f.is_file())
    return {"docs": n, "queries": len(queries), "write": b1 - b0 - gen_s, "write_incl_gen": b1 - b0, "gen": gen_s,
            "index": b2 - b1, "index_type": index.index_type, "runs": runs, "disk_bytes": size,
            "build_rss_peak": mem_build.peak, "maxrss": maxrss(), "recall_available": exact is not None}


# ----------------------------------------------------------------------------------------------- driver


def ints(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v]


def cells(text: str) -> list[tuple[int, int]]:
    return [tuple(int(float(v)) for v in cell.split("x")) for cell in text.split(",") if cell]


def spawn(task: str, args, extra: list[str]) -> dict:
    out = Path(args.work) / f"{task}.{time.monotonic_ns()}.json"
    cmd = [sys.executable, __file__, "--child", task, "--child-out", str(out), "--work", args.work, *args.raw, *extra]
    proc = subprocess.run(cmd, text=True, stdout=None, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-6000:])
        raise SystemExit(f"child {task} failed (exit {proc.returncode})")
    return json.loads(out.read_text())


def machine() -> str:
    import torch

    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs ({model}), torch {torch.__version__} with {torch.get_num_threads()} threads, "
            f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", type=cells, default=cells("100000x1000,100000x10000,1000000x10000"),
                   help="DOCSxQUERIES cells, comma separated (default: %(default)s)")
    p.add_argument("--corpus", type=ints, help="corpus sizes: with --queries, replaces --grid by their cross product")
    p.add_argument("--queries", type=ints, help="query counts (<= 100,000), crossed with --corpus")
    p.add_argument("--k", type=int, default=30)
    p.add_argument("--query-chunk", type=int, default=4096)
    p.add_argument("--doc-chunk", type=int, default=65536)
    p.add_argument("--floor-seconds", type=float, default=30.0, help="time budget of the matmul floor per cell")
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--noise", type=float, default=0.06, help="per-dimension std of a point around its centre")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mine-docs", type=int, default=100_000, help="0 = skip the mining step")
    p.add_argument("--mine-queries", type=int, default=10_000)
    p.add_argument("--ann-docs", type=int, default=None, help="default: largest --corpus; 0 = skip ANN")
    p.add_argument("--ann-queries", type=int, default=None, help="default: largest --queries")
    p.add_argument("--ann-index", choices=["ivf_rq", "ivf_pq"], default="ivf_rq")
    p.add_argument("--rq-bits", type=int, default=4, help="IVF_RQ bits per dimension (1 = plain RaBitQ)")
    p.add_argument("--partitions", type=int, default=None, help="IVF partitions (default: LanceDB's choice)")
    p.add_argument("--pq-sub-vectors", type=int, default=48)
    p.add_argument("--ann-settings", type=lambda s: s.split(","), default=["20:0", "20:5", "20:5m", "50:5m"],
                   help="nprobes:refine_factor pairs (0 = LanceDB default / no refine); a trailing m refines with "
                        "exact cosines in memory (the pipeline's way) instead of LanceDB's refine")
    p.add_argument("--ann-batch", type=int, default=1000, help="queries per LanceDB search call")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--n-docs", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.corpus or args.queries:
        args.grid = [(d, q) for d in (args.corpus or sorted({d for d, _ in args.grid}))
                     for q in (args.queries or sorted({q for _, q in args.grid}))]
    args.grid = sorted(set(args.grid))
    if max(q for _, q in args.grid) > 100_000:
        p.error("at most 100,000 queries per cell")
    if args.ann_docs is None:
        args.ann_docs = max(d for d, _ in args.grid)
    if args.ann_queries is None:
        args.ann_queries = max((q for d, q in args.grid if d == args.ann_docs), default=10_000)

    if args.child:
        work = Path(args.work)
        if args.child == "exact":
            res = task_exact(args, args.n_docs, work)
        elif args.child == "mine":
            res = task_mine(args, work)
        else:
            res = task_ann(args, work)
        Path(args.child_out).write_text(json.dumps(res))
        return

    args.raw = [a for a in sys.argv[1:] if a != "--keep"]
    args.work = tempfile.mkdtemp(prefix="scale_bench_")
    t_start = time.perf_counter()
    print(f"machine: {machine()}", flush=True)
    try:
        grid, mine, ann = [], None, None
        for n_docs in sorted({d for d, _ in args.grid}):
            print(f"  exact grid, corpus {n_docs:,} (fresh process)", flush=True)
            res = spawn("exact", args, ["--n-docs", str(n_docs)])
            grid += [c | {"maxrss": res["maxrss"], "gen_seconds": res["gen_seconds"]} for c in res["cells"]]
        if args.mine_docs:
            print(f"  mining step, {args.mine_docs:,} docs x {args.mine_queries:,} queries (fresh process)", flush=True)
            mine = spawn("mine", args, [])
        if args.ann_docs:
            print(f"  LanceDB {args.ann_index}, {args.ann_docs:,} docs (fresh process)", flush=True)
            ann = spawn("ann", args, [])
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)

    print()
    print(f"# scale: {DIM}-d float32, {args.clusters} clusters (noise {args.noise}), k={args.k}, query_chunk "
          f"{args.query_chunk}, doc_chunk {args.doc_chunk}; whole run {time.perf_counter() - t_start:.0f} s")
    print(f"# machine: {machine()}")
    print()
    print("| docs | queries | ours s | ours q/s | ours GFLOP/s | floor s | floor GFLOP/s (blocks measured) | "
          "ours/floor (goal <= 1.5) | peak RSS GiB (growth) | ns per query-doc |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in grid:
        f = c["floor"]
        ns_pair = c["ours"] / (c["docs"] * c["queries"]) * 1e9
        print(f"| {c['docs']:,} | {c['queries']:,} | {c['ours']:.1f} | {c['ours_qps']:,.0f} | {c['ours_gflops']:.1f} | "
              f"{f['seconds']:.1f} | {f['gflops']:.1f} ({f['measured_share']:.0%}) | {c['ours'] / f['seconds']:.2f} | "
              f"{c['rss_peak'] / GIB:.2f} ({c['rss_growth'] / GIB:.2f}) | {ns_pair:.3f} |")
    if len(grid) > 1:
        base = min(grid, key=lambda c: c["docs"] * c["queries"])
        print()
        print("growth (time relative to the smallest cell, vs work relative to it):")
        for c in grid:
            print(f"  {c['docs']:>9,} x {c['queries']:>7,}: time x{c['ours'] / base['ours']:7.1f}, "
                  f"work x{c['docs'] * c['queries'] / (base['docs'] * base['queries']):7.1f}")
    big = [c for c in grid if c["docs"] >= 1_000_000]
    if big:
        worst = max(big, key=lambda c: c["rss_peak"])
        print(f"peak RSS at {worst['docs']:,} docs: {worst['rss_peak'] / GIB:.2f} GiB (goal <= 4 GiB; the corpus alone "
              f"is {worst['docs'] * DIM * 4 / GIB:.2f} GiB); process ru_maxrss {worst['maxrss'] / GIB:.2f} GiB")
    if mine:
        print()
        print(f"| mining step ({mine['docs']:,} docs x {mine['queries']:,} queries) | seconds |")
        print("|---|---:|")
        print(f"| dense_candidates total | {mine['dense_candidates']:.2f} |")
        print(f"| - of which exact_top_k (k+1) | {mine['search']:.2f} |")
        print(f"| - of which positive index + frames | {mine['frames']:.2f} |")
        print(f"| mine_hard_negatives (PercPos 95%, 4, top) | {mine['mining']:.2f} |")
        print(f"| candidates / negatives | {mine['candidates']:,} / {mine['negatives']:,} |")
        print(f"| peak RSS GiB | {mine['rss_peak'] / GIB:.2f} |")
    if ann:
        exact_cell = next((c for c in grid if c["docs"] == ann["docs"] and c["queries"] == ann["queries"]), None)
        print()
        detail = f"{args.rq_bits} bits" if args.ann_index == "ivf_rq" else f"{args.pq_sub_vectors} sub-vectors"
        print(f"LanceDB {ann['index_type']} ({detail}, {args.partitions or 'default'} partitions, cosine) on "
              f"{ann['docs']:,} docs: write {ann['write']:.1f} s (+ {ann['gen']:.1f} s "
              f"generating), index build {ann['index']:.1f} s, {ann['disk_bytes'] / GIB:.2f} GiB on disk, build "
              f"peak RSS {ann['build_rss_peak'] / GIB:.2f} GiB")
        print(f"| search | q/s | speed-up vs exact | recall@{args.k} |")
        print("|---|---:|---:|---:|")
        if exact_cell:
            print(f"| exact_top_k (torch) | {exact_cell['ours_qps']:,.0f} | 1.0 | 1.0000 |")
        for r in ann["runs"]:
            speed = f"{r['qps'] / exact_cell['ours_qps']:.1f}" if exact_cell else "n/a"
            rec = f"{r['recall']:.4f}" if r["recall"] is not None else "n/a"
            print(f"| ANN nprobes={r['nprobes'] or 'default'}, refine={r['refine_factor'] or 'none'}"
                  f"{' in memory' if r.get('refine_in_memory') else ''}, "
                  f"{args.ann_batch} queries per call | {r['qps']:,.0f} | {speed} | {rec} |")


if __name__ == "__main__":
    main()
