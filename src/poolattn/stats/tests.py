"""Paired tests over datasets: Wilcoxon signed-rank, Holm correction, effect size, bootstrap CI.

The unit of analysis is a dataset: two models are compared on the main scores of the same
datasets of one task family, as in the paper (arXiv 2409.02727).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats


def rank_biserial(a: Sequence[float], b: Sequence[float]) -> float:
    """Matched-pairs rank-biserial correlation of ``a - b`` (Kerby 2014): (R+ - R-) / (R+ + R-).

    Zero differences are dropped (as Wilcoxon's ``zero_method="wilcox"``); +1 means ``a``
    wins on every dataset, -1 that ``b`` does; 0 when every difference is zero.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    plus, minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def wilcoxon_paired(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Two-sided paired Wilcoxon signed-rank test of ``a`` vs ``b`` (scipy.stats.wilcoxon).

    Returns statistic, p-value, n, mean difference and the rank-biserial effect size. When
    every difference is zero the test is undefined; p is then 1.0 and statistic NaN.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired samples must be 1-D and of equal length, got {x.shape} and {y.shape}")
    diff = x - y
    n_nonzero = int(np.count_nonzero(diff))
    if n_nonzero == 0:
        statistic, pvalue = math.nan, 1.0
    else:
        res = stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
        statistic, pvalue = float(res.statistic), float(res.pvalue)
    return {
        "n": int(x.size),
        "n_nonzero": n_nonzero,
        "statistic": statistic,
        "pvalue": pvalue,
        "mean_diff": float(diff.mean()) if diff.size else math.nan,
        "rank_biserial": rank_biserial(x, y),
    }


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in input order (step-down, monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


def bootstrap_mean_ci(
    diffs: Sequence[float], confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean difference over datasets (scipy.stats.bootstrap).

    Resamples datasets; (nan, nan) with fewer than two datasets, a point when all are equal.
    """
    d = np.asarray(diffs, dtype=float)
    if d.size < 2:
        return (math.nan, math.nan)
    if np.all(d == d[0]):
        return (float(d[0]), float(d[0]))
    res = stats.bootstrap(
        (d,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))
