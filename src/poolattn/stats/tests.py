"""Classical paired tests: Wilcoxon over datasets, sign-flip over items, Holm, effect size.

The Wilcoxon unit is a dataset, as in the paper (arXiv 2409.02727): with n datasets the exact
two-sided test cannot go below p = 2/2^n, which ``wilcoxon_floor`` reports so that a test
that could never reject is not read as a finding.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

CHUNK_ELEMENTS = 2_000_000  # resampled values held at once (memory bound on big datasets)


def rank_biserial(a: Sequence[float], b: Sequence[float]) -> float:
    """Matched-pairs rank-biserial correlation of ``a - b`` (Kerby 2014): (R+ - R-) / (R+ + R-),
    zero differences dropped (as Wilcoxon's ``zero_method="wilcox"``); 0 when all are zero."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    plus, minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def wilcoxon_paired(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Two-sided paired Wilcoxon signed-rank test of ``a`` vs ``b`` (scipy.stats.wilcoxon), with
    the rank-biserial effect size; p 1.0 and statistic NaN when every difference is zero."""
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
        "floor": wilcoxon_floor(n_nonzero),
    }


def wilcoxon_floor(n: int) -> float:
    """The smallest two-sided p the exact signed-rank test can give with ``n`` non-zero
    differences: 2 / 2^n (every difference of one sign), 1 when n = 0."""
    return 1.0 if n < 1 else min(1.0, 2.0 / 2**n)


def sign_flip_test(
    diffs: Sequence[np.ndarray], n_resamples: int = 2000, rng: np.random.Generator | None = None
) -> float:
    """Two-sided paired permutation p of the mean over strata (e.g. subsets) of the mean per-item
    difference ``diffs``, signs flipped within strata; exact when each item's values are exchangeable."""
    rng = rng if rng is not None else np.random.default_rng(0)
    arrays = [np.asarray(d, dtype=float) for d in diffs if np.size(d)]
    if not arrays or all(not np.any(d) for d in arrays):
        return 1.0
    observed = np.mean([d.mean() for d in arrays])
    flipped = np.zeros(n_resamples)
    for d in arrays:
        rows = max(1, CHUNK_ELEMENTS // d.size)
        for start in range(0, n_resamples, rows):
            signs = rng.integers(0, 2, size=(min(rows, n_resamples - start), d.size)) * 2 - 1
            flipped[start : start + signs.shape[0]] += (signs * d).mean(axis=1)
    return tail_pvalue(flipped / len(arrays), observed)


def tail_pvalue(null: np.ndarray, observed: float) -> float:
    """Two-sided resampling p: (1 + #{|T*| >= |T|}) / (1 + R), ``null`` the R draws of T*."""
    tol = 1e-12 * max(1.0, abs(observed))
    return float((1 + np.sum(np.abs(null) >= abs(observed) - tol)) / (1 + null.size))


def holm(pvalues: Sequence[float] | np.ndarray) -> Any:
    """Holm-Bonferroni adjusted p-values, in input order: a list for a 1-D sequence, else an array
    adjusted along its last axis (one family of tests per row, for calibration simulations)."""
    p = np.asarray(pvalues, dtype=float)
    m = p.shape[-1] if p.ndim else 0
    if m == 0:
        return [] if p.ndim <= 1 and not isinstance(pvalues, np.ndarray) else p.copy()
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    ranked = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
    adjusted = np.empty_like(ranked)
    np.put_along_axis(adjusted, order, ranked, axis=-1)
    return adjusted if isinstance(pvalues, np.ndarray) and p.ndim > 1 else adjusted.tolist()


def holm_by(
    rows: Sequence[dict[str, Any]],
    group: Callable[[dict[str, Any]], Any],
    key: str = "pvalue",
    out: str = "pvalue_holm",
) -> None:
    """Holm-adjust ``row[key]`` within each group of rows (``group(row)``), into ``row[out]``;
    rows whose p is None (no test possible) are left out and get None."""
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get(key) is None:
            row[out] = None
        else:
            groups[group(row)].append(row)
    for members in groups.values():
        for row, adjusted in zip(members, holm([r[key] for r in members]), strict=True):
            row[out] = adjusted
