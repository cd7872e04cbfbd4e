"""Stage 1, qa_corpus: validate a BEIR folder and write its frames and manifest."""

from __future__ import annotations

import time
from pathlib import Path

from resources.artifacts import DatasetArtifacts
from resources.storage import StorageResource, write_json, write_parquet
from retriever_assets.core.corpus import BeirCorpus, load_beir_folder
from retriever_assets.core.versions import corpus_version
from retriever_assets.steps.common import StepReport


def ingest_corpus(
    storage: StorageResource, dataset: str, folder: Path, *, mode: str, train_split: str, test_split: str
) -> tuple[BeirCorpus, StepReport]:
    start = time.perf_counter()
    loaded = load_beir_folder(folder, splits=(train_split, test_split), mode=mode)
    out = DatasetArtifacts(storage, dataset).corpus_dir
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
    }
    write_json(out / "manifest.json", manifest)
    return loaded, StepReport(time.perf_counter() - start, manifest)

