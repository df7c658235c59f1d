"""Where the grid stands, read from the shared files: each run's phase, worker and elapsed time.

Behind ``poolattn experiment CONFIG --status`` and the progress line every worker prints. The
sources are the files any worker can read on the shared filesystem: a run's ``state.json``
(done / failed), its latest claim (holder, phase, heartbeat) and its ``metrics.jsonl`` (step).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .claims import Claim, Worker, read_claim, stale_reason
from .state import read_state

if TYPE_CHECKING:
    from .plan import ExperimentConfig, Run


@dataclass
class RunStatus:
    """One run as the shared files describe it."""

    name: str
    phase: str  # pending | claimed | training | evaluating | done | failed | interrupted | stale (...)
    worker: str | None = None
    elapsed: float | None = None  # seconds: since the claim while active, train + eval when done
    detail: str = ""

    @property
    def active(self) -> bool:
        return self.phase in ("claimed", "training", "evaluating")


def last_step(run_dir: Path) -> int | None:
    """The last training step logged in ``metrics.jsonl`` (read from the end of the file)."""
    path = run_dir / "train" / "metrics.jsonl"
    if not path.exists():
        return None
    with path.open("rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - 4096))
        lines = handle.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def run_status(
    config: ExperimentConfig, run: Run, timeout: float | None = None, now: float | None = None
) -> RunStatus:
    """The status of one run from its state file, its latest claim and its training log."""
    run_dir = config.output_dir / run.name
    timeout = config.experiment.claim_timeout if timeout is None else timeout
    now = time.time() if now is None else now
    state = read_state(run_dir)
    claim = read_claim(run_dir)
    worker = claim.get("worker") if claim else None
    status = state.get("status")
    if status == "done":
        seconds = float(state.get("train_seconds", 0)) + float(state.get("eval_seconds", 0))
        return RunStatus(run.name, "done", worker, seconds or None)
    if claim is not None and not claim.get("released"):
        phase = str(claim.get("phase", "claimed"))
        elapsed = now - float(claim.get("claimed_at", now))
        detail = ""
        if phase == "training":
            step = last_step(run_dir)
            total = config.shared.get("training", {}).get("steps")
            if step is not None:
                detail = f"step {step}/{total}" if total else f"step {step}"
        reason = stale_reason(claim, timeout, now)
        if reason:
            return RunStatus(run.name, f"stale ({phase})", worker, elapsed, reason)
        return RunStatus(run.name, phase, worker, elapsed, detail)
    if status == "failed":
        return RunStatus(run.name, "failed", worker, None, str(state.get("error", ""))[:120])
    if status == "running":  # no live claim: its worker was stopped
        return RunStatus(run.name, "interrupted", worker, None, "resumes when a worker claims it")
    return RunStatus(run.name, "pending")


def grid_status(config: ExperimentConfig, timeout: float | None = None) -> list[RunStatus]:
    """Every run of the grid, in plan order."""
    now = time.time()
    return [run_status(config, run, timeout, now) for run in config.runs()]


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def format_status(config: ExperimentConfig, statuses: list[RunStatus]) -> str:
    """The ``--status`` table: one line per run, then counts per phase."""
    width = max([len(s.name) for s in statuses] + [3])
    rows = [f"experiment {config.source} -> {config.output_dir}"]
    rows.append(f"{'run':<{width}}  {'phase':<20} {'worker':<24} {'elapsed':>9}  detail")
    for s in statuses:
        rows.append(
            f"{s.name:<{width}}  {s.phase:<20} {s.worker or '-':<24} {_minutes(s.elapsed):>9}  {s.detail}".rstrip()
        )
    counts = Counter(s.phase.split(" ")[0] for s in statuses)
    rows.append(", ".join(f"{n} {phase}" for phase, n in sorted(counts.items())))
    return "\n".join(rows)


def summarize_others(statuses: list[RunStatus], exclude: str) -> str:
    """One line: what the other runs are doing (active ones named with worker and elapsed)."""
    parts = []
    counts: Counter[str] = Counter()
    for s in statuses:
        if s.name == exclude:
            continue
        if s.active or s.phase.startswith("stale"):
            parts.append(f"{s.name} {s.phase} @{s.worker} {_minutes(s.elapsed)}")
        else:
            counts[s.phase] += 1
    parts += [f"{n} {phase}" for phase, n in sorted(counts.items())]
    return "; ".join(parts) or "no other runs"


class GridProgress:
    """The progress line of one worker: its run and phase, then every other run's from the files.

    ``run_one`` calls ``say`` at each phase; the phase also goes into this worker's claim,
    which is how the other workers and ``--status`` learn it.
    """

    def __init__(self, config: ExperimentConfig, runs: list[Run], worker: Worker, show: bool = True) -> None:
        self.config = config
        self.total = len(runs)
        self.worker = worker
        self.show = show
        self.started = time.monotonic()
        self.done_seconds: list[float] = []
        self.claim: Claim | None = None

    def say(self, index: int, run: Run, phase: str) -> None:
        if self.claim is not None:
            self.claim.set_phase(phase)
        if not self.show:
            return
        statuses = grid_status(self.config)
        left = ""
        if self.done_seconds:
            pending = sum(1 for s in statuses if s.phase in ("pending", "interrupted") or s.active)
            workers = max(1, len({s.worker for s in statuses if s.active}))
            remaining = sum(self.done_seconds) / len(self.done_seconds) * pending / workers
            left = f", about {remaining / 60:.0f} min left"
        elapsed = (time.monotonic() - self.started) / 60
        print(
            f"[{index + 1}/{self.total}] {run.name}: {phase} ({elapsed:.1f} min elapsed{left}; "
            f"worker {self.worker.id}) | others: {summarize_others(statuses, run.name)}",
            flush=True,
        )


def describe_claim(claim: dict[str, Any] | None) -> str:
    """``host:pid, training for 3.2 min`` for messages about a run held by someone else."""
    if not claim:
        return "unclaimed"
    elapsed = time.time() - float(claim.get("claimed_at", time.time()))
    return f"{claim.get('worker')}, {claim.get('phase', 'claimed')} for {elapsed / 60:.1f} min"
