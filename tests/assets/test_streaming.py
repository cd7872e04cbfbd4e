"""A few thousand documents streamed through qa_corpus -> hard_negatives with tiny batches: every stage works batch
by batch and the batching changes nothing (no timing, no memory assertion: the benchmark measures those)."""

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from chain import all_assets, materializations

from resources import ComputeResource, DataRootResource, ModelsResource, StorageResource, TeacherConfig
from resources.artifacts import DatasetArtifacts
from retriever_assets.partitions import dataset_partitions

DATASET = "stream"
DOCS, TRAIN_Q, TEST_Q, LONG_DOCS = 3000, 240, 40, 7
CHUNK = 256  # items per LanceDB commit and documents per BM25 batch


def write_synthetic_beir(folder: Path, *, docs: int, train: int, test: int, long_docs: int, seed: int = 0) -> None:
    """Documents of ~30 words from a Zipf vocabulary (the first `long_docs` are ~300 words: past a 128-token
    truncation), queries of 6 words drawn from their one positive document."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(4000)])
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    p /= p.sum()
    texts = [" ".join(vocab[rng.choice(len(vocab), 300 if i < long_docs else 30, p=p)]) for i in range(docs)]
    folder.mkdir(parents=True)
    (folder / "qrels").mkdir()
    with (folder / "corpus.jsonl").open("w") as fh:
        fh.writelines(json.dumps({"_id": f"d{i:05d}", "title": "", "text": t}) + "\n" for i, t in enumerate(texts))
    positives = rng.choice(docs, train + test, replace=False)
    with (folder / "queries.jsonl").open("w") as fh:
        for q, d in enumerate(positives):
            words = texts[d].split()
            fh.write(json.dumps({"_id": f"q{q:04d}", "text": " ".join(rng.choice(words, 6))}) + "\n")
    for split, rows in (("train", range(train)), ("test", range(train, train + test))):
        lines = ["query-id\tcorpus-id\tscore"] + [f"q{q:04d}\td{positives[q]:05d}\t1" for q in rows]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def streamed(tmp_path_factory, static_encoder):
    root = tmp_path_factory.mktemp("stream_root")
    write_synthetic_beir(root / DATASET, docs=DOCS, train=TRAIN_Q, test=TEST_Q, long_docs=LONG_DOCS)
    storage = tmp_path_factory.mktemp("stream_storage")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, [DATASET])
    resources = {
        "data_root": DataRootResource(path=str(root)),
        "storage": StorageResource(root=str(storage)),
        "compute": ComputeResource(),
        "models": ModelsResource(teachers=[TeacherConfig(name="static", model=str(static_encoder)),
                                           TeacherConfig(name="bm25", kind="bm25")], device="cpu"),
    }
    config = {"ops": {
        "teacher_embeddings": {"config": {"batch_size": 32, "chunk_size": CHUNK}},
        "candidate_lists": {"config": {"top_k": 10, "query_chunk": 32, "doc_chunk": 256, "search": "exact"}},
        "hard_negatives": {"config": {"teachers": ["static", "bm25"], "ensemble": "intra", "method": "naive"}},
    }}
    result = dg.materialize(all_assets(), partition_key=DATASET, instance=instance, resources=resources,
                            run_config=config,
                            selection=["qa_corpus", "teacher_embeddings", "candidate_lists", "hard_negatives"])
    assert result.success
    return result, instance, resources, storage, root


def _logs(instance, result) -> list[str]:
    return [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]


def test_every_heavy_step_reports_peak_memory_and_phases(streamed):
    result = streamed[0]
    for key in ("qa_corpus", "teacher_embeddings", "candidate_lists", "hard_negatives"):
        meta = materializations(result, key)[0].metadata
        assert meta["peak_rss_mib"].value > 0 and meta["rss_after_mib"].value > 0, key
    for key in ("teacher_embeddings", "candidate_lists", "hard_negatives"):
        assert "phase_seconds" in materializations(result, key)[0].metadata, key
    phases = materializations(result, "teacher_embeddings")[0].metadata["phase_seconds"].value
    assert {"plan", "encode_and_write"} <= set(phases["static"]) and "tokenize_and_index" in phases["bm25"]


def test_a_static_embedding_teacher_embeds_in_chunks_and_counts_truncation(streamed):
    result = streamed[0]
    meta = materializations(result, "teacher_embeddings")[0].metadata
    rows = {r.data["teacher"]: r.data for r in meta["teachers"].value.records}
    assert rows["static"]["embedded"] == DOCS + TRAIN_Q
    # the MiniLM tokenizer.json truncates at 128 tokens: only the long documents are cut
    assert rows["static"]["truncated_items"] == LONG_DOCS
    # one commit per chunk of each role (+ the compaction), not one for everything
    assert meta["lancedb_table_versions"].value["static"] >= -(-DOCS // CHUNK) + -(-TRAIN_Q // CHUNK)
    assert rows["bm25"]["tokenized"] == DOCS and rows["bm25"]["terms_reused"] == 0


def test_progress_is_logged_a_bounded_number_of_times_with_rate_and_eta(streamed):
    result, instance = streamed[:2]
    logs = _logs(instance, result)
    for what in ("static: embedded", "bm25: indexed", "static: searched", "bm25: searched"):
        lines = [m for m in logs if m.startswith(what)]
        assert 1 <= len(lines) <= 13, (what, lines)
        assert all("/s" in m and "ETA" in m for m in lines), lines
    assert any(m.startswith("bm25: indexed 3,000/3,000 documents") for m in logs)


def test_candidates_do_not_depend_on_the_search_blocks(streamed):
    result, instance, resources, storage, _ = streamed
    folder = storage / DATASET / "candidates"
    small = pl.read_parquet(folder / "candidates.parquet")
    shutil.rmtree(folder / "windows")  # else nothing changed and the search would merge into its own windows
    config = {"ops": {"candidate_lists": {"config": {"top_k": 10, "query_chunk": 4096, "doc_chunk": 65536,
                                                     "search": "exact"}}}}
    again = dg.materialize(all_assets(), partition_key=DATASET, instance=instance, resources=resources,
                           run_config=config, selection=["candidate_lists"])
    assert again.success
    assert pl.read_parquet(folder / "candidates.parquet").equals(small)


def test_vectors_read_in_small_batches_equal_one_read(streamed):
    storage = streamed[3]
    store = StorageResource(root=str(storage)).embedding_store(DATASET, "static")
    ids = [f"d{i:05d}" for i in reversed(range(DOCS))]  # any order, not the table's
    np.testing.assert_array_equal(store.vectors("document", ids, batch_rows=97), store.vectors("document", ids))
    with pytest.raises(KeyError):
        store.vectors("document", ["d00001", "nope"])
    assert store.stored_index().columns == ["item_id", "role", "content_hash", "cache_key"]


def test_bm25_index_built_in_batches_is_the_index_bm25s_builds(streamed):
    import bm25s

    storage = streamed[3]
    artifacts = DatasetArtifacts(StorageResource(root=str(storage)), DATASET)
    saved = bm25s.BM25.load(str(artifacts.bm25_dir("bm25")), allow_pickle=False)
    texts = pl.read_parquet(artifacts.corpus_dir / "corpus.parquet")["text"].to_list()
    whole = bm25s.BM25(k1=1.5, b=0.75)
    whole.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    assert saved.vocab_dict == whole.vocab_dict
    for part in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(np.asarray(saved.scores[part]), np.asarray(whole.scores[part]))


def test_exports_written_in_batches_match_one_batch(streamed, tmp_path):
    from datasets import load_from_disk

    from retriever_assets.core.export import (
        TRIPLET_SCHEMA,
        ntuple_batches,
        ntuple_schema,
        save_dataset,
        triplet_batches,
        write_flag_jsonl,
    )

    result, storage = streamed[0], streamed[3]
    folder = storage / DATASET / "negatives" / "percpos-0.95"
    negatives = pl.read_parquet(folder / "negatives.parquet")
    qrels = pl.read_parquet(storage / DATASET / "corpus" / "qrels.parquet")
    positives = qrels.filter(pl.col("split") == "train").select("query_id", "doc_id")
    corpus = pl.read_parquet(storage / DATASET / "corpus" / "corpus.parquet")
    queries = pl.read_parquet(storage / DATASET / "corpus" / "queries.parquet")
    q_text = dict(queries.select("query_id", "text").iter_rows())
    d_text = dict(corpus.select("doc_id", "text").iter_rows())
    for batch in (7, 100_000):
        n = save_dataset(ntuple_batches(negatives, positives, q_text, d_text, 4, batch_queries=batch),
                         ntuple_schema(4), tmp_path / f"ntuple{batch}")
        t = save_dataset(triplet_batches(negatives, positives, q_text, d_text, batch_queries=batch), TRIPLET_SCHEMA,
                         tmp_path / f"triplet{batch}")
        lines = write_flag_jsonl(tmp_path / f"flag{batch}.jsonl", negatives, positives, q_text, d_text,
                                 batch_queries=batch)
        assert (n, t, lines) == (len(load_from_disk(str(folder / "ntuple"))), len(load_from_disk(
            str(folder / "triplet"))), TRAIN_Q)
    for name in ("ntuple", "triplet"):
        assert load_from_disk(str(tmp_path / f"{name}7")).to_dict() == load_from_disk(
            str(tmp_path / f"{name}100000")).to_dict() == load_from_disk(str(folder / name)).to_dict()
    assert (tmp_path / "flag7.jsonl").read_text() == (tmp_path / "flag100000.jsonl").read_text() == (
        folder / "flag_embedding.jsonl").read_text()
    meta = materializations(result, "hard_negatives")[0].metadata
    assert meta["ntuple_rows"].value == n and meta["triplet_rows"].value == t
    # every (query, positive, negative) of the mined set is one triplet; n-tuples only for full sets
    assert t == negatives.height and n == (negatives.group_by("query_id").len()["len"] == 4).sum()


def _edit_documents(root: Path, rows, edit) -> list[int]:
    """Replace the text of the corpus's documents at `rows` by `edit(text)`; returns the rows edited."""
    corpus = root / DATASET / "corpus.jsonl"
    lines = corpus.read_text().splitlines()
    for i in rows:
        record = json.loads(lines[i])
        record["text"] = edit(record["text"])
        lines[i] = json.dumps(record)
    corpus.write_text("\n".join(lines) + "\n")
    return list(rows)


