"""Power: a family comparison's minimum detectable effect (MDE), and what a target effect needs.

The family mean difference of two designs over K datasets of about n items each, with S_g
seed runs of design g, has variance (from the components the hierarchical test measures)

    SE^2 = tau^2 / K  +  C / (n K)  +  sum_g sigma_g^2 / S_g

tau^2 the between-dataset variance of the difference, C the per-item variance of a dataset's
difference (its bootstrap variance times its item count, averaged over datasets), sigma_g^2
the seed-to-seed variance of design g's family mean. The MDE at power 1 - beta and two-sided
alpha is (z_{1-alpha/2} + z_{1-beta}) * SE; ``plan`` solves it for n, K or S.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .bootstrap import DatasetReplicates, mde_factor


def components(datasets: Sequence[DatasetReplicates], a: str, b: str, tau2: float) -> dict[str, Any]:
    """The variance components of the family difference a - b measured on ``datasets``."""
    k = len(datasets)
    per_item = [
        float(np.var(ds.item_rep[a] - ds.item_rep[b], ddof=1)) * ds.n_items for ds in datasets if ds.has_items
    ]
    seed_var: dict[str, float | None] = {}
    seeds: dict[str, int] = {}
    for g in (a, b):
        runs = np.array([ds.runs[g] for ds in datasets])  # (K, S)
        seeds[g] = runs.shape[1]
        seed_var[g] = float(np.var(runs.mean(axis=0), ddof=1)) if runs.shape[1] > 1 else None
    return {
        "datasets": k,
        "items": float(np.mean([ds.n_items for ds in datasets])) if per_item else None,
        "tau2": tau2,
        "per_item_var": float(np.mean(per_item)) if per_item else None,
        "seed_var": seed_var,
        "seeds": seeds,
    }


def se_of(
    c: dict[str, Any], datasets: float | None = None, items: float | None = None, seeds: float | None = None
) -> float:
    """SE of the family difference for a design of the experiment (defaults: as observed).

    Unknown seed variances (one seed) count as 0: the result is then a lower bound."""
    k = datasets or c["datasets"]
    var = c["tau2"] / k
    if c["per_item_var"] is not None:
        var += c["per_item_var"] / ((items or c["items"]) * k)
    for g, sv in c["seed_var"].items():
        if sv is not None:
            var += sv / (seeds or c["seeds"][g])
    return math.sqrt(var)


def plan(c: dict[str, Any], target: float, alpha: float = 0.05, power: float = 0.8) -> dict[str, Any]:
    """What detecting ``target`` (same unit as the scores) needs: items per dataset, datasets
    or seeds per design, each changed alone; None where that knob alone cannot reach it."""
    factor = mde_factor(alpha, power)
    budget = (target / factor) ** 2
    k, n = c["datasets"], c["items"]
    seed_term = sum(sv / c["seeds"][g] for g, sv in c["seed_var"].items() if sv is not None)
    seed_total = sum(sv for sv in c["seed_var"].values() if sv is not None)
    item_term = c["per_item_var"] / (n * k) if c["per_item_var"] is not None else 0.0
    out: dict[str, Any] = {"target": target, "mde_now": factor * se_of(c)}
    rest = budget - c["tau2"] / k - seed_term
    out["items"] = (
        math.ceil(c["per_item_var"] / (k * rest)) if c["per_item_var"] is not None and rest > 0 else None
    )
    rest = budget - seed_term
    per_dataset = c["tau2"] + (c["per_item_var"] / n if c["per_item_var"] is not None else 0.0)
    out["datasets"] = (
        math.ceil(per_dataset / rest) if rest > 0 and per_dataset > 0 else (k if rest > 0 else None)
    )
    rest = budget - c["tau2"] / k - item_term
    if any(sv is None for sv in c["seed_var"].values()):
        out["seeds"] = None
        out["seeds_note"] = "seed variance unknown: a design has one seed (run >= 2 seeds to measure it)"
    else:
        out["seeds"] = (
            math.ceil(seed_total / rest) if rest > 0 and seed_total > 0 else (1 if rest > 0 else None)
        )
    return out
