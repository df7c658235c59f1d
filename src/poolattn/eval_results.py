"""Facts of an evaluation results directory (its run file, a task's one main score), shared by its
writer (``poolattn.evaluation``) and readers (``poolattn.stats``, the model card) without mteb or torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .io import read_json_object

EVAL_RUN_FILE = "run.json"  # beside the ``<Task>.json`` files: design, settings, task list
# Scores are stored as fractions (mteb's); reports show them in points (x 100), as MTEB tables do.
SCALE = 100.0


def read_eval_run(path: str | Path) -> dict[str, Any]:
    """An evaluation's record (``run.json``: its path, or the results directory holding it), the
    one reader of the file; OSError or ValueError (naming the file) when it cannot be read."""
    path = Path(path)
    return read_json_object(path / EVAL_RUN_FILE if path.is_dir() else path, "an evaluation record")


class NoScoresError(ValueError):
    """A task result lists no score (for the splits asked)."""


def task_main_score(task_json: Mapping[str, Any], splits: Sequence[str] | None = None) -> float:
    """A task's main score (an mteb ``TaskResult`` dict): the mean over its eval splits (all, or
    ``splits``) and subsets, as mteb aggregates. A malformed result raises KeyError/TypeError/
    ValueError/AttributeError (callers add the file name); one without scores ``NoScoresError``."""
    values = [
        float(entry["main_score"])
        for split, entries in task_json["scores"].items()
        if not splits or split in splits
        for entry in entries
    ]
    if not values:
        raise NoScoresError(f"{task_json.get('task_name')}: no scores")
    return float(np.mean(values))
