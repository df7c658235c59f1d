"""Grid workers: any number of ``poolattn experiment`` processes share one grid.

A worker takes the first run of its selection whose ``<run>/run.lock`` (an OS file lock,
``filelock``) it gets; the OS frees the lock when its holder dies, so a dead worker's run is
taken over and resumed from its last checkpoint with no heartbeat or timeout. A run that failed
during this worker's life is not retried by it. The worker that finds the grid finished writes
the report, once per finished state. Under ``accelerate launch`` rank 0 alone takes locks and
writes; a failure on any rank, or rank 0 losing its lock, stops every rank at once (a rank may
be blocked in a collective).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..config import ConfigError
from ..io import write_text_atomic
from .plan import ExperimentConfig, Run
from .state import finish_run, read_state
from .status import GridProgress, RunLock

log = logging.getLogger(__name__)

RunOne = Callable[[ExperimentConfig, Run, int, Any], dict[str, Any]]
POLL = 2.0  # seconds between looks while waiting for runs other workers hold
WATCH = 0.5  # seconds between the watchdog's looks at the lock and at the other ranks
ACK_TIMEOUT = timedelta(seconds=60)  # how long a failing rank waits for rank 0 to record it
STOP_KEY, STOPPED_KEY = "poolattn/stop", "poolattn/stopped"
REPORT_KEY_FILE = ".report-key"


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


def _exit_now(message: str) -> None:
    """End this process at once (a rank may sit in a collective that never returns)."""
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


class StopSignal:
    """The ranks' side channel (the rendezvous store, reachable while collectives block): a rank
    posts why the run stops; rank 0 acknowledges once it recorded that, so no rank exits before."""

    def __init__(self) -> None:
        from torch.distributed import distributed_c10d

        self.store = distributed_c10d._get_default_store()  # the store every launcher sets up

    def post(self, reason: str) -> None:
        if not self.store.check([STOP_KEY]):
            self.store.set(STOP_KEY, reason)

    def posted(self) -> str | None:
        return self.store.get(STOP_KEY).decode() if self.store.check([STOP_KEY]) else None

    def acknowledge(self) -> None:
        self.store.set(STOPPED_KEY, "1")

    def wait_acknowledged(self) -> None:
        with contextlib.suppress(Exception):  # rank 0 gone or silent: nothing more to wait for
            self.store.wait([STOPPED_KEY], ACK_TIMEOUT)


@dataclass
class GridOutcome:
    """What a worker did: the report it wrote (None when it wrote none) and the runs that failed."""

    report: Any = None
    failed: list[str] = field(default_factory=list)


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
        self.group = process_group()
        self.id = f"{socket.gethostname()}:{os.getpid()}"
        self.progress = GridProgress(config, self.runs, self.id, show=self.group.main)
        self.signal = StopSignal() if self.group.world > 1 else None
        self.ran: list[str] = []
        self.failed: list[str] = []
        self.waited = False
        self._said: set[str] = set()
        self._current: tuple[Run, RunLock | None] | None = None
        self._ending = threading.Lock()  # the main thread or the watchdog finishes a failed run
        self.failed_at_start: dict[str, Any] = {}
        if self.group.main:
            config.output_dir.mkdir(parents=True, exist_ok=True)
            for run in self.selected:
                state = read_state(self._dir(run))
                if state.get("status") == "failed":
                    self.failed_at_start[run.name] = state.get("finished_at")

    def _dir(self, run: Run) -> Path:
        return self.config.output_dir / run.name

    def _say_once(self, key: str, text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            print(text, flush=True)

    def _label(self, run: Run) -> str:
        return f"[{self.runs.index(run) + 1}/{len(self.runs)}] {run.name}"

    def _finished(self, run: Run, state: dict[str, Any]) -> bool:
        """Done, or failed since this worker started (reported, not retried now)."""
        new_failure = self.failed_at_start.get(run.name, "new") != state.get("finished_at")
        return state.get("status") == "done" or (state.get("status") == "failed" and new_failure)

    def next_step(self) -> tuple[tuple[str, str | None], RunLock | None]:
        """Rank 0: lock the next free run, or wait for runs others hold, or finish."""
        waiting: list[str] = []
        for run in self.selected:
            if run.name in self.ran:
                continue
            run_dir = self._dir(run)
            state = read_state(run_dir)
            if self._finished(run, state):
                if state.get("status") == "done":
                    self._say_once(f"done:{run.name}", f"{self._label(run)}: done already, skipped")
                continue
            lock = RunLock(run_dir)
            if not lock.acquire():
                waiting.append(run.name)
                holder = read_state(run_dir).get("worker", "another worker")
                self._say_once(f"held:{run.name}:{holder}", f"{self._label(run)}: held by {holder}")
                continue
            state = read_state(run_dir)  # read again under the lock: finished meanwhile?
            if self._finished(run, state):
                lock.release()
                continue
            if state.get("status") == "running":
                print(f"{self._label(run)}: resuming the run {state.get('worker')} left", flush=True)
            return ("run", run.name), lock
        if waiting:
            self.waited = True
            self._say_once(f"wait:{waiting}", f"waiting for {', '.join(waiting)} (held by other workers)")
            return ("wait", None), None
        return ("finish", None), None

    def _fail(self, run: Run, lock: RunLock | None, reason: str, *, record: bool = True) -> None:
        """Record the run failed (rank 0, while it holds the lock); multi-process: stop every rank."""
        with self._ending:
            if self.group.main:
                other = self.signal.posted() if self.signal else None
                if other and other != reason:
                    reason = f"{reason} ({other})"
                if record and (lock is None or lock.held()):
                    print(f"{self._label(run)}: FAILED: {reason}", flush=True)
                    finish_run(self._dir(run), "failed", error=reason)
                    self.failed.append(run.name)
                if self.signal is None:
                    return
                self.signal.post(reason)
                self.signal.acknowledge()
                _exit_now(f"{run.name}: stopping every rank: {reason}")
            assert self.signal is not None
            self.signal.post(f"rank {self.group.rank}: {reason}")
            self.signal.wait_acknowledged()
            _exit_now(f"{run.name} (rank {self.group.rank}): stopping: {reason}")

    def _watch(self, stop: threading.Event) -> None:
        """Watchdog thread: rank 0's lock still its own, no other rank stopped."""
        while not stop.wait(WATCH):
            current = self._current
            name = current[0].name if current else "worker"
            if current is not None and current[1] is not None and not current[1].held():
                if self.signal is not None:
                    self.signal.post(f"rank 0 lost the lock of {name}")
                    self.signal.acknowledge()
                _exit_now(
                    f"{name}: lost its lock {current[1].path} (deleted or replaced); stopping, recording nothing"
                )
            if self.signal is None:
                continue
            try:
                reason = self.signal.posted()
            except Exception as exc:  # the store is gone with the process that hosted it
                _exit_now(f"{name} (rank {self.group.rank}): lost the other ranks: {exc}")
            if reason is not None:
                if self.group.main and current is not None:
                    self._fail(current[0], current[1], reason)
                _exit_now(f"{name} (rank {self.group.rank}): stopping: {reason}")

    def execute(self, run: Run, lock: RunLock | None) -> None:
        """Train and evaluate one run under its lock; every rank agrees before "done"."""
        start = time.monotonic()
        self._current = (run, lock)
        try:
            state = self.run_one(self.config, run, self.runs.index(run), self.progress)
            self.group.all_gather(True)  # every rank got here: the run is done on all of them
        except KeyboardInterrupt:
            if self.signal is not None:
                self._fail(run, lock, "interrupted", record=False)
            raise  # the state stays "running": the run resumes when a worker takes it
        except Exception as exc:  # one failed design must not destroy the others
            log.debug("%s failed", run.name, exc_info=True)
            self._fail(run, lock, f"{type(exc).__name__}: {exc}")
        else:
            if self.group.main:
                finish_run(self._dir(run), "done", state=state)
        finally:
            self._current = None
            if lock is not None:
                lock.release()
        self.progress.done_seconds.append(time.monotonic() - start)
        self.ran.append(run.name)

    def work(self) -> None:
        """Lock and run until this worker's selection is finished."""
        stop = threading.Event()
        watchdog = threading.Thread(target=self._watch, args=(stop,), name="poolattn-watchdog", daemon=True)
        watchdog.start()
        try:
            while True:
                decision, lock = self.next_step() if self.group.main else ((None, None), None)
                kind, name = self.group.broadcast(decision)
                if kind == "finish":
                    return
                if kind == "wait":
                    if self.group.main:
                        time.sleep(POLL)
                    continue
                self.execute(next(run for run in self.runs if run.name == name), lock)
        finally:
            stop.set()

    def _outcomes(self) -> list[list[Any]]:
        """Every run's name, status and when it finished: a hash of these keys the report."""
        states = [(run.name, read_state(self._dir(run))) for run in self.runs]
        return [[name, state.get("status"), state.get("finished_at")] for name, state in states]

    def write_report(self, write: Callable[[ExperimentConfig], Any]) -> Any:
        """Rank 0: the report, when the grid is finished and no other worker wrote this finished
        state's. A worker that found the grid finished from the start rewrites it, as a rerun does."""
        if not all(status in ("done", "failed") for _, status, _ in self._outcomes()):
            print(
                "this worker's runs are finished; the last worker writes the report "
                "(or run again with --report-only)",
                flush=True,
            )
            return None
        out = self.config.output_dir
        try:
            with FileLock(out / "report.lock", timeout=3600):
                key = hashlib.blake2b(json.dumps(self._outcomes()).encode(), digest_size=8).hexdigest()
                stamp = out / REPORT_KEY_FILE
                if (self.ran or self.waited) and stamp.exists() and stamp.read_text() == key:
                    print("the grid is finished; another worker wrote the report", flush=True)
                    return None
                print("comparing and writing the report", flush=True)
                report = write(self.config)
                write_text_atomic(stamp, key)
                return report
        except Timeout:
            print("the grid is finished; another worker is writing the report", flush=True)
            return None


def run_grid(
    config: ExperimentConfig,
    run_one: RunOne,
    write_report: Callable[[ExperimentConfig], Any],
    names: list[str] | None = None,
    shard: tuple[int, int] | None = None,
) -> GridOutcome:
    """Work through the grid with any other workers; the outcome holds what ``write_report``
    returned when this worker wrote the report (None otherwise) and the runs that failed here."""
    worker = GridWorker(config, run_one, names, shard)
    worker.work()
    if not worker.group.main:
        return GridOutcome()
    return GridOutcome(worker.write_report(write_report), worker.failed)
