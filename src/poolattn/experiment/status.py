"""Where the grid stands (``--status`` and every worker's progress line), read from the shared
files: a run is running while a worker holds its ``run.lock``; ``state.json`` says the rest."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from .state import read_state

if TYPE_CHECKING:
    from .plan import ExperimentConfig, Run

LOCK_FILE = "run.lock"


class RunLock:
    """The OS lock on one run: at most one worker holds it; released when its holder dies."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._lock = FileLock(self.path, thread_local=False)
        self._file: tuple[int, int] | None = None

    def acquire(self) -> bool:
        """Take the lock if it is free (never waits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        info = os.stat(self.path)
        self._file = (info.st_dev, info.st_ino)
        return True

    def held(self) -> bool:
        """Still ours: the file we locked is still the run's lock file (not deleted or replaced)."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return False
        return self._file == (info.st_dev, info.st_ino)

    def release(self) -> None:
        self._lock.release()
        self._file = None


def lock_held(run_dir: Path) -> bool:
    """Whether some worker holds the run's lock (probed without waiting)."""
    probe = RunLock(run_dir)
    if not probe.path.exists():
        return False
    if not probe.acquire():
        return True
    probe.release()
    return False


@dataclass
class RunStatus:
    """One run as the shared files describe it."""

    name: str
    phase: str  # pending | running | done | failed | interrupted
    worker: str | None = None
    elapsed: float | None = None  # seconds: since the worker took it while running, all phases when done
    detail: str = ""

    @property
    def active(self) -> bool:
        """A worker is on it, whatever the phase (training, evaluating, layer ablation)."""
        return self.phase == "running"


def last_step(run_dir: Path) -> int | None:
    """The last training step logged in ``metrics.jsonl`` (read from the end of the file)."""
    path = run_dir / "train" / "metrics.jsonl"
    if not path.exists():
        return None
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 4096))
        lines = handle.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        with contextlib.suppress(ValueError, KeyError, TypeError):  # a line cut or being written
            return int(json.loads(line)["step"])
    return None


def _total_steps(config: ExperimentConfig, run: Run, run_dir: Path) -> int | None:
    """The trainer's ``total_steps`` (head warm-up included); the recipe's ``steps`` until it is written."""
    from ..training.config import read_train_run

    try:
        return int(read_train_run(run_dir / "train")["total_steps"])
    except (OSError, ValueError, KeyError):
        return config.train_data(run).get("training", {}).get("steps")


def run_status(config: ExperimentConfig, run: Run, now: float) -> RunStatus:
    """The status of one run from its state file, its lock and its training log."""
    run_dir = config.output_dir / run.name
    state = read_state(run_dir)
    worker = state.get("worker")
    status = state.get("status")
    if status == "done":
        seconds = sum(float(state.get(k, 0)) for k in ("train_seconds", "eval_seconds", "ablation_seconds"))
        return RunStatus(run.name, "done", worker, seconds or None)
    if lock_held(run_dir):
        detail = str(state.get("phase", "starting"))
        if detail == "training":
            step = last_step(run_dir)
            total = _total_steps(config, run, run_dir)
            if step is not None:
                detail += f" step {step}/{total}" if total else f" step {step}"
        return RunStatus(run.name, "running", worker, now - float(state.get("started_at", now)), detail)
    if status == "failed":
        return RunStatus(run.name, "failed", worker, None, str(state.get("error", ""))[:120])
    if status == "running":  # no lock: its worker was stopped
        return RunStatus(run.name, "interrupted", worker, None, "resumes when a worker takes it")
    return RunStatus(run.name, "pending")


def grid_status(config: ExperimentConfig) -> list[RunStatus]:
    """Every run of the grid, in plan order."""
    now = time.time()
    return [run_status(config, run, now) for run in config.runs()]


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def format_status(config: ExperimentConfig, statuses: list[RunStatus]) -> str:
    """The ``--status`` table: one line per run, then counts per phase."""
    width = max([len(s.name) for s in statuses] + [3])
    rows = [f"experiment {config.source} -> {config.output_dir}"]
    rows.append(f"{'run':<{width}}  {'phase':<12} {'worker':<24} {'elapsed':>9}  detail")
    for s in statuses:
        rows.append(
            f"{s.name:<{width}}  {s.phase:<12} {s.worker or '-':<24} {_minutes(s.elapsed):>9}  {s.detail}".rstrip()
        )
    counts = Counter(s.phase for s in statuses)
    rows.append(", ".join(f"{n} {phase}" for phase, n in sorted(counts.items())))
    return "\n".join(rows)


def summarize_others(statuses: list[RunStatus], exclude: str) -> str:
    """One line: what the other runs are doing (running ones named with worker and elapsed)."""
    others = [s for s in statuses if s.name != exclude]
    parts = [f"{s.name} {s.detail} @{s.worker} {_minutes(s.elapsed)}" for s in others if s.active]
    counts = Counter(s.phase for s in others if not s.active)
    parts += [f"{n} {phase}" for phase, n in sorted(counts.items())]
    return "; ".join(parts) or "no other runs"


class GridProgress:
    """The progress line of one worker: its run and phase, then every other run's from the files."""

    def __init__(self, config: ExperimentConfig, runs: list[Run], worker: str, show: bool = True) -> None:
        self.config = config
        self.total = len(runs)
        self.worker = worker
        self.show = show
        self.started = time.monotonic()
        self.done_seconds: list[float] = []

    def remaining(self, statuses: list[RunStatus]) -> float | None:
        """Seconds left: mean run time x runs not finished / workers at work (None before a run ends)."""
        if not self.done_seconds:
            return None
        left = sum(1 for s in statuses if s.phase in ("pending", "interrupted") or s.active)
        workers = max(1, len({s.worker for s in statuses if s.active}))
        return sum(self.done_seconds) / len(self.done_seconds) * left / workers

    def say(self, index: int, run: Run, phase: str) -> None:
        if not self.show:
            return
        statuses = grid_status(self.config)
        remaining = self.remaining(statuses)
        left = "" if remaining is None else f", about {remaining / 60:.0f} min left"
        elapsed = (time.monotonic() - self.started) / 60
        print(
            f"[{index + 1}/{self.total}] {run.name}: {phase} ({elapsed:.1f} min elapsed{left}; "
            f"worker {self.worker}) | others: {summarize_others(statuses, run.name)}",
            flush=True,
        )
