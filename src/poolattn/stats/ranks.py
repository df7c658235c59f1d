"""All designs of a family at once (Demšar, JMLR 2006): Friedman, Nemenyi post-hoc, critical
difference. Ranks are per dataset, 1 = best (highest score), ties averaged."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats


def friedman(scores: np.ndarray) -> dict[str, float]:
    """Friedman chi-square (scipy, tie-corrected) over datasets (rows) x designs (columns), and
    the Iman-Davenport F variant Demšar recommends."""
    scores = np.asarray(scores, dtype=float)
    n, k = scores.shape
    if n < 2 or k < 3:
        raise ValueError(f"Friedman needs >= 2 datasets and >= 3 designs, got {n} x {k}")
    if all(len(set(row)) == 1 for row in scores.tolist()):
        chi2, p = 0.0, 1.0  # every design tied on every dataset: no rank differs (scipy gives NaN)
    else:
        res = stats.friedmanchisquare(*scores.T)
        chi2, p = float(res.statistic), float(res.pvalue)
    denom = n * (k - 1) - chi2
    f = (n - 1) * chi2 / denom if denom > 0 else math.inf
    p_f = float(stats.f.sf(f, k - 1, (k - 1) * (n - 1))) if math.isfinite(f) else 0.0
    return {
        "statistic": float(chi2),
        "pvalue": p,
        "iman_davenport_f": float(f),
        "pvalue_f": p_f,
        "n": n,
        "k": k,
    }


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Critical difference of mean ranks for the Nemenyi test: q_alpha * sqrt(k(k+1)/(6n)),
    q_alpha the studentized range quantile / sqrt(2) (Demšar 2006, Table 5)."""
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6.0 * n)))


def nemenyi(scores: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Nemenyi p-values between every pair (scikit-posthocs), mean ranks and the CD."""
    import scikit_posthocs as sp

    scores = np.asarray(scores, dtype=float)
    pvalues = sp.posthoc_nemenyi_friedman(scores)
    pvalues.index = pvalues.columns = list(names)
    ranks = stats.rankdata(-scores, axis=1).mean(axis=0)  # per design, 1 = best
    return {
        "ranks": {name: float(r) for name, r in zip(names, ranks, strict=True)},
        "pvalues": {a: {b: float(pvalues.loc[a, b]) for b in names} for a in names},
        "cd": nemenyi_cd(len(names), scores.shape[0]),
    }
