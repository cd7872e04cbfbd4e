"""Stage 1, qa_corpus: validate a BEIR folder and write its frames and manifest."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from resources.artifacts import DatasetArtifacts
from resources.storage import StorageResource, write_json, write_parquet
from retriever_assets.core.corpus import BeirCorpus, dev_split_name, hold_out_dev, load_beir_folder
from retriever_assets.core.versions import corpus_version, split_key
from retriever_assets.steps.common import Log, StepReport

# what qa_corpus uses when neither the run nor the dataset's stored settings say otherwise
INGEST_DEFAULTS = {"validation_mode": "strict", "train_split": "train", "test_split": "test", "dev_share": 0.0,
                   "dev_seed": 0}


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    """The settings one ingest uses, where each came from, and what changed against the stored ones."""

    values: dict  # validation_mode, train_split, test_split, dev_share, dev_seed
    sources: dict  # field -> "explicit" (the run), "stored" (the dataset's last ingest), "environment", "default"
    changed: list[str]  # "field: stored -> new", for explicit values that replace stored ones

    def describe(self) -> dict:
        return {k: {"value": v, "from": self.sources[k]} for k, v in self.values.items()}


def env_dev_share() -> float | None:
    """RETRIEVER_DEV_SHARE as a number, None when unset (a non-number is refused, naming its value)."""
    value = os.environ.get("RETRIEVER_DEV_SHARE") or None
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"RETRIEVER_DEV_SHARE={value!r} is not a number (a share such as 0.2, or 0)") from None


def resolve_ingest_settings(storage: StorageResource, dataset: str, given: dict, *, reset: bool = False,
                            log: Log | None = None) -> IngestSettings:
    """Each setting from the run when it names one, else the dataset's stored settings (its last ingest), else
    RETRIEVER_DEV_SHARE for the dev share, else the default; `reset` ignores the stored ones.

    So a dev share, split names or lenient mode given once stay until a run names another value: the folder sensor,
    automation and the weekly schedule (runs without config) re-ingest the same way instead of reverting.
    """
    stored = None if reset else DatasetArtifacts(storage, dataset).read_ingest_settings()
    env_share = env_dev_share()
    values, sources, changed = {}, {}, []
    for key, default in INGEST_DEFAULTS.items():
        if given.get(key) is not None:
            values[key], sources[key] = given[key], "explicit"
            if stored is not None and key in stored and stored[key] != given[key]:
                changed.append(f"{key}: {stored[key]} -> {given[key]}")
        elif stored is not None and key in stored:
            values[key], sources[key] = stored[key], "stored"
            if key == "dev_share" and env_share is not None and env_share != stored[key] and log:
                log(f"RETRIEVER_DEV_SHARE={env_share} differs from dataset {dataset!r}'s stored dev share "
                    f"{stored[key]}: the stored one is kept (give dev_share explicitly, or reset_settings, to change "
                    "it)")
        elif key == "dev_share" and env_share is not None:
            values[key], sources[key] = env_share, "environment"
        else:
            values[key], sources[key] = default, "default"
    if values["validation_mode"] not in ("strict", "lenient"):
        raise ValueError(f"validation_mode {values['validation_mode']!r} is not 'strict' or 'lenient'")
    values["dev_share"] = float(values["dev_share"])
    return IngestSettings(values, sources, changed)


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
        "split_key": split_key(loaded.qrels),
        "validation_mode": mode,
        "documents": loaded.corpus.height,
        "queries": loaded.queries.height,
        **({"dev_split": dev_split, "dev_share": dev_share, "dev_seed": dev_seed,
            "dev_queries": loaded.qrels.filter(loaded.qrels["split"] == dev_split)["query_id"].n_unique()}
           if dev_split else {}),
    }
    write_json(artifacts.corpus_manifest_file, manifest)
    # written last: a run that failed above leaves the settings (and the corpus) of the last good ingest
    write_json(artifacts.ingest_settings_file, {"validation_mode": mode, "train_split": train_split,
                                                "test_split": test_split, "dev_share": float(dev_share),
                                                "dev_seed": dev_seed})
    return loaded, StepReport(time.perf_counter() - start, manifest)

