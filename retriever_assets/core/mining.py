"""Positive-aware hard-negative mining (NV-Retriever, arXiv 2407.15831): filter, sample, ensemble.

Candidates come from `core.candidates` with the query's positives already removed and `rank` counted
among non-positives. Every rule compares a candidate's teacher score `s` with the query's LOWEST
positive score `p` under the same teacher, with strict inequality (the table is `rules_markdown_table()`):

| method | keep when | paper default |
| --- | --- | --- |
| naive | always (sampling takes the top) | - |
| shifted | rank > N | N = 10 |
| abs | s < t | t = 0.7 |
| marginpos | s < p - m | m = 0.05 |
| percpos | s < p - |p| * (1 - x) | x = 0.95 |

PercPos is `p * x` for p >= 0 and sign-safe otherwise. BM25 scores and the dot products of a dense teacher with
normalize=False are unbounded, not cosines: `abs` and `marginpos` (absolute thresholds on the score scale) are
refused for them; `percpos` is scale-free and allowed; naive and shifted are rank rules. Each rule is one
`MiningRule` entry of `RULES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

Method = Literal["naive", "shifted", "abs", "marginpos", "percpos"]
Sampling = Literal["top", "sampled", "top1_sampled"]
Ensemble = Literal["cross", "intra", "intra_dedup"]
ShortPolicy = Literal["keep", "drop"]
ScoreKind = Literal["cosine", "dot", "bm25"]
Distill = Literal["none", "marginmse", "kldiv"]


class RecipeError(ValueError):
    """A mining recipe that cannot run: raised before any work starts."""


@dataclass(frozen=True)
class MiningRule:
    """One NV-Retriever filter (arXiv 2407.15831, section 3): keep a candidate when `keep_text` holds, strictly."""

    name: str
    paper_default: float | None  # the paper's recommended threshold; None: the rule takes none
    param_name: str  # what a recipe's `param` is: N (shifted), t (abs), m (marginpos), x (percpos); "" for none
    cosine_only: bool  # an absolute threshold on the score scale: refused for BM25 and dot-product teachers
    keep_text: str  # the rule as the docs write it, e.g. "s < p - m"
    expr: Callable[[pl.Expr, pl.Expr, pl.Expr, Any], pl.Expr]  # (rank, s, p, threshold) -> keep
    valid: Callable[[float | None], bool] | None = None  # None: every threshold is allowed
    invalid: str = ""  # the start of `check`'s message when `valid` fails

    def check(self, threshold: float | None) -> str | None:
        """Why this rule cannot run with `threshold` (e.g. percpos x outside (0, 1]), or None when it can."""
        return None if self.valid is None or self.valid(threshold) else f"{self.invalid}, got {threshold}"

    def keep(self, threshold: float | None) -> pl.Expr:
        """The filter over columns rank, score and pos_score, compared in float64: the float32 scores are exact, and
        `p - m` or `p * x` in float32 would round the threshold (a hair-below candidate dropped, or above it kept)."""
        score, pos = pl.col("score").cast(pl.Float64), pl.col("pos_score").cast(pl.Float64)
        return self.expr(pl.col("rank"), score, pos, threshold)


RULES: dict[str, MiningRule] = {r.name: r for r in [
    MiningRule("naive", None, "", False, "always (sampling takes the top)", lambda rank, s, p, _: pl.lit(True)),
    MiningRule("shifted", 10, "N", False, "rank > N", lambda rank, s, p, n: rank > int(n),
               valid=lambda n: not (n is None or n < 0 or n != int(n)), invalid="shifted needs a whole N >= 0"),
    MiningRule("abs", 0.7, "t", True, "s < t", lambda rank, s, p, t: s < float(t)),
    MiningRule("marginpos", 0.05, "m", True, "s < p - m", lambda rank, s, p, m: s < p - float(m),
               valid=lambda m: not m < 0, invalid="marginpos margin must be >= 0"),
    MiningRule("percpos", 0.95, "x", False, "s < p - |p| * (1 - x)",
               lambda rank, s, p, x: s < p - p.abs() * (1.0 - float(x)),
               valid=lambda x: 0 < x <= 1, invalid="percpos x must be in (0, 1]"),
]}
METHODS: tuple[str, ...] = tuple(RULES)
PAPER_DEFAULTS: dict[str, float] = {n: r.paper_default for n, r in RULES.items() if r.paper_default is not None}
SCORE_RULES_FOR_COSINE_ONLY: tuple[str, ...] = tuple(n for n, r in RULES.items() if r.cosine_only)


def rules_markdown_table() -> str:
    """The method table (method | keep when | paper default) of this module's docstring, built from `RULES`."""
    rows = [("method", "keep when", "paper default"), ("---",) * 3] + [
        (r.name, r.keep_text, "-" if r.paper_default is None else f"{r.param_name} = {r.paper_default:g}")
        for r in RULES.values()]
    return "\n".join(f"| {' | '.join(row)} |" for row in rows)


