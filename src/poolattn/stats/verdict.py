"""One verdict in words per family and pair of designs: *better* (family t-test after Holm, seed
variance included), *checkpoints* (the same without seed replicates: two models, not designs),
*equivalent* (TOST within the ROPE after Holm, and Bayesian P(equivalent) >= 0.95) or
*undecided* with the MDE. A failed test never reads as "no difference"; nothing is claimed
with fewer than ``MIN_ITEMS`` items in a dataset (scores that coarse agree or differ by chance).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..eval_results import SCALE
from .report import _pts, format_p

EQUIVALENCE_PROBABILITY = 0.95
MIN_ITEMS = 20

# ROPE per family in points (x100): 1 for metrics deterministic given the embeddings; 2 where the
# evaluator's own randomness (few-shot classifiers, k-means) already moves scores a point or two.
DEFAULT_ROPE_POINTS: dict[str, float] = {
    **dict.fromkeys(("Retrieval", "Reranking", "STS", "Summarization", "PairClassification"), 1.0),
    "BitextMining": 1.0,
    **dict.fromkeys(("Classification", "MultilabelClassification", "Clustering"), 2.0),
}
DEFAULT_ROPE = 1.0  # points, for a family not listed


def rope_for(family: str, rope: float | Mapping[str, float] | None) -> float:
    """The ROPE of ``family`` on the score scale (0.01 = 1 point): ``rope`` as one number for
    every family, or a mapping of family -> ROPE ("*" = every other family) over the defaults."""
    if isinstance(rope, (int, float)):
        return float(rope)
    rope = rope or {}
    return float(rope.get(family, rope.get("*", DEFAULT_ROPE_POINTS.get(family, DEFAULT_ROPE) / SCALE)))


def metric_span(metric: str) -> float:
    """The largest possible difference of a metric on the score scale: 2 for correlations
    (-1..1), 1 for the rest (0..1)."""
    name = metric.lower()
    return 2.0 if "spearman" in name or "pearson" in name else 1.0


def detectable(mde: float | None, span: float) -> str:
    """What the data could detect, as a clause: the MDE, or that it cannot decide at all."""
    if mde is None or math.isnan(mde):
        return "this data cannot measure its own noise (one dataset without item-level results)"
    if mde >= span:
        return (
            f"this data cannot decide at all (even the largest possible difference, {_pts(span)} points, "
            "would not be detected reliably)"
        )
    return f"only differences ≥ {_pts(mde)} points could be detected"


def _test_text(h: dict[str, Any]) -> str:
    df = h.get("df")
    return h["method"] + (f", df {df:.1f}" if df is not None and math.isfinite(df) else "")


def decide(row: dict[str, Any], alpha: float, rope: float) -> dict[str, Any]:
    """The verdict of one family-level comparison row (with ``hierarchical`` = the family test,
    its Holm-adjusted p and TOST p, and ``bayes``); ``rope`` on the score scale."""
    a, b = row["model_a"], row["model_b"]
    h, bayes = row["hierarchical"], row.get("bayes")
    diff = h["diff"]
    observed = f"observed {a} − {b} = {diff * SCALE:+.2f}"
    sources = "accounts for " + "; ".join(h.get("sources", []))
    p_holm, tost_holm = h.get("pvalue_holm"), h.get("pvalue_tost_holm")
    ci95 = h.get("ci95") or [math.nan, math.nan]
    excludes_zero = ci95[0] > 0 or ci95[1] < 0  # same distribution as p: a guard, never binding
    blocked = h.get("blocked")
    significant = p_holm is not None and p_holm < alpha and excludes_zero and not blocked
    p_eq = bayes["p_equivalent"] if bayes else 0.0
    equivalent = (
        tost_holm is not None and tost_holm < alpha and p_eq >= EQUIVALENCE_PROBABILITY and not blocked
    )
    few = row.get("min_items")
    if few is not None and few < MIN_ITEMS and (significant or equivalent):
        text = (
            f"undecided: {few} items in a dataset are too few to decide either way "
            f"(≥ {MIN_ITEMS} needed in every dataset); {observed}"
        )
        return {"kind": "undecided", "winner": None, "text": text}
    checkpoints = h.get("scope") == "checkpoints"
    if equivalent:
        ci90 = h["ci90"]
        caveat = " (as these checkpoints: one seed per design, seed-to-seed variance not measured)"
        text = (
            f"{a} and {b} practically equivalent within ±{_pts(rope)} points{caveat if checkpoints else ''}"
            f": TOST Holm p = {format_p(tost_holm)} ({_test_text(h)}), 90% CI of {a} − {b} "
            f"[{_pts(ci90[0])}, {_pts(ci90[1])}], P(equivalent) = {p_eq:.2f} (Bayesian signed-rank)"
        )
        if significant:
            ahead = a if diff > 0 else b
            text += f"; {ahead} is ahead by {_pts(abs(diff))}, a gap inside the ROPE (Holm p = {format_p(p_holm)})"
        return {"kind": "equivalent", "winner": None, "text": f"{text}; {sources}"}
    if significant:
        winner, loser = (a, b) if diff > 0 else (b, a)
        ci = ci95 if diff > 0 else [-ci95[1], -ci95[0]]
        evidence = f"95% CI [{_pts(ci[0])}, {_pts(ci[1])}]; {_test_text(h)}, Holm p = {format_p(p_holm)}"
        if checkpoints:
            text = (
                f"these two checkpoints differ: {winner} ahead of {loser} by {_pts(abs(diff))} points ({evidence}); "
                "not a design-level claim: no design has seed replicates to measure seed-to-seed variance"
            )
            return {"kind": "checkpoints", "winner": None, "ahead": winner, "text": f"{text}; {sources}"}
        text = f"{winner} better than {loser} by {_pts(abs(diff))} points ({evidence}); {sources}"
        return {"kind": "better", "winner": winner, "text": text}
    if blocked:
        return {"kind": "undecided", "winner": None, "text": f"undecided: {blocked}; {observed}"}
    clause = detectable(h.get("mde"), row.get("span", 1.0))
    return {"kind": "undecided", "winner": None, "text": f"undecided: {clause} ({observed})"}
