"""LanceDB on object storage: embeddings written by the Ray path (lance-ray fragments + one commit) and updated by
one merge_insert, into s3:// on a local S3 emulator (moto server on 127.0.0.1); the search reads them back."""

import json

import numpy as np
from conftest import DATASET, copy_demo, ingested, ray_compute, tiny_models

from resources.artifacts import DatasetArtifacts
from retriever_assets import steps


def test_embeddings_and_merge_insert_on_s3(ray_cluster, s3_server, tmp_path, demo_root, tiny_encoder):
    models = tiny_models(tiny_encoder)
    root = copy_demo(demo_root, tmp_path / "data")
    storage = ingested(tmp_path / "storage", root, lancedb_uri=f"s3://{s3_server['bucket']}/lancedb",
                       storage_options=s3_server["options"])
    local = ingested(tmp_path / "local", root)
    compute = ray_compute(ray_cluster)
    quiet = lambda m: None  # noqa: E731
    report = steps.embed_teachers(storage, models, DATASET, batch_size=32, chunk_size=100, log=quiet, compute=compute)
    [tiny] = [t for t in report.values["teachers"] if t["teacher"] == "tiny"]
    assert tiny["embedded"] == 240 and tiny["table_version"] == 1
    listed = s3_server["client"].list_objects_v2(Bucket=s3_server["bucket"], Prefix="lancedb/demo-qa__tiny.lance/")
    assert any(o["Key"].endswith(".lance") for o in listed.get("Contents", [])), "no data files in the bucket"

    # a changed document: one merge_insert through a staging table in the bucket, which is then dropped
    corpus = root / DATASET / "corpus.jsonl"
    docs = [json.loads(line) for line in corpus.read_text().splitlines()]
    docs[3]["text"] = "Rewritten: " + docs[3]["text"]
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    for target in (storage, local):
        steps.ingest_corpus(target, DATASET, root / DATASET, mode="strict", train_split="train", test_split="test")
    report = steps.embed_teachers(storage, models, DATASET, batch_size=32, chunk_size=100, log=quiet, compute=compute)
    [tiny] = [t for t in report.values["teachers"] if t["teacher"] == "tiny"]
    assert (tiny["embedded"], tiny["unchanged"], tiny["table_version"]) == (1, 239, 2)
    assert tiny["ray_staging_table"] == "demo-qa__tiny__staging"
    assert "demo-qa__tiny__staging" not in storage.connect().list_tables().tables

    # the vectors in the bucket are the local path's, and candidates are built from them
    steps.embed_teachers(local, models, DATASET, batch_size=32, chunk_size=100, log=quiet)
    s3_store, local_store = storage.embedding_store(DATASET, "tiny"), local.embedding_store(DATASET, "tiny")
    doc_ids = [d["_id"] for d in docs]
    assert np.abs(s3_store.vectors("document", doc_ids) - local_store.vectors("document", doc_ids)).max() <= 1e-6
    steps.build_candidates(storage, models, DATASET, top_k=10, query_chunk=16, doc_chunk=64, log=quiet,
                           compute=compute)
    candidates, _ = DatasetArtifacts(storage, DATASET).read_candidates()
    assert candidates.filter(candidates["teacher"] == "tiny").height == 90 * 10
