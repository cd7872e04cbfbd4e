"""Recipe comparison: one row per model (base, dense teachers, each recipe's student) and the false-negative audit."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

METRICS = ("ndcg_at_10", "recall_at_100", "mrr_at_10", "map_at_10")


SEED_FIELDS = ("name", "student_seed")  # recipe fields that do not change what is mined
IDENTITY = ("corpus_version", "split_key")  # what a student and its scores must share with the corpus as it is now


def _corpus(identity: dict) -> str:
    return f"corpus version {identity.get('corpus_version')} (splits {identity.get('split_key')})"


def training_staleness(current: dict, training: dict | None) -> str | None:
    """Why a student does not belong to the corpus as ingested now (`current`: corpus_version, split_key), or None.

    A student trained before a re-ingest (another dev share, split names or data) may have trained on what are now
    dev or test queries: its scores say nothing about the current splits.
    """
    if not training or training.get("corpus_version") is None:
        return ("the corpus its student was trained on was not recorded (trained before that was): re-materialize "
                "student_checkpoint (reused at no cost when its training data is unchanged)")
    if any(training.get(k) != current[k] for k in IDENTITY):
        return (f"student trained on {_corpus(training)}, the corpus is now {_corpus(current)}: re-materialize its "
                "student_checkpoint")
    return None


def staleness(current: dict, scores: dict, training: dict | None) -> str | None:
    """Why a recipe's leaderboard row does not describe the current corpus and student, or None when it does."""
    reason = training_staleness(current, training)
    if reason:
        return reason
    if any(scores.get(k) != current[k] for k in IDENTITY):
        return f"scored on {_corpus(scores)}, the corpus is now {_corpus(current)}: re-materialize its mteb_scores"
    student = next((r for label, r in scores["results"].items() if label.startswith("student")), {})
    if student.get("fingerprint") and training.get("fingerprint") and student["fingerprint"] != training[
            "fingerprint"]:
        return "scores are of an earlier student (retrained since): re-materialize its mteb_scores"
    return None


def comparable_setup(recipe: str, scores: dict, mining: dict | None, training: dict | None) -> dict:
    """Everything that makes two students comparable as seeds of one experiment, except name and seed.

    Mining settings, training settings (but the seed and the checkpoint interval), the base weights and the
    scoring length. Without mining stats the recipe is only comparable with itself.
    """
    if not mining or "recipe" not in mining:
        return {"name": recipe, "unknown_setup": recipe}
    train = training or {}
    settings = {k: v for k, v in (train.get("settings") or {}).items() if k not in ("seed", "save_steps")}
    return mining["recipe"] | {"training": settings, "base": train.get("base_fingerprint"),
                               "scored_at": scores.get("max_seq_length")}


def recipe_family(recipes: dict[str, dict]) -> dict[str, str]:
    """Map each recipe to the first recipe whose setup differs only in name and student seed.

    `recipes[name]` is a recipe's setup (`comparable_setup`); students of one family are the same experiment
    trained with different seeds, so their spread is the run-to-run noise.
    """
    family: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, settings in recipes.items():
        key = repr(sorted((k, repr(v)) for k, v in settings.items() if k not in SEED_FIELDS))
        family[name] = seen.setdefault(key, name)
    return family


def summarize_seeds(frame: pl.DataFrame) -> pl.DataFrame:
    """Per recipe family: students (seeds), mean nDCG@10 and Recall@100, min and max nDCG@10 (and the mean dev
    nDCG@10 when there is a dev split)."""
    students = frame.filter(pl.col("recipe").is_not_null())
    if "stale" in students.columns:  # a stale student is no seed of a current experiment
        students = students.filter(pl.col("stale").is_null())
    if "family" not in students.columns or students.height == 0:
        return pl.DataFrame()
    return (
        students.group_by("family", maintain_order=True)
        .agg(
            pl.len().alias("students"),
            pl.col("student_seed").sort().cast(pl.Utf8).str.join(",").alias("seeds"),
            *[pl.col(m).mean().alias(f"{m}_mean") for m in METRICS[:2]],
            pl.col("ndcg_at_10").min().alias("ndcg_at_10_min"),
            pl.col("ndcg_at_10").max().alias("ndcg_at_10_max"),
            *([pl.col("dev_ndcg_at_10").mean().alias("dev_ndcg_at_10_mean")] if "dev_ndcg_at_10" in students.columns
              else []),
        )
        .sort("ndcg_at_10_mean", descending=True, maintain_order=True)
    )


