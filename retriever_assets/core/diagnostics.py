"""Teacher diagnostics: is a teacher good enough to mine positive-aware negatives with?

NV-Retriever's gains come from teachers stronger than the student. A teacher that does not rank the labelled positive
above the hard candidates makes the positive-aware rules (marginpos, percpos) drop nearly everything, and training
falls back to in-batch negatives. These figures come from the candidate lists alone (no extra encoding).
"""

from __future__ import annotations

import math

import polars as pl

from retriever_assets.core.mining import RULES, MiningRecipe, filter_candidates

WEAK_EMPTY_SHARE = 0.5  # a paper-default rule leaving this share of queries without a negative: a weak teacher


def positive_rank_shares(positives: pl.DataFrame, query_ids: list[str], cutoffs=(1, 10, 30)) -> dict[str, float]:
    """Share of training queries whose best-ranked positive is within the teacher's top-N (positives' `rank` is the
    1-based position in the full ranking, null when below the fetched window)."""
    best = positives.group_by("query_id").agg(pl.col("rank").min().alias("best"))
    ranks = dict(best.iter_rows())
    n = max(len(query_ids), 1)
    return {f"share_positive_in_top_{c}": round(sum(1 for q in query_ids if (ranks.get(q) or 10**9) <= c) / n, 4)
            for c in cutoffs}


def train_ndcg_at_10(positives: pl.DataFrame, query_ids: list[str]) -> float:
    """The teacher's own nDCG@10 on the training queries with binary relevance, from the positives' ranks."""
    by_query = positives.group_by("query_id").agg(pl.col("rank"))
    ranks = {q: [r for r in rs if r is not None] for q, rs in by_query.iter_rows()}
    counts = dict(positives.group_by("query_id").len().iter_rows())
    total = 0.0
    for q in query_ids:
        dcg = sum(1 / math.log2(r + 1) for r in ranks.get(q, []) if r <= 10)
        ideal = sum(1 / math.log2(i + 2) for i in range(min(counts.get(q, 0), 10)))
        total += dcg / ideal if ideal else 0.0
    return round(total / max(len(query_ids), 1), 4)


def empty_share_by_rule(candidates: pl.DataFrame, positives: pl.DataFrame, teacher: str, score_kind: str,
                        query_ids: list[str]) -> dict[str, float]:
    """Share of training queries each rule (paper default) would leave without any mined negative."""
    shares = {}
    for name, rule in RULES.items():
        if rule.cosine_only and score_kind != "cosine":  # refused for BM25 and dot-product teachers
            continue
        recipe = MiningRecipe(name=f"diag-{name}", teachers=(teacher,), method=name)
        # one teacher, top sampling: a query gets a negative exactly when some candidate survives the rule
        with_survivor = set(filter_candidates(candidates, positives, recipe).filter("kept")["query_id"].unique())
        shares[name] = round(sum(1 for q in query_ids if q not in with_survivor) / max(len(query_ids), 1), 4)
    return shares


def teacher_diagnostics(candidates: pl.DataFrame, positives: pl.DataFrame, query_ids: list[str],
                        score_kinds: dict[str, str]) -> list[dict]:
    """One row per teacher: positive-rank shares, train nDCG@10, empty share per rule, and a verdict with remedy."""
    rows = []
    for teacher, kind in score_kinds.items():
        c = candidates.filter(pl.col("teacher") == teacher)
        p = positives.filter(pl.col("teacher") == teacher)
        empty = empty_share_by_rule(c, p, teacher, kind, query_ids)
        row = {"teacher": teacher, **positive_rank_shares(p, query_ids),
               "train_ndcg_at_10": train_ndcg_at_10(p, query_ids), **{f"empty_share_{k}": v for k, v in empty.items()}}
        worst = max((v for k, v in empty.items() if k in ("marginpos", "percpos")), default=0.0)
        row["verdict"] = "ok" if worst < WEAK_EMPTY_SHARE else (
            f"weak: a positive-aware rule leaves {worst:.0%} of training queries without a negative; use a stronger "
            "teacher than the student (e.g. all-mpnet-base-v2), ensemble it with BM25, or widen top_k")
        rows.append(row)
    return rows