@dataclass(frozen=True)
class MiningRecipe:
    """One way to mine negatives; defaults are the paper's recommended TopK-PercPos 95%, 4 negatives, top-k."""

    name: str = "percpos-0.95"
    teachers: tuple[str, ...] = ("minilm",)
    method: Method = "percpos"
    param: float | None = None  # N (shifted), t (abs), m (marginpos), x (percpos); None = paper default
    num_negatives: int = 4  # paper: 4 per query
    sampling: Sampling = "top"
    sample_k: int = 10  # sampled top-k draws from the first k survivors (paper's best k = 10)
    temperature: float = 1.0  # softmax(score / temperature); 1.0 = the paper's plain softmax of scores
    ensemble: Ensemble = "intra"  # with several teachers; paper's best: intra-sample without dedup
    short_queries: ShortPolicy = "keep"  # queries with fewer than num_negatives survivors: keep fewer, or drop
    seed: int = 42  # sampling seed (sampled / top1_sampled); top sampling is deterministic without it
    student_seed: int | None = None  # training seed of this recipe's student (None: the run config's, 42)
    # distillation beside InfoNCE from the teacher's scores of the positive and each mined negative: marginmse or
    # kldiv (sentence-transformers MarginMSELoss / DistillKLDivLoss on the InfoNCE logit scale), times the weight
    distill: Distill = "none"
    distill_weight: float = 1.0

    @property
    def threshold(self) -> float | None:
        rule = RULES.get(self.method)
        return (rule.paper_default if rule else None) if self.param is None else float(self.param)

    def validate(self, teacher_kinds: dict[str, ScoreKind]) -> None:
        """Raise `RecipeError` naming the recipe and the problem if it cannot run on these teachers."""
        where = f"mining recipe {self.name!r}"
        if (rule := RULES.get(self.method)) is None:
            raise RecipeError(f"{where}: unknown method {self.method!r}; choose one of {', '.join(RULES)}")
        if self.sampling not in ("top", "sampled", "top1_sampled"):
            raise RecipeError(f"{where}: unknown sampling {self.sampling!r} (top, sampled, top1_sampled)")
        if self.ensemble not in ("cross", "intra", "intra_dedup"):
            raise RecipeError(f"{where}: unknown ensemble {self.ensemble!r} (cross, intra, intra_dedup)")
        if self.short_queries not in ("keep", "drop"):
            raise RecipeError(f"{where}: short_queries must be 'keep' or 'drop', not {self.short_queries!r}")
        if not self.teachers:
            raise RecipeError(f"{where}: names no teacher")
        if len(set(self.teachers)) != len(self.teachers):
            raise RecipeError(f"{where}: a teacher is listed twice")
        for teacher in self.teachers:
            if teacher not in teacher_kinds:
                known = ", ".join(sorted(teacher_kinds)) or "none"
                raise RecipeError(f"{where}: unknown teacher {teacher!r} (configured: {known})")
            if teacher_kinds[teacher] != "cosine" and rule.cosine_only:
                allowed = ", ".join(n for n, r in RULES.items() if not r.cosine_only)
                if teacher_kinds[teacher] == "bm25":
                    raise RecipeError(f"{where}: {self.method} compares raw scores with a fixed threshold, which has "
                                      f"no meaning for BM25 teacher {teacher!r}; use one of {allowed} with BM25")
                raise RecipeError(f"{where}: {self.method} compares raw scores with a fixed threshold, which has no "
                                  f"meaning for dot products: teacher {teacher!r} has normalize=False (unbounded "
                                  f"scores); use one of {allowed}, or normalize the teacher")
        if self.num_negatives < 1:
            raise RecipeError(f"{where}: num_negatives must be >= 1")
        if self.sampling != "top" and self.sample_k < self.num_negatives:
            raise RecipeError(f"{where}: sample_k ({self.sample_k}) must be >= num_negatives ({self.num_negatives})")
        if self.temperature <= 0:
            raise RecipeError(f"{where}: temperature must be > 0")
        seed = self.student_seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise RecipeError(f"{where}: student_seed must be a whole number >= 0, got {self.student_seed!r}")
        if problem := rule.check(self.threshold):
            raise RecipeError(f"{where}: {problem}")
        self._validate_distill(where, teacher_kinds)

    def _validate_distill(self, where: str, teacher_kinds: dict[str, ScoreKind]) -> None:
        """Distillation compares the teacher's scores with the student's cosines: one dense, normalized teacher."""
        if self.distill not in ("none", "marginmse", "kldiv"):
            raise RecipeError(f"{where}: distill must be 'none', 'marginmse' or 'kldiv', not {self.distill!r}")
        weight = self.distill_weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise RecipeError(f"{where}: distill_weight must be a number > 0, got {weight!r}")
        if self.distill == "none":
            return
        if len(self.teachers) != 1:
            raise RecipeError(f"{where}: distill {self.distill} needs exactly one dense teacher (got "
                              f"{', '.join(self.teachers)}): the negatives of an ensemble carry scores on different "
                              "scales, which the student's cosines cannot match")
        kind = teacher_kinds[self.teachers[0]]
        if kind == "bm25":
            raise RecipeError(f"{where}: distill {self.distill} needs one dense teacher; BM25 scores are unbounded "
                              "term-match scores, not on the student's cosine scale")
        if kind != "cosine":
            raise RecipeError(f"{where}: distill {self.distill} needs one dense teacher with normalized vectors; "
                              f"{self.teachers[0]!r} has normalize=False (dot products, not on the student's "
                              "cosine scale)")

    def to_dict(self) -> dict:
        """The recipe's fields plus its effective `threshold` (as stored in stats.json)."""
        return asdict(self) | {"threshold": self.threshold}

    @classmethod
    def from_dict(cls, d: dict) -> MiningRecipe:
        """A recipe from `to_dict()` output (its derived `threshold` is ignored) or a recipe-file entry."""
        fields = {k: v for k, v in d.items() if k != "threshold"}
        if unknown := sorted(set(fields) - set(cls.__dataclass_fields__)):
            raise RecipeError(f"mining recipe {fields.get('name', '?')!r}: unknown field(s) {unknown}")
        return cls(**fields | ({"teachers": tuple(fields["teachers"])} if "teachers" in fields else {}))


