"""Issue 11, acceptance 2: calibration of the per-dataset and the hierarchical family test.

Seeded simulation, seconds: two designs with equal expected scores and item-level noise
(each item has a difficulty both designs share, plus independent noise per design). Under
the null each test rejects in at most alpha + 0.03 of 500 simulations; with a planted effect
equal to the MDE the tests report (their mean over the null simulations) the rejection rate
is 0.8 +- 0.1.
"""

from __future__ import annotations

import numpy as np
import pytest

from poolattn.stats.bootstrap import build_replicates, hierarchical_test, paired_dataset_test
from poolattn.stats.items import Entry

ALPHA = 0.05
SIMS = 500
RESAMPLES = 400
ITEMS = 60
DATASETS = 6
NO_SEEDS = {"a": np.zeros((RESAMPLES, 1), dtype=int), "b": np.zeros((RESAMPLES, 1), dtype=int)}


def simulate(rng: np.random.Generator, effect: float, datasets: int) -> list:
    """Replicates of ``datasets`` datasets where design a is ahead by ``effect`` in truth."""
    out = []
    ids = [str(i) for i in range(ITEMS)]
    for j in range(datasets):
        difficulty = rng.uniform(0.2, 0.8, ITEMS)
        va = difficulty + effect + rng.normal(0, 0.15, ITEMS)
        vb = difficulty + rng.normal(0, 0.15, ITEMS)
        entries = {
            "a": [[Entry("mean", ids, {"values": va.tolist()})]],
            "b": [[Entry("mean", ids, {"values": vb.tolist()})]],
        }
        runs = {"a": [float(va.mean())], "b": [float(vb.mean())]}
        seed = int(rng.integers(2**31))
        out.append(build_replicates(f"t{j}", "F", runs, entries, NO_SEEDS, seed=seed, n_resamples=RESAMPLES))
    return out


def rejection_rate(test, datasets: int, effect: float, seed: int) -> tuple[float, float]:
    """(share of SIMS simulations with p < alpha, mean reported MDE)."""
    rng = np.random.default_rng(seed)
    rejected, mdes = 0, []
    for s in range(SIMS):
        result = test(simulate(rng, effect, datasets), s)
        rejected += result["pvalue"] < ALPHA
        mdes.append(result["mde"])
    return rejected / SIMS, float(np.mean(mdes))


def per_dataset(reps: list, s: int) -> dict:
    return paired_dataset_test(reps[0], "a", "b", seed=s)


def family(reps: list, s: int) -> dict:
    return hierarchical_test(reps, "a", "b", seed=s)


@pytest.mark.parametrize(
    ("test", "datasets"), [(per_dataset, 1), (family, DATASETS)], ids=["dataset", "family"]
)
def test_null_rejects_at_most_alpha_and_mde_gives_80_percent_power(test, datasets: int) -> None:
    null_rate, mde = rejection_rate(test, datasets, 0.0, seed=1)
    assert null_rate <= ALPHA + 0.03
    power, _ = rejection_rate(test, datasets, mde, seed=2)
    assert 0.7 <= power <= 0.9, (power, mde)
