"""Paired resampling of items, seeds and datasets.

One ``DatasetReplicates`` per dataset holds, for every design, its observed score and ``B``
bootstrap replicates of it. Item positions are drawn once per dataset and shared by all
designs (so any two designs are paired item by item); the statistic (correlation, max-AP,
accuracy, mean nDCG, ...) is recomputed on every resample. Seeds are replicates of a design:
a design's score is the mean over its seed runs, and seed resampling is drawn once per design
for all datasets (a seed's runs are correlated across datasets). Seed deviations are scaled
by sqrt(S/(S-1)) so the bootstrap variance of a mean of S seeds is s^2/S, not (S-1)/S of it.

Family level (``hierarchical_test``): resample datasets, then items within each dataset, and
seeds. Resampling both levels naively counts the item noise twice (it is already inside the
spread of the dataset scores), so the dataset level resamples *shrunken* dataset effects
whose variance is the between-dataset variance tau^2 estimated by DerSimonian-Laird from the
item/seed variances (the residual bootstrap of Carpenter, Goldstein & Rasbash, 2003). With
no heterogeneity the test reduces to the item/seed variance; with strong heterogeneity it
approaches resampling datasets alone.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from .items import Entry
from .tests import sign_flip_test

N_RESAMPLES = 2000
Z_POWER = float(sps.norm.ppf(0.8))


def mde_factor(alpha: float = 0.05, power: float = 0.8) -> float:
    """(z_{1-alpha/2} + z_power): an effect this many standard errors away is detected with ``power``."""
    return float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))


def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and names, so results do not depend on processing order."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def seed_resamples(n_seeds: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, S) indices of seeds drawn with replacement (all zeros for a single seed)."""
    return rng.integers(0, n_seeds, size=(n_resamples, n_seeds))


@dataclass
class DatasetReplicates:
    """Observed and resampled scores of every design on one dataset."""

    task: str
    family: str
    designs: list[str]
    obs: dict[str, float]
    runs: dict[str, list[float]]
    item_rep: dict[str, np.ndarray]
    seed_dev: dict[str, np.ndarray]
    item_diffs: dict[str, list[np.ndarray]] | None = None  # per design, per entry: per-item values
    has_items: bool = False
    n_items: int = 0
    notes: list[str] = field(default_factory=list)

    def rep(self, design: str) -> np.ndarray:
        """Replicates of a design's score: item resampling plus seed resampling."""
        return self.item_rep[design] + self.seed_dev[design]


CHUNK_ELEMENTS = 2_000_000  # resampled item positions held at once (memory bound on big datasets)


