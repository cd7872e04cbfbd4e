"""The `ray` backend against the local path on a 2-worker-node Ray cluster: embeddings, candidates, negatives,
incremental updates and the Dagster resource wiring."""

import shutil

import lancedb
import numpy as np
import polars as pl
import pytest
from conftest import DATASET, copy_demo, ingested, ray_compute, tiny_models

from resources.artifacts import DatasetArtifacts
from retriever_assets import steps
from retriever_assets.core.mining import MiningRecipe, mine_hard_negatives
from retriever_assets.distributed.search import shard_bounds

CAND = {"top_k": 20, "query_chunk": 16, "doc_chunk": 32}  # 150 documents: shards [0, 96) and [96, 150)


def _vectors(storage, teacher="tiny") -> dict[str, np.ndarray]:
    table = storage.embedding_store(DATASET, teacher)._table().to_arrow()
    ids = table["item_id"].to_pylist()
    assert len(ids) == len(set(ids)), "duplicated rows"
    matrix = np.asarray(table["vector"].combine_chunks().values, dtype=np.float32).reshape(len(ids), -1)
    return dict(zip(ids, matrix, strict=True))


@pytest.fixture(scope="module")
def both(ray_cluster, tmp_path_factory, demo_root, tiny_encoder):
    """demo-qa embedded and searched locally and on Ray."""
    models = tiny_models(tiny_encoder)
    local = ingested(tmp_path_factory.mktemp("local"), demo_root)
    remote = ingested(tmp_path_factory.mktemp("ray"), demo_root)
    compute = ray_compute(ray_cluster)
    log = lambda m: None  # noqa: E731
    embedded = {
        "local": steps.embed_teachers(local, models, DATASET, batch_size=32, chunk_size=100, log=log),
        "ray": steps.embed_teachers(remote, models, DATASET, batch_size=32, chunk_size=100, log=log, compute=compute),
    }
    # the same vectors searched both ways (the Ray table's vectors, first in this process, then by shard actors)
    cands, frames = {}, {}
    for side, backend in (("local", None), ("ray", compute)):
        # a full search each time (else the second would merge into the first one's ranking windows)
        shutil.rmtree(DatasetArtifacts(remote, DATASET).candidates_dir / "windows", ignore_errors=True)
        cands[side] = steps.build_candidates(remote, models, DATASET, log=log, compute=backend, **CAND)
        frames[side] = DatasetArtifacts(remote, DATASET).read_candidates()
    return {"models": models, "local": local, "ray": remote, "compute": compute, "embedded": embedded,
            "candidates": cands, "frames": frames}


def test_embeddings_match_local_within_1e6_in_one_commit(both):
    local, remote = _vectors(both["local"]), _vectors(both["ray"])
    assert set(local) == set(remote) and len(local) == 150 + 90
    worst = max(float(np.abs(local[i] - remote[i]).max()) for i in local)
    assert worst <= 1e-6, worst
    [report] = [t for t in both["embedded"]["ray"].values["teachers"] if t["teacher"] == "tiny"]
    assert report["compute"]["backend"] == "ray" and report["compute"]["nodes"] == 3
    assert report["embedded"] == 240 and report["ray_rows"] == 240
    # the whole embedding is one commit: the table's first version holds every row
    table = both["ray"].embedding_store(DATASET, "tiny")._table()
    assert table.version == 1 and len(table.list_versions()) == 1