def test_editing_one_percent_of_documents_re_embeds_only_those(streamed):
    result, instance, resources, storage, root = streamed
    edited = _edit_documents(root, range(0, DOCS, 100), lambda text: text + " edited")
    before = StorageResource(root=str(storage)).embedding_store(DATASET, "static").version()
    again = dg.materialize(all_assets(), partition_key=DATASET, instance=instance, resources=resources,
                           run_config={"ops": {"teacher_embeddings": {"config": {"chunk_size": CHUNK}}}},
                           selection=["qa_corpus", "teacher_embeddings"])
    assert again.success
    rows = {r.data["teacher"]: r.data for r in
            materializations(again, "teacher_embeddings")[0].metadata["teachers"].value.records}
    assert rows["static"]["embedded"] == len(edited) and rows["static"]["unchanged"] == DOCS + TRAIN_Q - len(edited)
    # the edited documents replace their old vectors in one merge per chunk: no row is added twice
    store = StorageResource(root=str(storage)).embedding_store(DATASET, "static")
    assert store.version() - before <= 2 and store.stored_index()["item_id"].is_unique().all()
    assert store.stored_index().height == DOCS + TRAIN_Q
    # BM25: only the edited documents are tokenized again; the index scores like one built from scratch
    assert rows["bm25"]["tokenized"] == len(edited) and rows["bm25"]["terms_reused"] == DOCS - len(edited)
    import bm25s

    from retriever_assets.core.candidates import tokenize_for_bm25

    saved = bm25s.BM25.load(str(storage / DATASET / "bm25" / "bm25"), allow_pickle=False)
    texts = pl.read_parquet(storage / DATASET / "corpus" / "corpus.parquet")["text"].to_list()
    fresh = bm25s.BM25(k1=1.5, b=0.75)
    fresh.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    queries = pl.read_parquet(storage / DATASET / "corpus" / "queries.parquet")["text"].to_list()[:50]
    for tokens in tokenize_for_bm25(queries + ["edited w1 w2"]):
        np.testing.assert_array_equal(saved.get_scores(tokens), fresh.get_scores(tokens))


