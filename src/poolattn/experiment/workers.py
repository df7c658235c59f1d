"""Grid workers: any number of ``poolattn experiment`` processes share one grid.

Every worker walks the runs it may take (all, ``--runs NAME,...`` or ``--shard K/N``) and
claims the first free one atomically (see ``claims``); a run held by a live worker is left to
it, a stale claim is taken over and the run resumes from its last checkpoint. A worker with
nothing left to claim waits while others still hold runs of its selection, so it can take
over from one that dies; it ends when its selection is finished. The worker that finds the
whole grid finished writes the report (once per finished state: an exclusive report claim).

Under ``accelerate launch`` (one run spread over several processes), rank 0 claims and tells
the other ranks which run to work on; only rank 0 writes state and claim files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..config import ConfigError
from ..io import create_json_exclusive
from .claims import CLAIMS_DIR, Claim, Worker, generations, read_claim, try_claim
from .plan import ExperimentConfig, Run
from .state import read_state, write_state
from .status import GridProgress, describe_claim

log = logging.getLogger(__name__)

RunOne = Callable[[ExperimentConfig, Run, int, Any], dict[str, Any]]


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> (2, 4), with 1 <= K <= N."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard: {text!r} must look like K/N, e.g. 1/2") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard: {text!r} needs 1 <= K <= N")
    return k, n


def select_runs(
    runs: list[Run], names: list[str] | None = None, shard: tuple[int, int] | None = None
) -> list[Run]:
    """The runs a worker may take: named ones, then every N-th from the K-th (plan order)."""
    if names:
        known = {run.name: run for run in runs}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ConfigError(
                f"--runs: unknown run(s) {', '.join(unknown)}; the grid has: {', '.join(known)}"
            )
        runs = [run for run in runs if run.name in set(names)]
    if shard is not None:
        k, n = shard
        runs = [run for i, run in enumerate(runs) if i % n == k - 1]
    return runs


def _mark_failed(run_dir: Path, exc: BaseException) -> None:
    state = read_state(run_dir)
    state.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    write_state(run_dir, state)


class GridWorker:
    """One worker's walk through its runs (rank 0 decides, other ranks follow)."""

    def __init__(
        self,
        config: ExperimentConfig,
        run_one: RunOne,
        names: list[str] | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        from ..evaluation.distributed import process_group

        self.config = config
        self.run_one = run_one
        self.runs = config.runs()
        self.selected = select_runs(self.runs, names, shard)
        self.timeout = float(config.experiment.claim_timeout)
        self.poll = max(0.2, min(30.0, self.timeout / 4))  # seconds between looks while waiting
        self.group = process_group()
        self.worker = Worker.current()
        self.progress = GridProgress(config, self.runs, self.worker, show=self.group.main)
        self.ran: list[str] = []
        self.waited = False
        self._said: set[str] = set()
        self._waiting_for: tuple[str, ...] = ()
        self.start_generation: dict[str, int] = {}
        if self.group.main:
            config.output_dir.mkdir(parents=True, exist_ok=True)
            for run in self.selected:
                found = generations(self._dir(run))
                self.start_generation[run.name] = found[-1] if found else 0

    def _dir(self, run: Run) -> Path:
        return self.config.output_dir / run.name

    def _say_once(self, key: str, text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            print(text, flush=True)

    def _label(self, run: Run) -> str:
        return f"[{self.runs.index(run) + 1}/{len(self.runs)}] {run.name}"

    def next_step(self) -> tuple[tuple[str, str | None], Claim | None]:
        """Rank 0: claim the next free run, or wait for runs others hold, or finish."""
        waiting: list[str] = []
        for run in self.selected:
            if run.name in self.ran:
                continue
            run_dir = self._dir(run)
            state = read_state(run_dir)
            latest = read_claim(run_dir)
            if state.get("status") == "done" or (latest and latest.get("outcome") == "done"):
                self._say_once(f"done:{run.name}", f"{self._label(run)}: done already, skipped")
                continue
            if (
                state.get("status") == "failed"
                and latest is not None
                and latest.get("outcome") == "failed"
                and latest["generation"] > self.start_generation[run.name]
            ):
                continue  # failed since this worker started: reported, not retried now
            claim = try_claim(run_dir, self.worker, self.timeout, run=run.name)
            if claim is not None:
                took = claim.data.get("takeover_of")
                if took:
                    print(
                        f"{self._label(run)}: taking over from {took['worker']}: {took['reason']}", flush=True
                    )
                return ("run", run.name), claim
            waiting.append(run.name)
            self._say_once(
                f"held:{run.name}:{latest and latest.get('generation')}",
                f"{self._label(run)}: held by {describe_claim(read_claim(run_dir))}",
            )
        if waiting:
            self.waited = True
            if tuple(waiting) != self._waiting_for:
                self._waiting_for = tuple(waiting)
                print(f"waiting for {', '.join(waiting)} (held by other workers)", flush=True)
            return ("wait", None), None
        return ("finish", None), None

    def execute(self, run: Run, claim: Claim | None) -> None:
        """Train and evaluate one run under its claim; record the outcome."""
        index = self.runs.index(run)
        self.progress.claim = claim
        if claim is not None:
            claim.start()
        outcome = "done"
        start = time.monotonic()
        try:
            self.run_one(self.config, run, index, self.progress)
        except KeyboardInterrupt:
            if claim is None or not claim.lost.is_set():
                if claim is not None:
                    claim.release("interrupted")
                raise
            print(f"{self._label(run)}: claim lost to another worker; leaving the run to it", flush=True)
            return
        except Exception as exc:  # one failed design must not destroy the others
            outcome = "failed"
            log.error("%s failed: %s", run.name, exc)
            if self.group.main:
                print(f"{self._label(run)}: FAILED: {exc}", flush=True)
                _mark_failed(self._dir(run), exc)
        finally:
            self.progress.claim = None
        self.progress.done_seconds.append(time.monotonic() - start)
        self.ran.append(run.name)
        if claim is not None:
            claim.release(outcome)

    def work(self) -> None:
        """Claim and run until this worker's selection is finished."""
        while True:
            decision, claim = self.next_step() if self.group.main else ((None, None), None)
            kind, name = self.group.broadcast(decision)
            if kind == "finish":
                return
            if kind == "wait":
                if self.group.main:
                    time.sleep(self.poll)
                continue
            self.execute(next(run for run in self.runs if run.name == name), claim)

    def grid_finished(self) -> bool:
        return all(read_state(self._dir(run)).get("status") in ("done", "failed") for run in self.runs)

    def report_key(self) -> str:
        """A hash of the finished grid: run names, outcomes and claim numbers."""
        items = []
        for run in self.runs:
            found = generations(self._dir(run))
            items.append([run.name, read_state(self._dir(run)).get("status"), found[-1] if found else 0])
        return hashlib.blake2b(json.dumps(items).encode(), digest_size=8).hexdigest()

    def should_write_report(self) -> bool:
        """Whether this worker writes the report: the grid is finished and no other worker
        has claimed this finished state's report. A worker that found the grid finished from
        the start rewrites it, as a plain rerun always did."""
        if not self.grid_finished():
            return False
        if not self.ran and not self.waited:
            return True
        path = self.config.output_dir / CLAIMS_DIR / f"report-{self.report_key()}.json"
        return create_json_exclusive(path, {"worker": self.worker.id, "at": time.time()})


Report = TypeVar("Report")


def run_grid(
    config: ExperimentConfig,
    run_one: RunOne,
    write_report: Callable[[ExperimentConfig], Report],
    names: list[str] | None = None,
    shard: tuple[int, int] | None = None,
) -> Report | None:
    """Work through the grid with any other workers; returns what ``write_report`` returned when
    this worker wrote the report, else None (others still working, or it was theirs to write)."""
    worker = GridWorker(config, run_one, names, shard)
    worker.work()
    if not worker.group.main:
        return None
    if not worker.should_write_report():
        if worker.grid_finished():
            print("the grid is finished; another worker writes the report", flush=True)
        else:
            print(
                "this worker's runs are finished; the last worker writes the report "
                "(or run again with --report-only)",
                flush=True,
            )
        return None
    print("comparing and writing the report", flush=True)
    return write_report(config)