def keep_rule(method: Method, param: float | None) -> pl.Expr:
    """The paper's filter of `method` (a `RULES` entry) as a polars expression over rank, score and pos_score."""
    if method not in RULES:
        raise RecipeError(f"unknown method {method!r}")
    return RULES[method].keep(param)


def filter_candidates(candidates: pl.DataFrame, positives: pl.DataFrame, recipe: MiningRecipe) -> pl.DataFrame:
    """Mark each candidate of the recipe's teachers `kept` or dropped by the rule, with its `pos_score`.

    A known positive of the query is removed outright (never a negative), whatever the candidate builder did; a
    query without a positive score under a teacher keeps nothing from it under the positive-aware rules."""
    cands = candidates.filter(pl.col("teacher").is_in(list(recipe.teachers)))
    known = positives.select("query_id", "doc_id").unique()
    cands = cands.join(known, on=["query_id", "doc_id"], how="anti")
    pos = positives.group_by("query_id", "teacher").agg(pl.col("score").min().alias("pos_score"))
    cands = cands.join(pos, on=["query_id", "teacher"], how="left")
    kept = keep_rule(recipe.method, recipe.threshold).fill_null(False)
    return cands.with_columns(kept=kept).sort("query_id", "teacher", "rank")


def sample_negatives(survivors: pl.DataFrame, recipe: MiningRecipe) -> pl.DataFrame:
    """Choose up to n survivors per (query, teacher): top-n, sampled top-k, or top-1 + sampled top-k.

    Sampling without replacement with probabilities softmax(score / T) is done with the Gumbel-top-k
    trick (take the n largest score / T + Gumbel noise), which is exactly sequential softmax sampling.
    Adds `teacher_slot` (1 = hardest chosen) and keeps rows ordered by it."""
    n, k = recipe.num_negatives, recipe.sample_k
    groups = ["query_id", "teacher"]
    df = survivors.sort("query_id", "teacher", "rank")
    df = df.with_columns(survivor_rank=pl.col("rank").rank("ordinal").over(groups))
    if recipe.sampling == "top":
        picked = df.filter(pl.col("survivor_rank") <= n)
    else:
        df = df.filter(pl.col("survivor_rank") <= k)
        rng = np.random.default_rng(recipe.seed)
        noise = rng.gumbel(size=df.height)
        key = pl.col("score").cast(pl.Float64) / recipe.temperature + pl.Series(noise)
        if recipe.sampling == "top1_sampled":
            key = pl.when(pl.col("survivor_rank") == 1).then(pl.lit(np.inf)).otherwise(key)
        df = df.with_columns(_key=key)
        df = df.with_columns(_draw=pl.col("_key").rank("ordinal", descending=True).over(groups))
        picked = df.filter(pl.col("_draw") <= n).drop("_key", "_draw")
    picked = picked.sort("query_id", "teacher", "rank")
    return picked.with_columns(teacher_slot=pl.col("rank").rank("ordinal").over(groups)).drop("survivor_rank")


