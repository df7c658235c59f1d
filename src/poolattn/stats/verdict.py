"""One verdict in words per family and pair of designs, exactly one of three:

- **better**: the hierarchical bootstrap (datasets, items, seeds) rejects equality after Holm;
- **practically equivalent** within +-ROPE: the Bayesian signed-rank test gives P(equivalent)
  >= 0.95 *and* the 90% CI of the hierarchical bootstrap lies inside the ROPE (a TOST at 5%),
  so neither few datasets nor noisy items can produce the claim alone;
- **undecided**: neither; the text says which differences this data could have detected (MDE).

It never says "no difference" because a test failed to reject. When equivalence and a
significant difference both hold (a real but negligible gap), the verdict is equivalence and
the text names the gap. Equivalence also needs at least ``MIN_EQUIVALENCE_ITEMS`` items in
every dataset: on a handful of items two different models easily agree item for item, and a
bootstrap of identical values has no spread to doubt them.
"""

from __future__ import annotations

import math
from typing import Any

SCALE = 100.0
EQUIVALENCE_PROBABILITY = 0.95
MIN_EQUIVALENCE_ITEMS = 20
KINDS = ("better", "equivalent", "undecided")


def _pts(x: float) -> str:
    return f"{x * SCALE:.2f}"


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def decide(row: dict[str, Any], alpha: float, rope: float) -> dict[str, Any]:
    """The verdict of one family-level comparison row (with ``hierarchical`` and ``bayes``).

    ``rope`` is on the score scale (0.01 = 1 point on the x100 scale).
    """
    a, b = row["model_a"], row["model_b"]
    h, bayes = row["hierarchical"], row.get("bayes")
    diff = h["diff"]
    p_holm = h.get("pvalue_holm")
    significant = p_holm is not None and p_holm < alpha
    ci90 = h.get("ci90") or [math.nan, math.nan]
    inside = all(not math.isnan(x) for x in ci90) and -rope < ci90[0] and ci90[1] < rope
    p_eq = bayes["p_equivalent"] if bayes else 0.0
    method = h.get("method", "hierarchical bootstrap")
    test = (
        f"hierarchical bootstrap over {h.get('levels', 'datasets, items')}"
        if method == "hierarchical bootstrap"
        else method
    )
    few = row.get("min_items")
    enough = few is None or few >= MIN_EQUIVALENCE_ITEMS
    if inside and p_eq >= EQUIVALENCE_PROBABILITY and not enough and not significant:
        return {
            "kind": "undecided",
            "winner": None,
            "text": (
                f"undecided: {few} items in a dataset are too few to claim equivalence "
                f"(≥ {MIN_EQUIVALENCE_ITEMS} needed); observed {a} − {b} = {diff * SCALE:+.2f}"
            ),
        }
    if inside and p_eq >= EQUIVALENCE_PROBABILITY and enough:
        text = (
            f"{a} and {b} practically equivalent within ±{_pts(rope)} points: "
            f"P(equivalent) = {p_eq:.2f} (Bayesian signed-rank), 90% CI of {a} − {b} "
            f"[{_pts(ci90[0])}, {_pts(ci90[1])}]"
        )
        if significant:
            ahead = a if diff > 0 else b
            text += f"; {ahead} is ahead by {_pts(abs(diff))}, a gap inside the ROPE (Holm p = {_p(p_holm)})"
        return {"kind": "equivalent", "winner": None, "text": text}
    if significant:
        winner, loser = (a, b) if diff > 0 else (b, a)
        ci = h["ci95"] if diff > 0 else [-h["ci95"][1], -h["ci95"][0]]
        text = (
            f"{winner} better than {loser} by {_pts(abs(diff))} points "
            f"(95% CI [{_pts(ci[0])}, {_pts(ci[1])}]; {test}, "
            f"Holm p = {_p(p_holm)})"
        )
        return {"kind": "better", "winner": winner, "text": text}
    mde = h.get("mde")
    if mde is None or (isinstance(mde, float) and math.isnan(mde)):
        text = (
            "undecided: this data cannot measure its own noise (one dataset without item-level results "
            f"and one seed per design); observed {a} − {b} = {diff * SCALE:+.2f}"
        )
    else:
        text = f"undecided: only differences ≥ {_pts(mde)} points could be detected (observed {a} − {b} = {diff * SCALE:+.2f})"
    return {"kind": "undecided", "winner": None, "text": text}