def test_after_an_edit_the_search_merges_the_changed_documents_into_the_windows(streamed):
    """Candidates searched again after an edit of 1% of the documents: only those documents are searched (merged
    into the saved ranking windows), and the candidates are exactly a full search's."""
    result, instance, resources, storage, root = streamed
    edited = _edit_documents(root, range(50, DOCS, 100), lambda text: "merged " + text[::-1])
    config = {"ops": {"teacher_embeddings": {"config": {"chunk_size": CHUNK}},
                      "candidate_lists": {"config": {"top_k": 10, "query_chunk": 32, "doc_chunk": 256,
                                                     "search": "exact"}}}}
    again = dg.materialize(all_assets(), partition_key=DATASET, instance=instance, resources=resources,
                           run_config=config, selection=["qa_corpus", "teacher_embeddings", "candidate_lists"])
    assert again.success
    rows = {r.data["teacher"]: r.data for r in
            materializations(again, "candidate_lists")[0].metadata["teachers"].value.records}
    step = rows["static"]
    assert step["incremental"] and len(edited) <= step["changed_documents"] <= 2 * len(edited)
    assert step["merged_queries"] + step["searched_again"] == TRAIN_Q and step["merged_queries"] > 0.8 * TRAIN_Q
    folder = storage / DATASET / "candidates"
    merged = pl.read_parquet(folder / "candidates.parquet").filter(pl.col("teacher") == "static")
    merged_pos = pl.read_parquet(folder / "positives.parquet").filter(pl.col("teacher") == "static")
    shutil.rmtree(folder / "windows")
    full = dg.materialize(all_assets(), partition_key=DATASET, instance=instance, resources=resources,
                          run_config={"ops": {"candidate_lists": config["ops"]["candidate_lists"]}},
                          selection=["candidate_lists"])
    rows = {r.data["teacher"]: r.data for r in
            materializations(full, "candidate_lists")[0].metadata["teachers"].value.records}
    assert rows["static"]["incremental"] is False
    assert pl.read_parquet(folder / "candidates.parquet").filter(pl.col("teacher") == "static").equals(merged)
    full_pos = pl.read_parquet(folder / "positives.parquet").filter(pl.col("teacher") == "static")
    assert full_pos.drop("rank").equals(merged_pos.drop("rank"))