def ensemble_negatives(picked: pl.DataFrame, recipe: MiningRecipe) -> pl.DataFrame:
    """Merge per-teacher picks into each query's final list of at most n negatives.

    cross: one teacher per query, chosen at random among those with picks.
    intra: teachers take turns (each one's hardest first), duplicates kept so agreement counts twice.
    intra_dedup: as intra, but a document already taken from another teacher is skipped."""
    n = recipe.num_negatives
    order = {t: i for i, t in enumerate(recipe.teachers)}
    df = picked.with_columns(_teacher_order=pl.col("teacher").replace_strict(order, return_dtype=pl.Int32))
    if len(recipe.teachers) > 1 and recipe.ensemble == "cross":
        available = df.select("query_id", "teacher", "_teacher_order").unique().sort("query_id", "_teacher_order")
        per_query = available.group_by("query_id", maintain_order=True).agg(pl.col("teacher"))
        rng = np.random.default_rng(recipe.seed + 1)
        chosen = [ts[int(rng.integers(len(ts)))] for ts in per_query["teacher"].to_list()]
        choice = pl.DataFrame({"query_id": per_query["query_id"], "teacher": chosen})
        df = df.join(choice, on=["query_id", "teacher"], how="semi")
    df = df.sort("query_id", "teacher_slot", "_teacher_order")
    if recipe.ensemble == "intra_dedup":
        df = df.unique(subset=["query_id", "doc_id"], keep="first", maintain_order=True)
    df = df.with_columns(slot=pl.int_range(1, pl.len() + 1).over("query_id").cast(pl.Int32))
    return df.filter(pl.col("slot") <= n).drop("_teacher_order")


@dataclass
class MiningResult:
    negatives: pl.DataFrame  # query_id, slot, doc_id, teacher, rank, score, pos_score
    filtered: pl.DataFrame  # every candidate with `kept` (for plots and re-tuning)
    stats: dict = field(default_factory=dict)


NEGATIVE_COLUMNS = ["query_id", "slot", "doc_id", "teacher", "rank", "score", "pos_score"]


