"""Stage 1, qa_corpus: validate a BEIR folder and write its frames and manifest."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from resources.artifacts import DatasetArtifacts
from resources.storage import StorageResource, write_json, write_parquet
from retriever_assets.core.corpus import BeirCorpus, dev_split_name, hold_out_dev, load_beir_folder
from retriever_assets.core.versions import corpus_version
from retriever_assets.steps.common import StepReport


def ingest_corpus(
    storage: StorageResource, dataset: str, folder: Path, *, mode: str, train_split: str, test_split: str,
    dev_share: float = 0.0, dev_seed: int = 0,
) -> tuple[BeirCorpus, StepReport]:
    start = time.perf_counter()
    loaded = load_beir_folder(folder, splits=(train_split, test_split), mode=mode,
                              held_apart=(train_split, test_split))
    dev_split = dev_split_name(train_split, test_split) if dev_share != 0 else None  # a bad share is refused below
    if dev_split:  # held out of mining and training; recipes are chosen on it, never on test
        try:
            qrels = hold_out_dev(loaded.qrels, train_split, dev_share, seed=dev_seed, dev_split=dev_split)
        except ValueError as exc:
            raise ValueError(f"{folder / 'qrels' / (train_split + '.tsv')}: {exc}") from exc
        loaded = dataclasses.replace(loaded, qrels=qrels)
    artifacts = DatasetArtifacts(storage, dataset)
    out = artifacts.corpus_dir
    write_parquet(loaded.corpus, out / "corpus.parquet")
    write_parquet(loaded.queries, out / "queries.parquet")
    write_parquet(loaded.qrels, out / "qrels.parquet")
    version = corpus_version(loaded.corpus, loaded.queries, loaded.qrels)
    manifest = {
        "source": str(folder),
        "train_split": train_split,
        "test_split": test_split,
        "version": version,
        "documents": loaded.corpus.height,
        "queries": loaded.queries.height,
        **({"dev_split": dev_split, "dev_share": dev_share, "dev_seed": dev_seed,
            "dev_queries": loaded.qrels.filter(loaded.qrels["split"] == dev_split)["query_id"].n_unique()}
           if dev_split else {}),
    }
    write_json(artifacts.corpus_manifest_file, manifest)
    return loaded, StepReport(time.perf_counter() - start, manifest)