def build_leaderboard(scores: dict[str, dict], mining: dict[str, dict], training: dict[str, dict],
                      audits: dict[str, dict] | None = None, *, current: dict | None = None) -> pl.DataFrame:
    """Rows for base, teachers and every recipe's student, best nDCG@10 first.

    `scores[recipe]` is a recipe's scores.json, `mining[recipe]` its negatives stats.json and `training[recipe]`
    its student manifest; base and teacher rows are taken once (they are the same for every recipe), from scores
    on the current corpus when there are some. With `current` (the corpus's corpus_version and split_key) a row
    made under another corpus or splits gets a `stale` reason: stale rows come after every current one and are
    never chosen (`best_by_dev`) nor averaged into seed means.
    """
    families = recipe_family({r: comparable_setup(r, scores[r], mining.get(r), training.get(r)) for r in scores})
    stale = {r: staleness(current, scores[r], training.get(r)) for r in scores} if current else {}
    scored_stale = ({r: None if all(scores[r].get(k) == current[k] for k in IDENTITY) else
                     f"scored on {_corpus(scores[r])}, the corpus is now {_corpus(current)}" for r in scores}
                    if current else {})
    rows: dict[str, dict] = {}
    for recipe in sorted(scores, key=lambda r: scored_stale.get(r) is not None):  # current scores first
        data = scores[recipe]
        for label, result in data["results"].items():
            is_student = label.startswith("student")
            name = f"student: {recipe}" if is_student else label
            if name in rows:
                continue
            row = {"model": name, "recipe": recipe if is_student else None}
            if current:
                row["stale"] = stale[recipe] if is_student else scored_stale[recipe]
            row |= {m: float(result[m]) for m in METRICS}
            if "dev" in result:  # the held-out dev split: what recipes are chosen by
                row["dev_ndcg_at_10"] = float(result["dev"]["ndcg_at_10"])
            if is_student:
                stats, train = mining.get(recipe, {}), training.get(recipe, {})
                row["family"] = families.get(recipe, recipe)
                candidates = max(stats.get("candidates", 0), 1)
                row |= {
                    "share_dropped_by_rule": stats.get("candidates_dropped_by_rule", 0) / candidates,
                    "mean_negative_score": stats.get("mean_negative_score"),
                    "queries_short": stats.get("queries_short"),
                    "train_seconds": train.get("train_seconds"),
                    "student_seed": (train.get("settings") or {}).get("seed"),
                    "false_negative_share": (audits or {}).get(recipe, {}).get("false_negative_share"),
                }
            rows[name] = row
    frame = pl.DataFrame(list(rows.values()), infer_schema_length=None)
    if current:
        frame = frame.with_columns(pl.col("stale").cast(pl.String))
    base = frame.filter(pl.col("model") == "base student")["ndcg_at_10"]
    if base.len():
        frame = frame.with_columns(delta_ndcg_at_10=pl.col("ndcg_at_10") - base[0])
    best = best_by_dev(frame)
    if best is not None:
        frame = frame.with_columns(best_by_dev=pl.col("model") == best["model"])
    if current:  # current rows first: a stale score is never ranked among current ones
        return frame.sort([pl.col("stale").is_not_null(), "ndcg_at_10"], descending=[False, True],
                          maintain_order=True)
    return frame.sort("ndcg_at_10", descending=True, maintain_order=True)


def best_by_dev(board: pl.DataFrame) -> dict | None:
    """The student row with the highest nDCG@10 on the held-out dev split (ties: recipe name), or None without one.

    Only dev scores choose: the test split stays an unbiased report of the chosen student.
    """
    if "dev_ndcg_at_10" not in board.columns:
        return None
    students = _current_students(board).filter(pl.col("dev_ndcg_at_10").is_not_null())
    if students.height == 0:
        return None
    return students.sort(["dev_ndcg_at_10", "recipe"], descending=[True, False]).row(0, named=True)


def _current_students(board: pl.DataFrame) -> pl.DataFrame:
    """Student rows that are not stale (every student row of a board built without a corpus identity)."""
    students = board.filter(pl.col("recipe").is_not_null())
    return students.filter(pl.col("stale").is_null()) if "stale" in board.columns else students


