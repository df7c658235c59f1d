"""One run's ``state.json``: which phases of a grid run are finished, read and written here only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..io import read_json_object, write_json_atomic

STATE_FILE = "state.json"  # a grid run's phases (a training checkpoint's is ``trainer_state.json``)


class StateError(ValueError):
    """A run's state file cannot be read; the message names the file."""


def read_state(run_dir: Path) -> dict[str, Any]:
    """The run's recorded state; empty when the run has not started."""
    path = run_dir / STATE_FILE
    if not path.exists():
        return {}
    try:
        return read_json_object(path, "a run state")
    except ValueError as exc:
        raise StateError(str(exc)) from exc


def recorded_runs(experiment_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """``(run folder, state)`` of every run of an experiment folder that has a state, by name."""
    return [(p.parent, read_state(p.parent)) for p in sorted(Path(experiment_dir).glob(f"*/{STATE_FILE}"))]


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Record the run's state atomically (a reader never sees half a file)."""
    write_json_atomic(run_dir / STATE_FILE, state)


def finish_run(
    run_dir: Path, status: str, *, error: str | None = None, state: dict[str, Any] | None = None
) -> None:
    """Record the run's outcome (``done`` or ``failed``) and when: the stamp tells a failure of
    this worker's session from an older one, and keys the report of a finished grid."""
    state = dict(read_state(run_dir) if state is None else state)
    state.update(status=status, finished_at=time.time())
    state.pop("phase", None)
    if error is None:
        state.pop("error", None)
    else:
        state["error"] = error
    write_state(run_dir, state)
