"""Acceptance 3 (part): the paired tests equal scipy's and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from poolattn.stats import bootstrap_mean_ci, holm, rank_biserial, wilcoxon_paired

A = [0.71, 0.64, 0.80, 0.55, 0.62, 0.90, 0.47, 0.68]
B = [0.69, 0.66, 0.74, 0.50, 0.61, 0.82, 0.49, 0.60]


def test_wilcoxon_equals_scipy_on_fixed_data() -> None:
    ours = wilcoxon_paired(A, B)
    ref = stats.wilcoxon(A, B)
    assert ours["statistic"] == pytest.approx(ref.statistic)
    assert ours["pvalue"] == pytest.approx(ref.pvalue)
    assert ours["n"] == 8 and ours["mean_diff"] == pytest.approx(np.mean(np.subtract(A, B)))


def test_wilcoxon_hand_worked_exact() -> None:
    # six datasets, A better on all with distinct gaps: W = 0, exact two-sided p = 2 / 2**6
    a = [0.6, 0.7, 0.8, 0.9, 0.5, 0.4]
    b = [x - d for x, d in zip(a, [0.01, 0.02, 0.03, 0.04, 0.05, 0.06], strict=True)]
    res = wilcoxon_paired(a, b)
    assert res["statistic"] == 0
    assert res["pvalue"] == pytest.approx(2 / 64)
    assert res["rank_biserial"] == pytest.approx(1.0)


def test_all_equal_is_not_significant() -> None:
    res = wilcoxon_paired([0.5] * 5, [0.5] * 5)
    assert res["pvalue"] == 1.0 and math.isnan(res["statistic"]) and res["rank_biserial"] == 0.0


def test_rank_biserial_hand_worked() -> None:
    # d = [1, -2, 3, 4]: ranks 1..4, R+ = 8, R- = 2 -> (8 - 2) / 10
    assert rank_biserial([1, 0, 3, 4], [0, 2, 0, 0]) == pytest.approx(0.6)
    assert rank_biserial(B, A) == pytest.approx(-rank_biserial(A, B))


def test_holm_hand_worked() -> None:
    # sorted p: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> monotone .06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_bootstrap_ci_contains_mean_and_is_deterministic() -> None:
    diffs = np.subtract(A, B)
    low, high = bootstrap_mean_ci(diffs, n_resamples=2000, seed=1)
    assert low < diffs.mean() < high
    assert (low, high) == bootstrap_mean_ci(diffs, n_resamples=2000, seed=1)
    assert all(math.isnan(x) for x in bootstrap_mean_ci([0.1]))
