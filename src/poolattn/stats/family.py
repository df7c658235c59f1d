"""The family verdict's test: a t-test over per-dataset differences, with seeds, on small K.

With the 3-7 datasets of an MTEB family a bootstrap over datasets or a random-effects test
with tau^2 treated as known rejects a true null 2-4x too often (issue 22). The dataset is the
unit of a family claim, so D = mean_k d_k gets a t reference on K - 1 df: the spread of the
d_k holds heterogeneity, item, evaluator and per-dataset seed noise. A training seed moves a
design on every dataset at once, which that spread misses: the seed variance of a family mean,
pooled over the designs with replicates, is added for each trained design (V / S_g) on
min(K - 1, seed df) df (``combined_df``). Vectorised over leading axes for the calibration
simulations.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as sps

Array = np.ndarray


@dataclass(frozen=True)
class SeedVariance:
    """Seed-to-seed variance of a family mean, pooled over the designs with replicates."""

    var: float
    df: int
    designs: tuple[str, ...]


def pooled_seed_variance(family_means: Sequence[Array]) -> tuple[Array, Array]:
    """(pooled variance, df) of seed-replicated family means: one (..., S_g) array per design;
    designs with one seed contribute nothing. Variance NaN and df 0 when none has two seeds."""
    num, df = 0.0, 0
    for m in family_means:
        m = np.asarray(m, dtype=float)
        s = m.shape[-1]
        if s > 1:
            num = num + (s - 1) * m.var(axis=-1, ddof=1)
            df += s - 1
    if df == 0:
        return np.asarray(math.nan), np.asarray(0)
    return np.asarray(num / df), np.asarray(df)


def combined_df(c1: Array, df1: Array | float, c2: Array, df2: Array | float) -> Array:
    """Degrees of freedom of c1 + c2 (variance estimates on ``df1``, ``df2``): min(df1, df2) when
    c2 > 0 (Hsu), else df1. Welch-Satterthwaite grows the df exactly when the few seeds
    underestimate their variance: 9-11% false "better" at a nominal 5% (test_stats_calibration)."""
    c2 = np.asarray(c2, dtype=float)
    return np.asarray(np.where(c2 > 0, np.minimum(df1, df2), df1), dtype=float)


def t_over_datasets(
    d: Array, seed_term: Array | float = 0.0, seed_df: Array | float = math.inf
) -> tuple[Array, Array, Array]:
    """(mean, SE, df) of the family mean of per-dataset differences ``d`` (..., K).

    SE^2 = s_d^2 / K + seed_term on ``combined_df`` degrees of freedom (K - 1 for the datasets,
    ``seed_df`` for the pooled seed variance). K = 1 gives SE and df NaN."""
    d = np.asarray(d, dtype=float)
    k = d.shape[-1]
    mean = d.mean(axis=-1)
    if k < 2:
        nan = np.full(mean.shape, math.nan)
        return mean, nan, nan
    c1 = d.var(axis=-1, ddof=1) / k
    c2 = np.broadcast_to(np.asarray(seed_term, dtype=float), c1.shape)
    df = combined_df(c1, k - 1, c2, seed_df)
    return mean, np.sqrt(c1 + c2), df


def t_pvalue(mean: Array, se: Array, df: Array) -> Array:
    """Two-sided p of mean = 0; 1 when mean = 0 = SE, 0 when mean != 0 = SE, NaN when SE is NaN."""
    mean, se, df = (np.asarray(x, dtype=float) for x in (mean, se, df))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = 2 * sps.t.sf(np.abs(mean) / se, df)
    p = np.where(se == 0, np.where(mean == 0, 1.0, 0.0), p)
    return np.asarray(p, dtype=float)


def t_interval(mean: Array, se: Array, df: Array, level: float) -> tuple[Array, Array]:
    """Two-sided ``level`` interval from the same t distribution as ``t_pvalue``: it excludes 0
    exactly when p < 1 - level."""
    q = np.where(np.asarray(se) == 0, 0.0, sps.t.ppf(0.5 + level / 2, np.where(np.isnan(df), 1, df)))
    return np.asarray(mean - q * se), np.asarray(mean + q * se)


def tost_pvalue(mean: Array, se: Array, df: Array, rope: Array | float) -> Array:
    """Two one-sided tests of |true difference| >= rope: max of the two one-sided p-values
    (equivalence at level alpha when it is < alpha); 0/1 when SE is 0."""
    mean, se, df = (np.asarray(x, dtype=float) for x in (mean, se, df))
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = sps.t.sf((mean + rope) / se, df)
        upper = sps.t.cdf((mean - rope) / se, df)
    p = np.maximum(lower, upper)
    p = np.where(se == 0, np.where(np.abs(mean) < rope, 0.0, 1.0), p)
    return np.asarray(p, dtype=float)


def c4(df: float) -> float:
    """E[s] / sigma for a variance estimate on ``df`` degrees of freedom (1 when df is infinite)."""
    if not math.isfinite(df):
        return 1.0
    return math.sqrt(2.0 / df) * math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2))


@functools.lru_cache(maxsize=4096)
def mde_factor(alpha: float = 0.05, power: float = 0.8, df: float = math.inf) -> float:
    """How many (true) standard errors an effect must be for a two-sided t-test at ``alpha`` on
    ``df`` degrees of freedom to reject with probability ``power`` (noncentral t; normal when
    df is infinite)."""
    if not math.isfinite(df):
        return float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))
    crit = float(sps.t.ppf(1 - alpha / 2, df))

    def short(ncp: float) -> float:
        return float(sps.nct.sf(crit, df, ncp)) - power  # the other tail is below alpha/2: ignored

    high = 1.0
    while short(high) < 0:
        high *= 2
        if high > 1e6:
            return math.inf
    return float(optimize.brentq(short, 0.0, high, xtol=1e-6))


def mde(se: float, df: float, alpha: float, power: float, tests: int = 1) -> float:
    """Minimum detectable effect of one of ``tests`` Holm-corrected t-tests: the effect detected
    with ``power`` at the strictest Holm step (alpha / tests), SE unbiased by c4(df) so that the
    power at the reported MDE is the nominal one (NaN when SE or df is undefined)."""
    if se is None or not math.isfinite(se) or not df or not df > 0:
        return math.nan
    if se == 0:
        return 0.0
    key = round(float(df), 1) if math.isfinite(df) and df < 1000 else math.inf  # cache-friendly
    return mde_factor(alpha / max(tests, 1), power, key) * se / c4(key)
