"""A plain-language summary written from the comparison's numbers, and nothing else.

It names the best design per task family, says whether each trained design beats the
untrained baseline, and says which differences are significant (Holm-corrected Wilcoxon)
or that a family has too few datasets to test.
"""

from __future__ import annotations

from typing import Any

UNTRAINED_PREFIX = "untrained-"


def _best(means: dict[str, float], names: list[str]) -> tuple[str, float]:
    name = max(names, key=lambda n: means[n])
    return name, means[name]


def summarise(comparison: dict[str, Any], names: list[str]) -> list[str]:
    """Markdown bullet lines summarising ``comparison`` (the dict returned by ``stats.compare``)."""
    families: dict[str, Any] = comparison["families"]
    trained = [n for n in names if not n.startswith(UNTRAINED_PREFIX)]
    baselines = [n for n in names if n.startswith(UNTRAINED_PREFIX)]
    lines: list[str] = []
    if not families:
        return ["- The runs share no evaluated dataset; nothing can be concluded."]
    for family, info in families.items():
        means = info["means"]
        pool = trained or names
        best, score = _best(means, pool)
        runner_up = [n for n in pool if n != best]
        gap = ""
        if runner_up:
            second, second_score = _best(means, runner_up)
            gap = f", ahead of {second} ({second_score:.4f}) by {score - second_score:.4f}"
        lines.append(
            f"- **{family}** ({info['n']} dataset{'s' if info['n'] != 1 else ''}): "
            f"best trained design {best} ({score:.4f}){gap}."
        )
        for base in baselines:
            beaten = [n for n in trained if means[n] > means[base]]
            lines.append(
                f"  - {len(beaten)} of {len(trained)} trained designs beat {base} ({means[base]:.4f})"
                + ("." if len(beaten) in (0, len(trained)) else f": {', '.join(beaten)}.")
            )
        if not info["tested"]:
            lines.append(
                f"  - Not tested for significance: {info['n']} dataset(s), fewer than the "
                f"{comparison['min_datasets']} the rule requires; the differences above are descriptive only."
            )
            continue
        rows = [t for t in comparison["tests"] if t["family"] == family]
        significant = [t for t in rows if t["significant"]]
        if not significant:
            lines.append(
                f"  - No pairwise difference is significant after Holm correction "
                f"(alpha {comparison['alpha']}, {len(rows)} comparisons)."
            )
        for t in significant:
            winner, loser = (
                (t["model_a"], t["model_b"]) if t["mean_diff"] > 0 else (t["model_b"], t["model_a"])
            )
            lines.append(
                f"  - Significant: {winner} > {loser} (mean difference {abs(t['mean_diff']):.4f}, "
                f"Holm p = {t['pvalue_holm']:.3g}, rank-biserial {abs(t['rank_biserial']):.2f})."
            )
    if any(info["n"] < comparison["min_datasets"] for info in families.values()):
        lines.append(
            "- With this many datasets per family and this training budget, most differences cannot be "
            "called significant; treat the rankings as indicative and run a larger grid (more "
            "datasets, steps and seeds) before drawing conclusions."
        )
    return lines
