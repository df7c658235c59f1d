"""Paired resampling of items, seeds and datasets: per dataset, each design's score and B replicates.

Item positions are drawn once per dataset and shared by all designs (paired item by item), the
statistic recomputed on every resample. A design's score is the mean over its seed runs; seeds
are drawn once per design for all datasets (a seed's runs are correlated across datasets), and
their deviations scaled by sqrt(S/(S-1)) so the bootstrap variance of a mean of S seeds is s^2/S.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .family import SeedVariance, combined_df, mde_factor, t_interval, t_over_datasets, t_pvalue, tost_pvalue
from .items import Entry
from .tests import CHUNK_ELEMENTS, sign_flip_test, tail_pvalue

N_RESAMPLES = 2000


def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and names, so results do not depend on processing order."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


@dataclass
class DatasetReplicates:
    """Observed and resampled scores of every design on one dataset."""

    task: str
    family: str
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


def _entry_scores(
    entries: Sequence[Entry], task: str, seed: int, n_resamples: int
) -> tuple[float, np.ndarray]:
    """(score on all items, scores on each resample): the mean over entries, as mteb averages.
    Item positions are drawn in chunks seeded by name, the same for every design and run."""
    observed = float(np.mean([e.score() for e in entries]))
    replicated = np.empty((len(entries), n_resamples))
    for i, e in enumerate(entries):
        rows = max(1, min(n_resamples, CHUNK_ELEMENTS // max(e.n, 1)))
        for start in range(0, n_resamples, rows):
            rng = rng_for(seed, "items", task, str(i), str(start))
            idx = rng.integers(0, e.n, size=(min(rows, n_resamples - start), e.n))
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
    """Replicates of one dataset from ``runs`` (per design, mteb's score of each seed run),
    ``entries`` (per design, per run, the aligned item entries; None without item-level
    results) and ``seed_idx`` (per design, the (B, S) seed resampling shared across datasets)."""
    designs = list(runs)
    notes: list[str] = []
    scale = {g: math.sqrt(len(v) / (len(v) - 1)) if len(v) > 1 else 0.0 for g, v in runs.items()}
    item_rep: dict[str, np.ndarray] = {}
    run_obs: dict[str, np.ndarray] = {}
    item_values: dict[str, list[np.ndarray]] | None = None
    if entries is not None:
        first = entries[designs[0]][0]
        per_run_rep: dict[str, list[np.ndarray]] = {}
        for g in designs:
            scored = (_entry_scores(run, task, seed, n_resamples) for run in entries[g])
            observed, replicated = zip(*scored, strict=True)
            run_obs[g] = np.asarray(observed)
            per_run_rep[g] = list(replicated)
        # undefined resamples (constant column, no positive label): redrawn alike for every design
        bad = ~np.all([np.isfinite(r) for reps in per_run_rep.values() for r in reps], axis=0)
        if bad.all():
            notes.append("no resample of the items gives a defined score: item level not used")
            entries = None
        else:
            if bad.any():
                fill = rng_for(seed, "redraw", task).choice(np.flatnonzero(~bad), size=int(bad.sum()))
                for reps in per_run_rep.values():
                    for r in reps:
                        r[bad] = r[fill]
                if bad.mean() > 0.05:
                    notes.append(
                        f"{bad.mean():.0%} of item resamples had an undefined score and were redrawn"
                    )
            item_rep = {g: np.mean(per_run_rep[g], axis=0) for g in designs}
            if all(e.is_mean for e in first):
                item_values = {  # per entry, the per-item values averaged over the design's runs
                    g: [np.mean([e.item_values() for e in es], 0) for es in zip(*entries[g], strict=True)]
                    for g in designs
                }
    if entries is None:
        run_obs = {g: np.asarray(runs[g], dtype=float) for g in designs}
        item_rep = {g: np.full(n_resamples, run_obs[g].mean()) for g in designs}
    obs = {g: float(run_obs[g].mean()) for g in designs}
    seed_dev = {
        g: scale[g] * (run_obs[g][seed_idx[g]].mean(axis=1) - obs[g]) if scale[g] else np.zeros(n_resamples)
        for g in designs
    }
    return DatasetReplicates(
        task=task,
        family=family,
        obs=obs,
        runs={g: [float(x) for x in run_obs[g]] for g in designs},
        item_rep=item_rep,
        seed_dev=seed_dev,
        item_diffs=item_values,
        has_items=entries is not None,
        n_items=sum(e.n for e in entries[designs[0]][0]) if entries is not None else 0,
        notes=notes,
    )


def varies(x: np.ndarray) -> bool:
    """True when replicates are not all equal (a constant array has no sampling variance)."""
    return bool(np.ptp(x) > 0)


def ci95(replicates: np.ndarray) -> list[float] | None:
    """The 95% percentile interval of bootstrap replicates; None when they do not vary."""
    return [float(x) for x in np.percentile(replicates, [2.5, 97.5])] if varies(replicates) else None


# Items share the evaluator's own randomness (k-means runs, few-shot classifiers): item tests
# are conditional on that evaluator run.
CONDITIONAL_FAMILIES = ("Clustering", "Classification", "MultilabelClassification")


def paired_dataset_test(
    data: DatasetReplicates, a: str, b: str, *, seed: int = 0, alpha: float = 0.05, power: float = 0.8
) -> dict[str, object]:
    """Difference a - b on one dataset: 95% CI (paired bootstrap), p and the MDE; p by sign-flip
    permutation when the metric is a mean over items and each design has one run, else bootstrap."""
    diff = data.obs[a] - data.obs[b]
    reps = data.rep(a) - data.rep(b)
    se = float(np.std(reps, ddof=1)) if varies(reps) else 0.0
    single = len(data.runs[a]) == 1 and len(data.runs[b]) == 1
    if data.item_diffs is not None and single:
        strata = [va - vb for va, vb in zip(data.item_diffs[a], data.item_diffs[b], strict=True)]
        p = sign_flip_test(strata, n_resamples=reps.size, rng=rng_for(seed, "flip", data.task, a, b))
        method = "sign-flip permutation over items"
    else:
        p = tail_pvalue(reps - reps.mean(), diff) if varies(reps) else (1.0 if diff == 0 else None)
        method = "paired bootstrap" + (" over items and seeds" if data.has_items else " over seeds")
        if not data.has_items and single:
            method = "none (no item-level results, one run each)"
    if data.has_items and data.family in CONDITIONAL_FAMILIES:
        method += ", conditional on the evaluator's runs (items share its randomness)"
    ci = ci95(reps) or ([diff, diff] if p is not None else [math.nan, math.nan])
    if p is None:
        se = math.nan
    return {
        "task": data.task,
        "family": data.family,
        "model_a": a,
        "model_b": b,
        "diff": diff,
        "ci95": ci,
        "se": se,
        "pvalue": p,
        "method": method,
        "mde": mde_factor(alpha, power) * se if p is not None else None,
        "n_items": data.n_items,
    }


def family_test(
    datasets: Sequence[DatasetReplicates],
    a: str,
    b: str,
    *,
    seed_var: SeedVariance | None = None,
    fixed: frozenset[str] | set[str] = frozenset(),
    rope: float = 0.01,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Family mean difference a - b (unweighted over datasets): the ``family`` t-test, its CIs,
    p, the TOST p for +-``rope`` and the variance sources it accounts for (the MDE is added
    once the Holm family size is known); and the variance components ``power`` plans with.
    ``fixed`` designs have no training seed. With one dataset the item bootstrap of that
    dataset stands in for the spread over datasets."""
    k = len(datasets)
    family = datasets[0].family
    d = np.array([ds.obs[a] - ds.obs[b] for ds in datasets])
    seeds = {g: len(datasets[0].runs[g]) for g in (a, b)}
    trained = [g for g in (a, b) if g not in fixed]
    weight = sum(1.0 / seeds[g] for g in trained)
    seeded = seed_var is not None and weight > 0
    seed_term = seed_var.var * weight if seeded else 0.0
    seed_df = seed_var.df if seeded else math.inf
    all_items = all(ds.has_items for ds in datasets)
    item_var = [
        float(np.var(ds.item_rep[a] - ds.item_rep[b], ddof=1))
        if ds.has_items and ds.item_rep[a].size > 1
        else 0.0
        for ds in datasets
    ]
    sources = [f"the spread over {k} datasets (item, evaluator and per-dataset seed noise inside it)"]
    blocked = None
    if k >= 2:
        mean, se, df = (float(x) for x in t_over_datasets(d, seed_term, seed_df))
        method = f"t-test over {k} datasets"
    elif all_items:
        c1 = item_var[0]
        mean, se = float(d[0]), math.sqrt(c1 + seed_term)
        df = float(combined_df(c1, math.inf, seed_term, seed_df))
        method = "one dataset: paired item bootstrap"
        sources = ["items of this one dataset (conditional on it)"]
        if family in CONDITIONAL_FAMILIES:
            blocked = (
                "one dataset, whose evaluator's randomness (k-means runs / classifiers) is not resampled"
            )
    else:
        mean, se, df = float(d[0]), math.nan, math.nan
        method = "none (one dataset without item-level results)"
    if seeded:
        sources.append(
            f"seed-to-seed variance pooled over {', '.join(seed_var.designs)} "
            f"(SD {math.sqrt(seed_var.var) * 100:.2f}, df {seed_var.df})"
        )
    elif weight == 0:  # fixed checkpoints: no training seed to vary
        sources.append("no seed term (fixed checkpoints)")
    else:
        sources.append("not seed-to-seed variance (no design has seed replicates)")
    scope = "checkpoints" if not seeded and weight > 0 else "design"
    defined = math.isfinite(se)
    if defined:
        p = float(t_pvalue(mean, se, df))
        ci95 = [float(x) for x in t_interval(mean, se, df, 0.95)]
        ci90 = [float(x) for x in t_interval(mean, se, df, 0.90)]
        tost = float(tost_pvalue(mean, se, df, rope))
    else:
        ci95 = ci90 = [math.nan, math.nan]
        p = tost = None
    resid = float(np.var(d, ddof=1)) if k > 1 else 0.0
    per_item = [v * ds.n_items for v, ds in zip(item_var, datasets, strict=True) if ds.has_items]
    test = {
        "family": family,
        "model_a": a,
        "model_b": b,
        "n": k,
        "diff": mean,
        "ci95": ci95,
        "ci90": ci90,
        "se": se if defined else math.nan,
        "df": df if defined else None,
        "pvalue": p,
        "pvalue_tost": tost,
        "rope": rope,
        "method": method,
        "scope": scope,
        "blocked": blocked,
        "sources": sources,
        "levels": "; ".join(sources),
        "dataset_var": resid,
        "item_var": float(np.mean(item_var)) if all_items else 0.0,
        "seed_term": seed_term,
        "seed_df": seed_df if seeded else None,
    }
    components = {
        "datasets": k,
        "items": float(np.mean([ds.n_items for ds in datasets])) if per_item else None,
        "dataset_var": resid,
        "per_item_var": float(np.mean(per_item)) if per_item else None,
        "seed_var": seed_term / weight if seeded else None,
        "seed_df": seed_df if seeded else None,
        "seeds": seeds,
        "trained": trained,
        "se": test["se"],
        "df": test["df"],
    }
    return test, components
