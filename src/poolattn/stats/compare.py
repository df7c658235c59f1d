"""Compare results directories: per-family tables and paired significance tests.

Models are results directories written by ``poolattn eval``; each is named after its
design. Datasets not evaluated by every model are dropped (with a warning naming them),
families with fewer than ``min_datasets`` datasets are reported but not tested (the
paper's rule: more than 4), and Holm's correction runs over every test performed.
"""

from __future__ import annotations

import itertools
import json
import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .tests import bootstrap_mean_ci, holm, wilcoxon_paired

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
ALPHA = 0.05


class ResultsError(ValueError):
    """A results directory or file is missing, empty or corrupt; the message names the file."""


@dataclass
class ModelResults:
    """One model's main scores by task, with the family and sampling of each task."""

    name: str
    directory: str
    fingerprint: str | None
    design: str | None
    scores: dict[str, float] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise ResultsError(f"{path}: missing")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ResultsError(f"{path}: empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: corrupt JSON ({exc.msg} at line {exc.lineno})") from exc


def _task_main_score(path: Path, splits: Sequence[str] | None = None) -> float:
    data = _read_json(path)
    try:
        values = [
            float(entry["main_score"])
            for split, entries in data["scores"].items()
            if not splits or split in splits
            for entry in entries
        ]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ResultsError(f"{path}: not an mteb task result (no scores/main_score: {exc})") from exc
    if not values:
        raise ResultsError(f"{path}: no scores")
    return float(np.mean(values))


def load_results(directory: str | Path) -> ModelResults:
    """Read ``run.json`` and every task file it lists; scores come from the task files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultsError(f"{directory}: not a results directory")
    run = _read_json(directory / RUN_FILE)
    try:
        model, tasks = run["model"], run["tasks"]
    except (KeyError, TypeError) as exc:
        raise ResultsError(f"{directory / RUN_FILE}: corrupt run file (missing {exc})") from exc
    if not tasks:
        raise ResultsError(f"{directory / RUN_FILE}: lists no tasks")
    result = ModelResults(
        name=str(model.get("design") or model.get("name") or directory.name),
        directory=str(directory),
        fingerprint=model.get("fingerprint"),
        design=model.get("design"),
        settings=run.get("settings", {}),
    )
    for task, info in tasks.items():
        result.scores[task] = _task_main_score(directory / info["file"])
        result.families[task] = info["family"]
        result.metrics[task] = info.get("main_score_name", "")
        result.sampling[task] = info.get("sampling")
    return result


def _unique_names(models: list[ModelResults]) -> None:
    counts = defaultdict(int)
    for m in models:
        counts[m.name] += 1
    for m in models:
        if counts[m.name] > 1:
            m.name = f"{m.name} ({Path(m.directory).name})"


def compare_models(
    models: list[ModelResults],
    min_datasets: int = 5,
    alpha: float = ALPHA,
    bootstrap: bool = True,
    n_resamples: int = 9999,
) -> dict[str, Any]:
    """Per-family means, per-dataset scores and pairwise tests (Holm-corrected) of ``models``."""
    if len(models) < 2:
        raise ValueError("compare needs at least two results directories")
    _unique_names(models)
    common = set(models[0].scores).intersection(*(m.scores for m in models[1:]))
    dropped = {m.name: sorted(set(m.scores) - common) for m in models if set(m.scores) - common}
    if dropped:
        text = "; ".join(f"{name}: {', '.join(tasks)}" for name, tasks in dropped.items())
        warnings.warn(
            f"comparing on the {len(common)} datasets all models share; dropped {text}", stacklevel=2
        )
    if not common:
        raise ValueError("the results share no dataset")
    mismatched = sorted(
        t for t in common if len({json.dumps(m.sampling[t], sort_keys=True) for m in models}) > 1
    )
    if mismatched:
        warnings.warn(f"down-sampling differs between models on: {', '.join(mismatched)}", stacklevel=2)

    family_of = {t: models[0].families[t] for t in common}
    by_family: dict[str, list[str]] = defaultdict(list)
    for task in sorted(common):
        by_family[family_of[task]].append(task)

    families: dict[str, Any] = {}
    tests: list[dict[str, Any]] = []
    for family, tasks in sorted(by_family.items()):
        means = {m.name: float(np.mean([m.scores[t] for t in tasks])) for m in models}
        tested = len(tasks) >= min_datasets
        families[family] = {"datasets": tasks, "n": len(tasks), "means": means, "tested": tested}
        if not tested:
            continue
        for a, b in itertools.combinations(models, 2):
            xa, xb = [a.scores[t] for t in tasks], [b.scores[t] for t in tasks]
            row = {"family": family, "model_a": a.name, "model_b": b.name, **wilcoxon_paired(xa, xb)}
            if bootstrap:
                low, high = bootstrap_mean_ci(np.subtract(xa, xb), n_resamples=n_resamples)
                row["ci95_mean_diff"] = [low, high]
            tests.append(row)
    for row, adj in zip(tests, holm([r["pvalue"] for r in tests]), strict=True):
        row["pvalue_holm"] = adj
        row["significant"] = bool(adj < alpha)

    datasets = {
        t: {
            "family": family_of[t],
            "metric": models[0].metrics[t],
            "scores": {m.name: m.scores[t] for m in models},
            "sampling": models[0].sampling[t],
        }
        for t in sorted(common)
    }
    return {
        "models": [
            {
                "name": m.name,
                "directory": m.directory,
                "design": m.design,
                "fingerprint": m.fingerprint,
                "settings": m.settings,
            }
            for m in models
        ],
        "min_datasets": min_datasets,
        "alpha": alpha,
        "correction": "holm",
        "families": families,
        "datasets": datasets,
        "tests": tests,
        "dropped": dropped,
        "sampling_mismatch": mismatched,
    }


def compare(
    result_dirs: Sequence[str | Path],
    output_dir: str | Path,
    min_datasets: int = 5,
    alpha: float = ALPHA,
    bootstrap: bool = True,
    plots: bool = True,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Load results directories, compare them and write report.md, scores.csv, stats.json, plots.

    ``names`` overrides the model names (default: each directory's design) in the same order.
    """
    from .report import write_report

    models = [load_results(d) for d in result_dirs]
    if names is not None:
        if len(names) != len(models):
            raise ValueError(f"names: got {len(names)} names for {len(models)} results directories")
        for model, name in zip(models, names, strict=True):
            model.name = name
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = compare_models(models, min_datasets=min_datasets, alpha=alpha, bootstrap=bootstrap)
    summary["warnings"] = [str(w.message) for w in caught]
    for w in caught:  # re-emit so callers (and the CLI) still see them
        warnings.warn(str(w.message), w.category, stacklevel=2)
    write_report(summary, Path(output_dir), plots=plots)
    return summary
