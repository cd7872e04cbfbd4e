"""Run configuration of each asset, with the defaults documented in the README."""


import dagster as dg

from retriever_assets.core.training import TrainingSettings
from retriever_assets.steps.candidates import ANN_DEFAULTS


class QaCorpusConfig(dg.Config):
    """How the raw BEIR folder is read. A field left at None takes the dataset's stored setting (what its last
    ingest used, `corpus/ingest_settings.json`), else the default after it; a value given here replaces the stored
    one (logged), so the folder sensor, automation and the weekly schedule re-ingest the way it was last asked."""

    validation_mode: str | None = None  # strict (default): stop at the first bad record | lenient: skip and count
    train_split: str | None = None  # default "train": qrels/<train_split>.tsv, mining and fine-tuning
    test_split: str | None = None  # default "test": qrels/<test_split>.tsv, MTEB scores
    # share of the training queries held out as a `dev` split (chosen by a salted hash of the query id): not mined,
    # not trained on; every student is scored on it and the leaderboard picks the best recipe by it.
    # None: the stored share, else RETRIEVER_DEV_SHARE, else 0 (no dev split). Keep it fixed for a dataset:
    # changing it changes the training split, so every lineage re-mines and re-trains.
    dev_share: float | None = None
    dev_seed: int | None = None  # salt of the dev choice (default 0)
    reset_settings: bool = False  # ignore the stored settings: defaults (and RETRIEVER_DEV_SHARE) for unset fields


class EmbeddingConfig(dg.Config):
    batch_size: int = 64  # encode batch size
    chunk_size: int = 1024  # items per LanceDB commit (a killed run resumes after the last committed chunk), and
    # documents per BM25 tokenization batch


class CandidateConfig(dg.Config):
    top_k: int = 30  # candidates kept per query and teacher (after removing its positives)
    query_chunk: int = 4096  # queries per search block: memory ~ query_chunk x doc_chunk floats
    doc_chunk: int = 65536  # documents per search block
    search: str = "auto"  # exact | ann | auto (ANN through a LanceDB IVF_RQ index from ann_min_docs documents)
    ann_min_docs: int = ANN_DEFAULTS["min_docs"]
    ann_nprobes: int = ANN_DEFAULTS["nprobes"]  # IVF partitions searched per query (more: better recall, slower)
    ann_refine_factor: int | None = ANN_DEFAULTS["refine_factor"]  # index proposes refine_factor x k candidates,
    # re-ranked by exact cosines
    ann_recall_sample: int = ANN_DEFAULTS["recall_sample"]  # queries also searched exactly to report recall@k
    # a measured recall@k under this floor is a warning: nprobes is widened until it holds, else the search is exact
    ann_recall_floor: float = ANN_DEFAULTS["recall_floor"]


class HardNegativesConfig(dg.Config):
    """Overrides of the asset's mining recipe (None keeps the recipe's value); validated before any work.

    method: naive | shifted | abs | marginpos | percpos; sampling: top | sampled | top1_sampled;
    ensemble: cross | intra | intra_dedup; short_queries: keep | drop.
    """

    method: str | None = None
    param: float | None = None
    num_negatives: int | None = None
    sampling: str | None = None
    sample_k: int | None = None
    temperature: float | None = None
    ensemble: str | None = None
    short_queries: str | None = None
    seed: int | None = None
    teachers: list[str] | None = None


class StudentConfig(dg.Config):
    """Student fine-tuning; defaults follow the sentence-transformers SciFact recipe (see docs/results.md)."""

    # the defaults are TrainingSettings' own (one set of defaults, documented there)
    base_model: str = "all-MiniLM-L6-v2"  # offline alias, local folder or hub id
    epochs: int = TrainingSettings.epochs
    batch_size: int = TrainingSettings.batch_size
    learning_rate: float = TrainingSettings.learning_rate
    warmup_ratio: float = TrainingSettings.warmup_ratio
    temperature: float = TrainingSettings.temperature  # InfoNCE tau (MultipleNegativesRankingLoss scale 1/tau)
    max_seq_length: int = TrainingSettings.max_seq_length
    seed: int | None = None  # a recipe's student_seed wins; else this; else TrainingSettings.seed (42)
    max_train_queries: int | None = None  # train on a fixed subset of training queries (same for every recipe)
    save_steps: int = TrainingSettings.save_steps  # checkpoint interval (steps): a killed run resumes from the latest
    # texts per forward pass of the cached InfoNCE loss (GradCache: same loss and gradients, bounded memory);
    # 0 = plain MultipleNegativesRankingLoss over the whole batch at once (peak memory grows with the batch)
    mini_batch_size: int = TrainingSettings.mini_batch_size

    def settings(self, recipe_seed: int | None = None, *, distill: str = "none",
                 distill_weight: float = 1.0) -> TrainingSettings:
        """This run config's settings for one recipe's student, with the recipe's seed and distillation option."""
        # the recipe's seed is part of its identity (naive-seed2 must not silently train with another seed)
        seed = recipe_seed if recipe_seed is not None else (self.seed if self.seed is not None
                                                             else TrainingSettings.seed)
        return TrainingSettings(
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
            warmup_ratio=self.warmup_ratio, temperature=self.temperature, max_seq_length=self.max_seq_length,
            seed=seed, save_steps=self.save_steps, max_queries=self.max_train_queries,
            mini_batch_size=self.mini_batch_size or None, distill=distill, distill_weight=distill_weight,
        )


class ScoresConfig(dg.Config):
    batch_size: int = 64  # encode batch size during evaluation
    evaluate_teachers: bool = True  # also score each dense teacher (same weights are scored once)
    max_seq_length: int | None = None  # scoring length of base, student and teachers (None: the students'
    # training length; teachers keep their own configured length)
    # base and student are also scored on these datasets' test splits (a forgetting check, shown as a matrix by the
    # leaderboard); None: every other registered dataset whose qa_corpus is materialized; []: none
    cross_datasets: list[str] | None = None


class LeaderboardConfig(dg.Config):
    judge_model: str | None = None  # a stronger encoder for the false-negative audit (e.g. all-mpnet-base-v2)
    audit_max_queries: int | None = None  # audit a fixed subset of training queries (the same for every recipe)
    judge_max_seq_length: int = 256