def dev_selection_summary(board: pl.DataFrame) -> dict | None:
    """The dev-selected student against the one the test split would have picked (what choosing on dev cost)."""
    chosen = best_by_dev(board)
    if chosen is None:
        return None
    students = _current_students(board)
    test_best = students.sort(["ndcg_at_10", "recipe"], descending=[True, False]).row(0, named=True)
    return {
        "dev_selected": chosen["recipe"], "dev_selected_dev_ndcg_at_10": chosen["dev_ndcg_at_10"],
        "dev_selected_test_ndcg_at_10": chosen["ndcg_at_10"],
        "test_best": test_best["recipe"], "test_best_test_ndcg_at_10": test_best["ndcg_at_10"],
        "test_points_lost_by_choosing_on_dev": round(100 * (test_best["ndcg_at_10"] - chosen["ndcg_at_10"]), 2),
    }


def cross_dataset_matrix(dataset: str, scores: dict[str, dict], stale: dict[str, str | None] | None = None
                         ) -> pl.DataFrame:
    """nDCG@10 of the base model and every recipe's student on this dataset's test split and on each other
    dataset's test split it was scored on (one row per model, one column per dataset); with `stale` (recipe ->
    reason, see `staleness`) a last `stale` column when some student is stale, those rows after the current ones."""
    rows: dict[str, dict] = {}
    stale = {r: why for r, why in (stale or {}).items() if why}
    for recipe, data in scores.items():
        for label, result in data["results"].items():
            if label.startswith("teacher"):
                continue
            is_student = label.startswith("student")
            name = f"student: {recipe}" if is_student else label
            if name in rows:  # the base model is the same under every recipe: its first row stands
                continue
            rows[name] = {"model": name, dataset: float(result["ndcg_at_10"])} | {
                other: float(r["ndcg_at_10"]) for other, r in result.get("cross", {}).items()}
            if stale:
                rows[name]["stale"] = stale.get(recipe) if is_student else None
    if not rows:
        return pl.DataFrame()
    frame = pl.DataFrame(list(rows.values()), infer_schema_length=None)
    if stale:
        frame = frame.select(pl.exclude("stale"), pl.col("stale").cast(pl.String))
        return frame.sort([pl.col("stale").is_not_null(), dataset], descending=[False, True], maintain_order=True)
    return frame.sort(dataset, descending=True)


def to_markdown(frame: pl.DataFrame) -> str:
    """A GitHub-style table: 4 decimals, seconds with 1."""
    cols = frame.columns

    def cell(col: str, v) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.1f}" if col.endswith("seconds") else f"{v:.4f}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.iter_rows():
        cells = [cell(c, v) for c, v in zip(cols, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def false_negative_audit(
    negatives: pl.DataFrame,  # query_id, doc_id
    positives: pl.DataFrame,  # query_id, doc_id
    judge: Callable[[Sequence[str], Sequence[str]], np.ndarray],  # (query_ids, doc_ids) -> judge scores
) -> dict:
    """Share of kept negatives that a (stronger) judge scores at or above the query's lowest positive.

    This is the paper's false-negative analysis made measurable: a negative the judge ranks as high as a
    known positive is likely an unlabelled positive.
    """
    if negatives.height == 0:
        return {"negatives": 0, "suspected_false_negatives": 0, "false_negative_share": 0.0}
    pos = positives.join(negatives.select("query_id").unique(), on="query_id", how="semi")
    pos = pos.with_columns(judge=pl.Series(judge(pos["query_id"].to_list(), pos["doc_id"].to_list()),
                                           dtype=pl.Float64))
    neg = negatives.select("query_id", "doc_id").with_columns(
        judge=pl.Series(judge(negatives["query_id"].to_list(), negatives["doc_id"].to_list()), dtype=pl.Float64))
    lowest = pos.group_by("query_id").agg(pl.col("judge").min().alias("pos_judge"))
    flagged = neg.join(lowest, on="query_id").filter(pl.col("judge") >= pl.col("pos_judge"))
    return {
        "negatives": neg.height,
        "suspected_false_negatives": flagged.height,
        "false_negative_share": flagged.height / neg.height,
        "examples": flagged.head(5).select("query_id", "doc_id").rows(),
    }
