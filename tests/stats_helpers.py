"""Results directories with item-level results, made up for the statistics tests.

``write_item_results`` writes what ``poolattn eval`` writes (run.json, one mteb-style task
JSON and one ``<Task>.items.json`` per dataset) from per-item values, so a comparison can be
built in milliseconds with a known truth.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from poolattn.stats.items import DatasetItems, Entry

Values = Callable[[str, int, np.random.Generator], np.ndarray]


def write_item_results(
    root: Path,
    design: str,
    families: dict[str, int],
    values: Values,
    *,
    seed: int = 0,
    sampling: dict | None = None,
) -> Path:
    """A results dir whose dataset ``t`` (``<Family><i>``) has per-item values ``values(t, i, rng)``.

    Every dataset is a mean-type entry (like retrieval's per-query nDCG), so its main score is
    the mean of its values.
    """
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    tasks = {}
    for family, n in families.items():
        for i in range(n):
            name = f"{family}{i}"
            v = np.asarray(values(name, i, rng), dtype=float)
            entry = Entry("mean", [f"q{j}" for j in range(v.size)], {"values": v.tolist()})
            entry.main_score = float(v.mean())
            items = DatasetItems(name, family, "ndcg_at_10", [entry], main_score=entry.main_score)
            (root / f"{name}.items.json").write_text(json.dumps(items.to_dict()))
            (root / f"{name}.json").write_text(
                json.dumps(
                    {
                        "task_name": name,
                        "scores": {"test": [{"hf_subset": "default", "main_score": entry.main_score}]},
                    }
                )
            )
            tasks[name] = {
                "file": f"{name}.json",
                "items": f"{name}.items.json",
                "family": family,
                "main_score_name": "ndcg_at_10",
                "main_score": entry.main_score,
                "sampling": sampling
                or {"max_items": v.size, "kept": v.size, "total": 10 * v.size, "unit": "queries"},
            }
    run = {
        "model": {"name": f"poolattn/{design}", "design": design, "fingerprint": f"{design}-{seed}"},
        "tasks": tasks,
    }
    (root / "run.json").write_text(json.dumps(run))
    return root


def base_values(n_items: int) -> Values:
    """Item difficulties shared by every design: each item's expected score, fixed per dataset."""

    def difficulty(task: str, i: int) -> np.ndarray:
        return np.random.default_rng([i, len(task), sum(map(ord, task))]).uniform(0.2, 0.8, n_items)

    return difficulty  # type: ignore[return-value]


def noisy(n_items: int, shift: float = 0.0, noise: float = 0.15) -> Values:
    """Per-item values: shared difficulty + ``shift`` + independent noise of this run."""
    difficulty = base_values(n_items)

    def values(task: str, i: int, rng: np.random.Generator) -> np.ndarray:
        return difficulty(task, i) + shift + rng.normal(0.0, noise, n_items)  # type: ignore[call-arg]

    return values