def mine_hard_negatives(
    candidates: pl.DataFrame, positives: pl.DataFrame, recipe: MiningRecipe, *, query_ids: list[str] | None = None
) -> MiningResult:
    """Filter (paper method), sample and ensemble; count what each step dropped.

    `query_ids` are the training queries (default: those with a positive); a query that ends with fewer than n
    negatives is kept with fewer or dropped, per `recipe.short_queries`, and always counted; never padded."""
    filtered = filter_candidates(candidates, positives, recipe)
    picked = sample_negatives(filtered.filter("kept"), recipe)
    negatives = ensemble_negatives(picked, recipe).select(NEGATIVE_COLUMNS)
    if query_ids is None:
        query_ids = positives["query_id"].unique().sort().to_list()
    counts = negatives.group_by("query_id").len()
    all_q = pl.DataFrame({"query_id": query_ids}, schema={"query_id": pl.String})
    per_query = all_q.join(counts, on="query_id", how="left").with_columns(pl.col("len").fill_null(0))
    short = per_query.filter(pl.col("len") < recipe.num_negatives)
    if recipe.short_queries == "drop":
        negatives = negatives.join(short.select("query_id"), on="query_id", how="anti")
    by_rule = filtered.group_by("teacher").agg(candidates=pl.len(), dropped_by_rule=(~pl.col("kept")).sum())
    chosen = negatives.group_by("teacher").agg(negatives=pl.len(), mean_negative_score=pl.col("score").mean())
    per_teacher = by_rule.join(chosen, on="teacher", how="left").sort("teacher")
    # teachers' scores live on different scales (cosine vs BM25): one mean only when one teacher gave them all
    single_scale = negatives["teacher"].n_unique() == 1
    stats = {
        "recipe": recipe.to_dict(),
        "queries": len(query_ids),
        "queries_with_full_set": int(per_query.filter(pl.col("len") >= recipe.num_negatives).height),
        "queries_short": int(short.height),
        "queries_without_negative": int(per_query.filter(pl.col("len") == 0).height),
        "queries_dropped": int(short.height) if recipe.short_queries == "drop" else 0,
        "candidates": int(filtered.height),
        "candidates_dropped_by_rule": int((~filtered["kept"]).sum()),
        "per_teacher": per_teacher.to_dicts(),
        "negatives": int(negatives.height),
        "mean_negative_score": float(negatives["score"].mean()) if negatives.height and single_scale else None,
    }
    return MiningResult(negatives=negatives.sort("query_id", "slot"), filtered=filtered, stats=stats)


def training_positives(positives: pl.DataFrame, negatives: pl.DataFrame, short_queries: ShortPolicy) -> pl.DataFrame:
    """The (query, positive) pairs a student trains on and the exports hold. With `keep` every one (a query short of
    negatives trains with fewer, or with in-batch negatives only); with `drop` only those of the queries that kept
    their negatives: a dropped query leaves training, it does not train without its negatives."""
    if short_queries == "keep":
        return positives
    return positives.join(negatives.select("query_id").unique(), on="query_id", how="semi")


# Coverage of mined negatives: below these shares the student learns mostly from in-batch negatives
EMPTY_SHARE_ERROR = 0.5  # half the training queries or more got no mined negative
FULL_SHARE_WARN = 0.8  # fewer than 80% of the queries got all n negatives
COVERAGE_REMEDY = ("use a stronger teacher than the student (e.g. all-mpnet-base-v2), ensemble the teacher with "
                   "BM25 (teachers: [minilm, bm25]), widen candidate_lists top_k, or loosen the rule "
                   "(a lower percpos x or a smaller margin)")


def negative_coverage(stats: dict) -> dict:
    """How many training queries got mined negatives, with a level (ok / warn / error) and a message naming
    the share and the remedy. A positive-aware rule with a teacher no stronger than the student can leave most
    queries empty (the positive is not ranked above the hard candidates): silently in-batch-negatives training."""
    queries = max(int(stats["queries"]), 1)
    empty = stats["queries_without_negative"] / queries
    full = stats["queries_with_full_set"] / queries
    recipe = stats.get("recipe", {}).get("name", "?")
    level = "error" if empty >= EMPTY_SHARE_ERROR else "warn" if full < FULL_SHARE_WARN else "ok"
    message = (f"recipe {recipe!r}: {stats['queries_without_negative']}/{stats['queries']} training queries "
               f"({empty:.0%}) got no mined negative, {full:.0%} got all {stats['recipe'].get('num_negatives', '')}")
    if level != "ok":
        message += f"; remedy: {COVERAGE_REMEDY}"
    return {"level": level, "share_without_negative": round(empty, 4), "share_full": round(full, 4),
            "message": message}