def test_corpus_read_in_small_batches_equals_one_batch(tmp_path):
    from retriever_assets.core.corpus import CorpusFormatError, ValidationReport, _read_jsonl

    write_synthetic_beir(tmp_path / "ds", docs=50, train=5, test=2, long_docs=0)
    path = tmp_path / "ds" / "corpus.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [lines[3], lines[40]]) + "\n")  # identical duplicates, after their batches
    read = {}
    for batch in (3, 1000):
        frames, report = [], ValidationReport()
        ids = _read_jsonl(path, "document", "strict", report, frames=frames, batch_size=batch)
        read[batch] = (pl.concat(frames), ids, dict(report.counts))
        assert len(frames) == (-(-50 // batch))
    assert read[3][0].equals(read[1000][0]) and read[3][1] == read[1000][1] and read[3][2] == read[1000][2]
    assert read[3][0].height == 50 and read[3][2] == {"duplicate document id with identical content (kept once)": 2}
    record = json.loads(lines[3])
    path.write_text("\n".join(lines + [json.dumps(record | {"text": "other"})]) + "\n")
    with pytest.raises(CorpusFormatError, match="line 51: duplicate document id with different content.*line 4"):
        _read_jsonl(path, "document", "strict", ValidationReport(), frames=[], batch_size=3)


def test_item_texts_reads_each_chunks_texts_forward_in_small_batches(streamed):
    from retriever_assets.steps.embed import ItemTexts

    storage = streamed[3]
    corpus = pl.read_parquet(storage / DATASET / "corpus" / "corpus.parquet")
    queries = pl.read_parquet(storage / DATASET / "corpus" / "queries.parquet")
    texts = ItemTexts(storage / DATASET / "corpus" / "corpus.parquet", queries, batch_rows=50)
    expected = dict(corpus.select(pl.lit("d:") + pl.col("doc_id"), "text").iter_rows())
    expected |= dict(queries.select(pl.lit("q:") + pl.col("query_id"), "text").iter_rows())
    ids = [f"d:{d}" for d in corpus["doc_id"]]
    # sparse chunks in corpus order (an edit), a chunk of queries, then one out of order (read again from the start)
    chunks = [ids[0:700:7], ids[700:2000:13], [f"q:{q}" for q in queries["query_id"][:5]] + ids[2100:2102],
              ids[2500:], ids[10:20]]
    for chunk in chunks:
        frame = pl.DataFrame({"item_id": chunk, "role": ["document" if i.startswith("d:") else "query"
                                                         for i in chunk]})
        attached = texts.attach(frame)
        assert attached["item_id"].to_list() == chunk
        assert attached["text"].to_list() == [expected[i] for i in chunk]
    with pytest.raises(KeyError):
        texts.attach(pl.DataFrame({"item_id": ["d:nope"], "role": ["document"]}))