def _index_chunks(seed: int, task: str, entry: int, n: int, n_resamples: int):  # noqa: ANN202 - generator
    """(first row, (rows, n) item positions) in chunks; the same for every design and run."""
    rows = max(1, min(n_resamples, CHUNK_ELEMENTS // max(n, 1)))
    for start in range(0, n_resamples, rows):
        rng = rng_for(seed, "items", task, str(entry), str(start))
        yield start, rng.integers(0, n, size=(min(rows, n_resamples - start), n))


def _entry_scores(
    entries: Sequence[Entry], task: str, seed: int, n_resamples: int
) -> tuple[float, np.ndarray]:
    """(score on all items, scores on each resample): the mean over entries, as mteb averages."""
    observed = float(np.mean([e.score() for e in entries]))
    replicated = np.empty((len(entries), n_resamples))
    for i, e in enumerate(entries):
        for start, idx in _index_chunks(seed, task, i, e.n, n_resamples):
            replicated[i, start : start + idx.shape[0]] = e.score(idx)
    return observed, replicated.mean(axis=0)


def build_replicates(
    task: str,
    family: str,
    runs: dict[str, list[float]],
    entries: dict[str, list[list[Entry]]] | None,
    seed_idx: dict[str, np.ndarray],
    *,
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
) -> DatasetReplicates:
    """Replicates of one dataset.

    Args:
        runs: per design, the main score of each of its seed runs (from mteb's results).
        entries: per design, per run, the aligned item entries (same items, same order for
            every run); None when item-level results are missing for some run.
        seed_idx: per design, the (B, S) seed resampling shared across datasets.
    """
    designs = list(runs)
    notes: list[str] = []
    scale = {g: math.sqrt(len(v) / (len(v) - 1)) if len(v) > 1 else 0.0 for g, v in runs.items()}
    obs: dict[str, float] = {}
    item_rep: dict[str, np.ndarray] = {}
    run_obs: dict[str, np.ndarray] = {}
    item_values: dict[str, list[np.ndarray]] | None = None
    n_items = 0
    if entries is not None:
        first = entries[designs[0]][0]
        rng = rng_for(seed, "redraw", task)
        n_items = sum(e.n for e in first)
        per_run_rep: dict[str, list[np.ndarray]] = {}
        for g in designs:
            scored = (_entry_scores(run, task, seed, n_resamples) for run in entries[g])
            observed, replicated = zip(*scored, strict=True)
            run_obs[g] = np.asarray(observed)
            per_run_rep[g] = list(replicated)
        # resamples where a statistic is undefined (a constant column, no positive label) are
        # replaced, for every design alike, by other resamples: the pairing is kept
        bad = np.zeros(n_resamples, dtype=bool)
        for reps in per_run_rep.values():
            for r in reps:
                bad |= ~np.isfinite(r)
        if bad.all():
            notes.append("no resample of the items gives a defined score: item level not used")
            entries = None
        else:
            if bad.any():
                fill = rng.choice(np.flatnonzero(~bad), size=int(bad.sum()))
                for reps in per_run_rep.values():
                    for r in reps:
                        r[bad] = r[fill]
                if bad.mean() > 0.05:
                    notes.append(
                        f"{bad.mean():.0%} of item resamples had an undefined score and were redrawn"
                    )
            for g in designs:
                obs[g] = float(run_obs[g].mean())
                item_rep[g] = np.mean(per_run_rep[g], axis=0)
            if all(e.is_mean for e in first):
                item_values = {
                    g: [
                        np.mean([run[i].item_values() for run in entries[g]], axis=0)
                        for i in range(len(first))
                    ]
                    for g in designs
                }
    if entries is None:
        for g in designs:
            run_obs[g] = np.asarray(runs[g], dtype=float)
            obs[g] = float(run_obs[g].mean())
            item_rep[g] = np.full(n_resamples, obs[g])
        n_items = 0
    seed_dev = {
        g: scale[g] * (run_obs[g][seed_idx[g]].mean(axis=1) - obs[g]) if scale[g] else np.zeros(n_resamples)
        for g in designs
    }
    return DatasetReplicates(
        task=task,
        family=family,
        designs=designs,
        obs=obs,
        runs={g: [float(x) for x in run_obs[g]] for g in designs},
        item_rep=item_rep,
        seed_dev=seed_dev,
        item_diffs=item_values,
        has_items=entries is not None,
        n_items=n_items,
        notes=notes,
    )


def varies(x: np.ndarray) -> bool:
    """True when replicates are not all equal (a constant array has no sampling variance)."""
    return bool(np.ptp(x) > 0)


def _p_centered(replicates: np.ndarray, observed: float) -> float | None:
    """Two-sided bootstrap p: how often the centred replicates reach the observed difference."""
    if not varies(replicates):
        return 1.0 if observed == 0 else None
    tol = 1e-12 * max(1.0, abs(observed))
    centred = replicates - replicates.mean()
    return float((1 + np.sum(np.abs(centred) >= abs(observed) - tol)) / (1 + replicates.size))


def paired_dataset_test(
    data: DatasetReplicates, a: str, b: str, *, seed: int = 0, alpha: float = 0.05, power: float = 0.8
) -> dict[str, object]:
    """Difference a - b on one dataset: 95% CI (paired bootstrap), p and the MDE.

    p is a paired sign-flip permutation test when the metric is a mean over items and both
    designs have one run; otherwise a bootstrap test (items and seeds resampled).
    """
    diff = data.obs[a] - data.obs[b]
    reps = data.rep(a) - data.rep(b)
    se = float(np.std(reps, ddof=1)) if varies(reps) else 0.0
    single = len(data.runs[a]) == 1 and len(data.runs[b]) == 1
    if data.item_diffs is not None and single:
        strata = [va - vb for va, vb in zip(data.item_diffs[a], data.item_diffs[b], strict=True)]
        p = sign_flip_test(strata, n_resamples=reps.size, rng=rng_for(seed, "flip", data.task, a, b))
        method = "sign-flip permutation over items"
    else:
        p = _p_centered(reps, diff)
        method = "paired bootstrap" + (" over items and seeds" if data.has_items else " over seeds")
        if not data.has_items and single:
            method = "none (no item-level results, one run each)"
    low, high = (float(x) for x in np.percentile(reps, [2.5, 97.5]))
    if not se > 0:
        low = high = diff if p is not None else math.nan
    if p is None:
        se = math.nan
    return {
        "task": data.task,
        "family": data.family,
        "model_a": a,
        "model_b": b,
        "diff": diff,
        "ci95": [low, high],
        "se": se,
        "pvalue": p,
        "method": method,
        "mde": mde_factor(alpha, power) * se if p is not None else None,
        "n_items": data.n_items,
    }


def dersimonian_laird(d: np.ndarray, v: np.ndarray) -> float:
    """Between-dataset variance tau^2 (method of moments, truncated at 0) from dataset
    differences ``d`` with within-dataset variances ``v`` (all > 0)."""
    w = 1.0 / v
    mean = np.sum(w * d) / np.sum(w)
    q = np.sum(w * (d - mean) ** 2)
    denom = np.sum(w) - np.sum(w**2) / np.sum(w)
    return float(max(0.0, (q - (d.size - 1)) / denom)) if denom > 0 else 0.0


def hierarchical_test(
    datasets: Sequence[DatasetReplicates],
    a: str,
    b: str,
    *,
    seed: int = 0,
    alpha: float = 0.05,
    power: float = 0.8,
) -> dict[str, object]:
    """Family mean difference a - b (unweighted over datasets): CI, p, SE, MDE, tau^2.

    Replicate b: D + mean over K datasets drawn with replacement of (shrunken dataset effect
    + that dataset's item deviation from an independent item resample) + the family's seed
    deviation at b. See the module docstring for why the dataset effects are shrunken.
    """
    k = len(datasets)
    if k == 0:
        raise ValueError("hierarchical_test: no datasets")
    if not any(ds.has_items for ds in datasets):
        return dataset_t_test(datasets, a, b, alpha=alpha, power=power)
    n_res = datasets[0].item_rep[a].size
    d = np.array([ds.obs[a] - ds.obs[b] for ds in datasets])
    item = np.stack([ds.item_rep[a] - ds.item_rep[b] for ds in datasets])  # (K, B)
    item = item - item.mean(axis=1, keepdims=True)
    seeds = np.stack([ds.seed_dev[a] - ds.seed_dev[b] for ds in datasets])  # (K, B)
    v = item.var(axis=1, ddof=1) + seeds.var(axis=1, ddof=1) if n_res > 1 else np.zeros(k)
    family_mean = float(d.mean())
    all_items = all(ds.has_items for ds in datasets)
    if k == 1:
        tau2, how = 0.0, "one dataset"
    elif all_items and np.all(v > 0):
        tau2, how = dersimonian_laird(d, v), "DerSimonian-Laird"
    elif all_items and np.any(v > 0):
        tau2, how = dersimonian_laird(d, np.maximum(v, v[v > 0].min() * 1e-3)), "DerSimonian-Laird"
    else:  # no item-level variance to separate: plain resampling of datasets
        tau2, how = float(np.var(d, ddof=1)), "dataset scores (no item-level results)"
    resid = d - family_mean
    spread = float(np.mean(resid**2))
    shrunk = resid * math.sqrt(tau2 / spread) if spread > 0 and tau2 > 0 else np.zeros(k)
    rng = rng_for(seed, "hierarchical", datasets[0].family, a, b)
    pick = rng.integers(0, k, size=(n_res, k))
    rep_idx = rng.integers(0, n_res, size=(n_res, k))
    cols = np.arange(n_res)[:, None]
    replicates = (
        family_mean
        + shrunk[pick].mean(axis=1)
        + item[pick, rep_idx].mean(axis=1)
        + seeds[pick, np.broadcast_to(cols, pick.shape)].mean(axis=1)
    )
    se = float(np.std(replicates, ddof=1)) if varies(replicates) else 0.0
    p = _p_centered(replicates, family_mean)
    if se > 0:
        ci95 = [float(x) for x in np.percentile(replicates, [2.5, 97.5])]
        ci90 = [float(x) for x in np.percentile(replicates, [5, 95])]
    else:
        ci95 = ci90 = [family_mean, family_mean] if p is not None else [math.nan, math.nan]
    return {
        "family": datasets[0].family,
        "model_a": a,
        "model_b": b,
        "n": k,
        "diff": family_mean,
        "ci95": ci95,
        "ci90": ci90,
        "se": se,
        "pvalue": p,
        "mde": mde_factor(alpha, power) * se if p is not None else None,
        "method": "hierarchical bootstrap",
        "tau2": tau2,
        "tau2_method": how,
        "item_var": float(np.mean(item.var(axis=1, ddof=1)) / k) if n_res > 1 else 0.0,
        "seed_var": float(np.var(seeds.mean(axis=0), ddof=1)) if n_res > 1 else 0.0,
        "levels": ", ".join(
            ["datasets"] + (["items"] if all_items else []) + (["seeds"] if np.any(seeds) else [])
        ),
    }


def design_family_ci(datasets: Sequence[DatasetReplicates], design: str) -> tuple[float, float, float]:
    """A design's family mean with a 95% CI over items and seeds (these datasets held fixed)."""
    mean = float(np.mean([ds.obs[design] for ds in datasets]))
    reps = np.mean([ds.rep(design) for ds in datasets], axis=0)
    if not varies(reps):
        return mean, mean, mean
    low, high = np.percentile(reps, [2.5, 97.5])
    return mean, float(low), float(high)


def dataset_t_test(
    datasets: Sequence[DatasetReplicates], a: str, b: str, *, alpha: float = 0.05, power: float = 0.8
) -> dict[str, object]:
    """The family test when no dataset has item-level results: a one-sample t-test of the
    dataset differences (a bootstrap over a handful of datasets has too few distinct
    resamples and too narrow intervals). Same fields as ``hierarchical_test``."""
    d = np.array([ds.obs[a] - ds.obs[b] for ds in datasets])
    k = d.size
    mean = float(d.mean())
    out: dict[str, object] = {
        "family": datasets[0].family,
        "model_a": a,
        "model_b": b,
        "n": k,
        "diff": mean,
        "method": "t-test over datasets (no item-level results)",
        "tau2": float(np.var(d, ddof=1)) if k > 1 else 0.0,
        "tau2_method": "dataset scores (no item-level results)",
        "item_var": 0.0,
        "seed_var": 0.0,
        "levels": "datasets (t-test; no item-level results)",
    }
    if k < 2:
        return {
            **out,
            "ci95": [math.nan, math.nan],
            "ci90": [math.nan, math.nan],
            "se": math.nan,
            "pvalue": None,
            "mde": None,
        }
    se = float(np.std(d, ddof=1) / math.sqrt(k))
    df = k - 1
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
        return {**out, "ci95": [mean, mean], "ci90": [mean, mean], "se": 0.0, "pvalue": p, "mde": 0.0}
    t95, t90 = sps.t.ppf(0.975, df), sps.t.ppf(0.95, df)
    p = float(2 * sps.t.sf(abs(mean) / se, df))
    mde = float((sps.t.ppf(1 - alpha / 2, df) + sps.t.ppf(power, df)) * se)
    return {
        **out,
        "ci95": [mean - t95 * se, mean + t95 * se],
        "ci90": [mean - t90 * se, mean + t90 * se],
        "se": se,
        "pvalue": p,
        "mde": mde,
    }
