"""Power: a family comparison's minimum detectable effect (MDE), and what a target effect needs.

For the family test (``family``), SE^2 = (tau^2 + C / n) / K + V * sum_g 1 / S_g over K datasets
of about n items: C the per-item variance of a dataset's difference (item bootstrap), tau^2 =
s_d^2 - C / n the rest of its spread, V the pooled seed variance, S_g each trained design's
seeds; df min(K - 1, seed df). ``plan`` searches items, datasets or seeds, each changed alone.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from .family import combined_df, mde

MAX_ITEMS = 10_000_000
MAX_DATASETS = 10_000
MAX_SEEDS = 1_000


def mde_of(
    c: dict[str, Any],
    alpha: float,
    power: float,
    tests: int = 1,
    datasets: int | None = None,
    items: float | None = None,
    seeds: int | None = None,
) -> float:
    """The MDE for ``c`` with datasets, items or seeds per trained design changed (all None: as
    observed, which reproduces the test's own SE and df)."""
    if datasets is None and items is None and seeds is None:
        return mde(c["se"], c["df"] if c["df"] is not None else math.nan, alpha, power, tests)
    k = datasets or c["datasets"]
    c_item = c["per_item_var"]
    if items is not None and c_item is not None:
        var_ds = max(c["dataset_var"] - c_item / c["items"], 0.0) + c_item / items
    else:
        var_ds = c["dataset_var"]
    if k < 2:  # one dataset: the item bootstrap stands in for the spread over datasets
        c1 = c_item / (items or c["items"]) if c_item is not None else math.nan
        df1 = math.inf
    else:
        c1, df1 = var_ds / k, k - 1
    c2, df2 = 0.0, math.inf
    if c["seed_var"] is not None:
        c2 = c["seed_var"] * sum(1.0 / (seeds or c["seeds"][g]) for g in c["trained"])
        df2 = c["seed_df"] if seeds is None else max(c["seed_df"], len(c["trained"]) * (seeds - 1))
    return mde(math.sqrt(c1 + c2), float(combined_df(c1, df1, c2, df2)), alpha, power, tests)


def _smallest(lo: int, hi: int, fits: Any) -> int | None:
    """The smallest integer in [lo, hi] for which the monotone ``fits`` holds, None if none."""
    return lo + bisect.bisect_left(range(lo, hi), True, key=fits) if fits(hi) else None


def plan(
    c: dict[str, Any], target: float, alpha: float = 0.05, power: float = 0.8, tests: int = 1
) -> dict[str, Any]:
    """What detecting ``target`` (same unit as the scores) with ``power`` needs, for one of
    ``tests`` Holm-corrected comparisons: items per dataset, datasets or seeds per trained
    design, each changed alone; None where that knob alone cannot reach it."""

    def fits(**knob: Any) -> bool:
        value = mde_of(c, alpha, power, tests, **knob)
        return math.isfinite(value) and value <= target

    out: dict[str, Any] = {"target": target, "mde_now": mde_of(c, alpha, power, tests)}
    out["items"] = _smallest(1, MAX_ITEMS, lambda n: fits(items=n)) if c["per_item_var"] is not None else None
    out["datasets"] = _smallest(2, MAX_DATASETS, lambda k: fits(datasets=k))
    seedable = c["trained"] and c["seed_var"] is not None
    out["seeds"] = _smallest(1, MAX_SEEDS, lambda s: fits(seeds=s)) if seedable else None
    if not c["trained"]:
        out["seeds_note"] = "both are fixed checkpoints: seeds do not apply"
    elif c["seed_var"] is None:
        out["seeds_note"] = "seed variance unknown: no design has seed replicates (run >= 2 seeds)"
    return out
