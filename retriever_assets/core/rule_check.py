"""An independent restatement of the paper's mining rules, one negative at a time in plain Python float64.

`core.mining` applies the rules as polars expressions over whole frames; this module says the same rules again
without polars so that the asset check and the tests never verify `keep_rule` with `keep_rule` itself.
"""

from __future__ import annotations

import math


def satisfies_rule(method: str, threshold: float | None, *, rank: int, score: float, pos_score: float | None) -> bool:
    """Whether one kept negative obeys its rule (NV-Retriever section 3; strict `<`, lowest positive as `p`).

    naive: always; shifted N: rank > N; abs t: s < t; marginpos m: s < p - m; percpos x: s < p - |p| (1 - x).
    A positive-aware rule (marginpos, percpos) without a positive score for the query keeps nothing.
    """
    s = float(score)
    if method == "naive":
        return True
    if method == "shifted":
        return int(rank) > int(threshold)
    if method == "abs":
        return s < float(threshold)
    if pos_score is None or (isinstance(pos_score, float) and math.isnan(pos_score)):
        return False
    p = float(pos_score)
    if method == "marginpos":
        return s < p - float(threshold)
    if method == "percpos":
        return s < p - abs(p) * (1.0 - float(threshold))
    raise ValueError(f"unknown mining method {method!r}")


def rule_violations(rows, method: str, threshold: float | None) -> list[dict]:
    """The negatives (dicts with rank, score, pos_score) that break their rule; empty when all obey it."""
    return [row for row in rows
            if not satisfies_rule(method, threshold, rank=row["rank"], score=row["score"], pos_score=row["pos_score"])]