def test_sharded_search_gives_identical_candidates_and_negatives(both):
    assert len(shard_bounds(150, 2, CAND["doc_chunk"])) == 2
    (local_c, local_p), (ray_c, ray_p) = both["frames"]["local"], both["frames"]["ray"]
    assert ray_c.height > 1000
    diff = local_c.join(ray_c, on=["query_id", "teacher", "rank"], how="left", suffix="_ray").filter(
        (pl.col("doc_id") != pl.col("doc_id_ray")) | (pl.col("score") != pl.col("score_ray")))
    assert local_c.equals(ray_c), f"candidates differ: {diff}"
    assert local_p.equals(ray_p), "positive scores differ"
    [tiny] = [t for t in both["candidates"]["ray"].values["teachers"] if t["teacher"] == "tiny"]
    assert tiny["search"] == "exact (ray shards)" and tiny["ray_shards"] == 2
    recipe = MiningRecipe.from_dict({"name": "percpos", "teachers": ["tiny", "bm25"], "ensemble": "intra"})
    queries = sorted(local_c["query_id"].unique().to_list())
    mined = {side: mine_hard_negatives(*both["frames"][side], recipe, query_ids=queries).negatives
             for side in ("local", "ray")}
    assert mined["local"].height > 100 and mined["local"].equals(mined["ray"])
    # and the hard_negatives step reads what the Ray search wrote
    step = steps.mine_negatives(both["ray"], both["models"], DATASET, recipe, log=print)[0].negatives
    assert step.equals(mined["ray"])


def test_incremental_update_is_one_merge_insert(both, tmp_path, demo_root, tiny_encoder):
    """Change one document, add one, remove one: only those are embedded, in one merge_insert (plus one delete)."""
    root = copy_demo(demo_root, tmp_path / "data")
    corpus = root / DATASET / "corpus.jsonl"
    import json

    docs = [json.loads(line) for line in corpus.read_text().splitlines()]
    qrels_ids = {r.split("\t")[1] for f in ("train.tsv", "test.tsv")
                 for r in (root / DATASET / "qrels" / f).read_text().splitlines()[1:]}
    docs[0]["text"] = "A changed opening. " + docs[0]["text"]
    docs.remove(next(d for d in reversed(docs) if d["_id"] not in qrels_ids))
    docs.append({"_id": "new-doc", "title": "New", "text": "A document added in the second week."})
    lines = [json.dumps(d) for d in docs]
    corpus.write_text("\n".join(lines) + "\n")
    models = both["models"]
    for side in ("local", "ray"):
        storage = both[side]
        before = storage.embedding_store(DATASET, "tiny").version()
        steps.ingest_corpus(storage, DATASET, root / DATASET, mode="strict", train_split="train", test_split="test")
        report = steps.embed_teachers(storage, models, DATASET, batch_size=32, chunk_size=100, log=print,
                                      compute=both["compute"] if side == "ray" else None)
        [tiny] = [t for t in report.values["teachers"] if t["teacher"] == "tiny"]
        assert (tiny["embedded"], tiny["deleted"]) == (2, 1)
        if side == "ray":
            assert tiny["ray_staging_table"] == "demo-qa__tiny__staging"
            assert storage.embedding_store(DATASET, "tiny").version() == before + 2  # one delete, one merge_insert
            assert "demo-qa__tiny__staging" not in lancedb.connect(storage.lancedb_root()).list_tables().tables
    local, remote = _vectors(both["local"]), _vectors(both["ray"])
    assert set(local) == set(remote) and "d:new-doc" in remote and len(remote) == 240
    assert max(float(np.abs(local[i] - remote[i]).max()) for i in local) <= 1e-6


def test_ann_index_built_by_lance_ray(both):
    """search='ann' on the ray backend: lance-ray builds the IVF_RQ index, LanceDB searches it, recall reported."""
    report = steps.build_candidates(both["ray"], both["models"], DATASET, top_k=10, query_chunk=16, doc_chunk=32,
                                    search="ann", ann={"nprobes": 50, "refine_factor": 5}, log=print,
                                    compute=both["compute"])
    [tiny] = [t for t in report.values["teachers"] if t["teacher"] == "tiny"]
    assert tiny["search"] == "ann" and tiny["ann_index"] == "created"
    table = both["ray"].embedding_store(DATASET, "tiny")._table()
    [index] = [i for i in table.list_indices() if list(i.columns) == ["vector"]]
    assert "RQ" in str(index.index_type).upper()
    assert tiny["ann_recall_at_k"] >= 0.9  # 150 documents, nearly all partitions probed: about exact
