"""Bayesian signed-rank test with a region of practical equivalence (Benavoli et al., JMLR 2017).

``baycomp.SignedRankTest`` with the same Dirichlet draws for the same ``seed`` (hence the same
numbers), vectorised so a report with dozens of pairs stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SignedRankPosterior:
    """P(A better), P(practically equivalent), P(B better) for one pair, over datasets."""

    p_a_better: float
    p_equivalent: float
    p_b_better: float
    rope: float
    n: int


def _heaviside(a: np.ndarray, threshold: float) -> np.ndarray:
    return (a > threshold).astype(float) + 0.5 * (a == threshold).astype(float)


def bayesian_signed_rank(
    a: Sequence[float],
    b: Sequence[float],
    rope: float,
    *,
    prior: float = 0.5,
    nsamples: int = 50000,
    seed: int = 0,
) -> SignedRankPosterior:
    """P(``a`` better), P(within ``rope``), P(``b`` better) from scores on the same datasets
    (higher = better): ``baycomp.SignedRankTest.probs(a, b, rope, prior=prior,
    nsamples=nsamples, random_state=seed)`` read as (left, rope, right)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"paired samples must be 1-D and of equal length, got {x.shape} and {y.shape}")
    if rope < 0:
        raise ValueError(f"rope: must be >= 0, got {rope}")
    diff = np.hstack(([0.0], y - x))
    sums = diff[:, None] + diff[None, :]
    weights = np.ones(diff.size)
    weights[0] = prior
    draws = np.random.RandomState(seed).dirichlet(weights, nsamples)
    if rope > 0:
        below, above = _heaviside(-sums, 2 * rope), _heaviside(sums, 2 * rope)
    else:
        above = _heaviside(sums, 0.0)
        below = 1.0 - above
    left = np.einsum("si,ij,sj->s", draws, below, draws)
    right = np.einsum("si,ij,sj->s", draws, above, draws)
    if rope > 0:
        samples = np.stack([left, 1.0 - left - right, right], axis=1)
        counts = np.bincount(np.argmax(samples, axis=1), minlength=3) / nsamples
        p_left, p_rope, p_right = (float(c) for c in counts)
    else:  # without a ROPE baycomp compares P(a better) with P(b better) only
        samples = np.stack([1.0 - right, right], axis=1)
        counts = np.bincount(np.argmax(samples, axis=1), minlength=2) / nsamples
        p_left, p_rope, p_right = float(counts[0]), 0.0, float(counts[1])
    return SignedRankPosterior(p_left, p_rope, p_right, rope, int(x.size))
