"""The paired tests equal scipy's, baycomp's and hand-worked values (issue 11, acceptance 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from poolattn.stats import (
    bayesian_signed_rank,
    friedman,
    holm,
    holm_by,
    nemenyi,
    nemenyi_cd,
    rank_biserial,
    sign_flip_test,
    wilcoxon_floor,
    wilcoxon_paired,
)

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


# --------------------------------------------------------------------------- issue 11, acceptance 3
@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 8])
def test_wilcoxon_floor_is_the_exact_two_sided_minimum(n: int) -> None:
    a = np.arange(1, n + 1) / 10
    b = a - np.arange(1, n + 1) / 100  # A ahead on every dataset, distinct gaps: the extreme case
    res = wilcoxon_paired(a, b)
    assert res["floor"] == pytest.approx(2 / 2**n)
    assert res["pvalue"] == pytest.approx(res["floor"])  # scipy's exact p reaches the floor, no lower
    assert wilcoxon_floor(n) == pytest.approx(2 / 2**n)
    assert (wilcoxon_floor(n) < 0.05) == (n >= 6)


def test_holm_per_family_and_global_hand_worked() -> None:
    rows = [
        {"family": "STS", "pvalue": 0.01},
        {"family": "STS", "pvalue": 0.04},
        {"family": "Retrieval", "pvalue": 0.03},
        {"family": "Retrieval", "pvalue": None},  # no test possible: left out of the correction
    ]
    holm_by(rows, lambda r: r["family"])
    assert [r["pvalue_holm"] for r in rows[:3]] == pytest.approx([0.02, 0.04, 0.03])
    assert rows[3]["pvalue_holm"] is None
    holm_by(rows, lambda r: "all")
    # global over 3 tests: .01*3 = .03, .03*2 = .06, .04*1 = .04 -> monotone .06
    assert [r["pvalue_holm"] for r in rows[:3]] == pytest.approx([0.03, 0.06, 0.06])


def test_bayesian_signed_rank_equals_baycomp_and_closed_form() -> None:
    import baycomp

    x = np.array([0.50, 0.60, 0.70, 0.55, 0.62, 0.71, 0.80, 0.40, 0.30, 0.50])
    y = x + np.array([0.01, -0.02, 0.03, 0.005, 0.02, 0.01, -0.01, 0.02, 0.03, 0.0])
    ours = bayesian_signed_rank(x, y, 0.01, nsamples=20000, seed=3)
    ref = baycomp.SignedRankTest.probs(x, y, rope=0.01, nsamples=20000, random_state=3)
    assert (ours.p_a_better, ours.p_equivalent, ours.p_b_better) == pytest.approx(ref, abs=1e-12)
    # one dataset with B ahead by d, prior 0.5 at 0: with r < d < 2r, B wins the posterior when the
    # Dirichlet weight w of d has w^2 > 1/2, w ~ Beta(1, 0.5): P = (1 - 1/sqrt 2)^0.5 = 0.5412;
    # with d > 2r, when the prior's weight u has u^2 < 1/2, u ~ Beta(0.5, 1): P = 2^-0.25 = 0.8409
    mid = bayesian_signed_rank([0.0], [0.015], 0.01, nsamples=200000, seed=1)
    far = bayesian_signed_rank([0.0], [0.03], 0.01, nsamples=200000, seed=1)
    assert mid.p_b_better == pytest.approx((1 - 2**-0.5) ** 0.5, abs=0.005)
    assert far.p_b_better == pytest.approx(2**-0.25, abs=0.005)
    same = bayesian_signed_rank(x, x, 0.01, nsamples=1000)
    assert same.p_equivalent == 1.0


def test_friedman_equals_scipy_and_nemenyi_cd_equals_demsar() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((7, 4))
    scores[0, 1] = scores[0, 2]  # a tie: scipy's tie correction must match
    ours = friedman(scores)
    ref = stats.friedmanchisquare(*scores.T)
    assert ours["statistic"] == pytest.approx(ref.statistic) and ours["pvalue"] == pytest.approx(ref.pvalue)
    # Demšar (2006), Table 5: q_0.05 = 2.569 for k = 4
    assert nemenyi_cd(4, 7) == pytest.approx(2.569 * np.sqrt(4 * 5 / (6 * 7)), abs=1e-3)
    result = nemenyi(scores, ["a", "b", "c", "d"])
    assert result["ranks"]["a"] == pytest.approx(stats.rankdata(-scores, axis=1)[:, 0].mean())
    assert 0 <= result["pvalues"]["a"]["d"] <= 1


def test_friedman_does_not_reject_when_every_design_ties_everywhere() -> None:
    """All-tied ranks carry no evidence: p = 1 (scipy's NaN once read as F = inf, "rejects")."""
    scores = np.tile(np.array([[0.5], [0.7], [0.2]]), (1, 4))
    result = friedman(scores)
    assert result["statistic"] == 0.0 and result["pvalue"] == 1.0
    assert result["iman_davenport_f"] == 0.0 and result["pvalue_f"] == 1.0


def test_sign_flip_is_exact_and_sided() -> None:
    rng = np.random.default_rng(1)
    assert sign_flip_test([np.zeros(10)]) == 1.0
    big = sign_flip_test([np.full(30, 0.1) + rng.normal(0, 0.01, 30)], n_resamples=2000, rng=rng)
    assert big == pytest.approx(1 / 2001)  # no flip reaches an all-positive mean
    null = [sign_flip_test([rng.normal(0, 1, 40)], n_resamples=200, rng=rng) for _ in range(300)]
    assert 0.02 <= np.mean(np.array(null) < 0.05) <= 0.09
