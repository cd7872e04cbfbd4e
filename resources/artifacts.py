"""The on-disk layout of one dataset's artifacts: the only place that spells their paths, and their readers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from resources.storage import StorageResource
from retriever_assets.core.naming import folder_bytes
from retriever_assets.core.versions import split_key


@dataclass(frozen=True)
class DatasetArtifacts:
    """`<storage root>/<dataset>/`: corpus/, bm25/<teacher>/, candidates/, negatives/<recipe>/, student/<recipe>/,
    scores/<recipe>/, scores/by-model/, leaderboard/ (embeddings live in LanceDB, see StorageResource)."""

    storage: StorageResource
    dataset: str

    def folder(self, *parts: str) -> Path:
        return self.storage.dataset_dir(self.dataset, *parts)

    # ---------------------------------------------------------------- folders
    @property
    def corpus_dir(self) -> Path:
        return self.folder("corpus")

    @property
    def candidates_dir(self) -> Path:
        return self.folder("candidates")

    @property
    def leaderboard_dir(self) -> Path:
        return self.folder("leaderboard")

    def bm25_dir(self, teacher: str) -> Path:
        return self.folder("bm25", teacher)

    def negatives_dir(self, recipe: str) -> Path:
        return self.folder("negatives", recipe)

    def student_dir(self, recipe: str) -> Path:
        return self.folder("student", recipe)

    def scores_dir(self, recipe: str) -> Path:
        return self.folder("scores", recipe)

    # ---------------------------------------------------------------- files
    @property
    def corpus_manifest_file(self) -> Path:
        return self.corpus_dir / "manifest.json"

    @property
    def ingest_settings_file(self) -> Path:
        """The settings the dataset was last ingested with: reused by runs that give none (sensor, schedule)."""
        return self.corpus_dir / "ingest_settings.json"

    def negatives_file(self, recipe: str) -> Path:
        return self.negatives_dir(recipe) / "negatives.parquet"

    def mining_stats_file(self, recipe: str) -> Path:
        return self.negatives_dir(recipe) / "stats.json"

    def student_manifest_file(self, recipe: str) -> Path:
        return self.student_dir(recipe) / "manifest.json"

    def scores_file(self, recipe: str) -> Path:
        return self.scores_dir(recipe) / "scores.json"

    @property
    def best_student_file(self) -> Path:
        return self.leaderboard_dir / "best_student.json"

    def score_cache_file(self, score_key: str) -> Path:
        """One model's scores on the test split, shared by every recipe (keyed by what decides the score)."""
        return self.folder("scores", "by-model") / f"{score_key}.json"

    # ---------------------------------------------------------------- readers
    def read_corpus(self, *, document_columns: list[str] | None = None
                    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict]:
        """(corpus, queries, qrels, manifest) as written by the qa_corpus step; `document_columns` reads only those
        columns of the corpus (e.g. ["doc_id"]: no document text is loaded)."""
        manifest = self.read_corpus_manifest()
        folder = self.corpus_dir
        return (pl.read_parquet(folder / "corpus.parquet", columns=document_columns),
                pl.read_parquet(folder / "queries.parquet"), pl.read_parquet(folder / "qrels.parquet"), manifest)

    def read_documents(self, doc_ids: pl.Series) -> pl.DataFrame:
        """The corpus rows (doc_id, title, text, ...) of `doc_ids` only: the parquet is scanned in a streaming
        query, so the corpus is never held whole."""
        wanted = pl.DataFrame({"doc_id": doc_ids.unique()}, schema={"doc_id": pl.String})
        return (pl.scan_parquet(self.corpus_dir / "corpus.parquet").join(wanted.lazy(), on="doc_id", how="semi")
                .collect(engine="streaming"))

    def read_corpus_manifest(self) -> dict:
        """The qa_corpus step's manifest (sizes, splits, dev hold-out, version) without reading the frames."""
        if not self.corpus_manifest_file.exists():
            raise FileNotFoundError(f"dataset {self.dataset!r} has no qa_corpus yet: materialize qa_corpus first")
        return json.loads(self.corpus_manifest_file.read_text())

    def corpus_identity(self) -> dict:
        """{corpus_version, split_key} of the corpus as ingested now: what a student and its scores must match."""
        manifest = self.read_corpus_manifest()
        key = manifest.get("split_key")
        if key is None:  # a corpus ingested before split keys were recorded
            key = split_key(pl.read_parquet(self.corpus_dir / "qrels.parquet", columns=["split", "query_id"]))
        return {"corpus_version": manifest["version"], "split_key": key}

    def read_ingest_settings(self) -> dict | None:
        """The stored ingest settings; for a corpus ingested before they were stored, what its manifest says was
        used (the validation mode only when the manifest records it); None for a dataset never ingested."""
        if self.ingest_settings_file.exists():
            return json.loads(self.ingest_settings_file.read_text())
        if not self.corpus_manifest_file.exists():
            return None
        manifest = self.read_corpus_manifest()
        held = bool(manifest.get("dev_split"))
        legacy = {"train_split": manifest["train_split"], "test_split": manifest["test_split"],
                  "dev_share": manifest["dev_share"] if held else 0.0, "dev_seed": manifest["dev_seed"] if held else 0}
        return legacy | ({"validation_mode": manifest["validation_mode"]} if "validation_mode" in manifest else {})

    def read_candidates(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(candidates, positives' teacher scores) as written by the candidate_lists step."""
        folder = self.candidates_dir
        if not (folder / "candidates.parquet").exists():
            raise FileNotFoundError(f"dataset {self.dataset!r} has no candidate_lists yet: materialize it first")
        return pl.read_parquet(folder / "candidates.parquet"), pl.read_parquet(folder / "positives.parquet")

    def read_negatives(self, recipe: str) -> pl.DataFrame:
        return pl.read_parquet(self.negatives_file(recipe))

    def read_mining_stats(self, recipe: str) -> dict:
        return json.loads(self.mining_stats_file(recipe).read_text())

    def read_student_manifest(self, recipe: str) -> dict:
        return json.loads(self.student_manifest_file(recipe).read_text())

    def read_scores(self, recipe: str) -> dict:
        return json.loads(self.scores_file(recipe).read_text())

    @staticmethod
    def size_mib(folder: Path) -> float:
        """MiB of the files under one artifact folder (e.g. `artifacts.student_dir(recipe)`)."""
        return round(folder_bytes(folder) / 2**20, 2)
