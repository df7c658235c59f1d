"""One run's ``state.json``: which phases of a grid run are finished, read and written here only.

The runner records each finished phase; the workers, the status view and the report read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io import write_json_atomic

STATE_FILE = "state.json"


def read_state(run_dir: Path) -> dict[str, Any]:
    """The run's recorded state; empty when the run has not started."""
    path = run_dir / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Record the run's state atomically (a reader never sees half a file)."""
    write_json_atomic(run_dir / STATE_FILE, state)
