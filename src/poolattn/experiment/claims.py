"""Atomic run claims on a shared filesystem: which worker trains which run of the grid.

A claim is a numbered file ``<run_dir>/claims/claim-000001.json``, created exclusively: a
complete temp file is hard-linked to that name (atomic on local filesystems and on NFS, and
readers never see a half-written claim), with ``O_CREAT | O_EXCL`` as the fallback where hard
links are not supported. The highest number is the run's current claim. Its holder rewrites
it every few seconds (the heartbeat, which also carries the run's phase). A claim is stale when
its heartbeat is older than the timeout, or at once when its holder is known to be gone (same
machine, process no longer there); a stale claim is taken over by creating the next number,
again exclusively, so of two workers racing for it exactly one wins and nothing is deleted.
The files are the audit trail: one claim per run when nothing went wrong, one more per takeover.
A holder that finds a higher number than its own has lost its claim and stops working on it.

Heartbeats are wall-clock times: machines sharing a grid need clocks synchronised (NTP) to
well within the timeout.
"""

from __future__ import annotations

import _thread
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io import create_json_exclusive, replace_json_durably

CLAIMS_DIR = "claims"
MACHINE_ENV = "POOLATTN_MACHINE_ID"
DEFAULT_TIMEOUT = 300.0
_NAME = re.compile(r"^claim-(\d{6})\.json$")


# ----------------------------------------------------------------------------- who is working
def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def machine_id() -> str:
    """This machine and PID namespace: processes with the same id can see each other's PIDs.

    ``$POOLATTN_MACHINE_ID`` overrides it (e.g. to make workers on one host behave as on
    separate nodes, which then rely on the heartbeat timeout alone).
    """
    explicit = os.environ.get(MACHINE_ENV)
    if explicit:
        return explicit
    boot = _read("/proc/sys/kernel/random/boot_id") or "unknown-boot"
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = "unknown-pidns"
    return f"{socket.gethostname()}/{boot}/{pidns}"


def process_start(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot), so a reused PID is not mistaken for it."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


@dataclass(frozen=True)
class Worker:
    """One ``poolattn experiment`` process: host, PID, machine id and process start time."""

    host: str
    pid: int
    machine: str
    start: str | None

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}"

    @classmethod
    def current(cls) -> Worker:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, machine_id(), process_start(pid))


def holder_alive(claim: dict[str, Any], here: str | None = None) -> bool | None:
    """True/False when the claim's holder runs on this machine (its PID is checked), None otherwise."""
    if claim.get("machine") != (here or machine_id()):
        return None
    pid = int(claim.get("pid", -1))
    start = process_start(pid)
    if start is None:
        return False
    return claim.get("process_start") in (None, start)


# ----------------------------------------------------------------------------- claim files
def claims_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CLAIMS_DIR


def claim_path(run_dir: Path, generation: int) -> Path:
    return claims_dir(run_dir) / f"claim-{generation:06d}.json"


def generations(run_dir: Path) -> list[int]:
    """Numbers of the run's claim files, oldest first."""
    folder = claims_dir(run_dir)
    if not folder.is_dir():
        return []
    found = (_NAME.match(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def read_claim(run_dir: Path, generation: int | None = None) -> dict[str, Any] | None:
    """A claim's content (the latest when ``generation`` is None); None when there is none.

    A claim still being written (``O_EXCL`` fallback) reads as held and fresh.
    """
    if generation is None:
        found = generations(run_dir)
        if not found:
            return None
        generation = found[-1]
    path = claim_path(run_dir, generation)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        stamp = path.stat().st_mtime if path.exists() else time.time()
        data = {"worker": "?", "heartbeat": stamp, "claimed_at": stamp, "phase": "claimed"}
    data["generation"] = generation
    return data


def stale_reason(claim: dict[str, Any], timeout: float, now: float | None = None) -> str | None:
    """Why a live (unreleased) claim counts as abandoned, or None while its holder works."""
    alive = holder_alive(claim)
    if alive is False:
        return f"holder {claim.get('worker')} is gone"
    silent = (now if now is not None else time.time()) - float(claim.get("heartbeat", 0))
    if silent > timeout:
        return f"no heartbeat from {claim.get('worker')} for {silent:.0f} s (timeout {timeout:g} s)"
    return None


# ----------------------------------------------------------------------------- holding a claim
class Claim:
    """A claim this process holds: heartbeat thread, phase, release; notices when it was lost."""

    def __init__(
        self, run_dir: Path, generation: int, data: dict[str, Any], timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.run_dir = Path(run_dir)
        self.generation = generation
        self.data = data
        self.timeout = timeout
        self.interval = max(0.2, min(60.0, timeout / 6))
        self.lost = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_lost: Callable[[], None] = _thread.interrupt_main

    @property
    def path(self) -> Path:
        return claim_path(self.run_dir, self.generation)

    def still_mine(self) -> bool:
        found = generations(self.run_dir)
        return bool(found) and found[-1] == self.generation

    def beat(self, **fields: Any) -> bool:
        """Refresh the heartbeat (and any fields); False, and ``lost`` set, if the claim was taken over."""
        with self._lock:
            if self.lost.is_set():
                return False
            if not self.still_mine():
                self.lost.set()
                return False
            self.data.update(fields, heartbeat=time.time())
            replace_json_durably(self.path, self.data)
            return True

    def set_phase(self, phase: str) -> None:
        self.beat(phase=phase, phase_since=time.time())

    def start(self) -> Claim:
        """Start the heartbeat thread; on a lost claim it interrupts the main thread."""

        def loop() -> None:
            while not self._stop.wait(self.interval):
                if not self.beat():
                    if not self._stop.is_set():  # still working on the run: stop that work
                        self.on_lost()
                    return

        self._thread = threading.Thread(target=loop, name=f"heartbeat-{self.run_dir.name}", daemon=True)
        self._thread.start()
        return self

    def release(self, outcome: str) -> None:
        """Stop the heartbeat and mark the claim released (``done``, ``failed``, ``interrupted``)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self.beat(released=True, outcome=outcome, phase=outcome, finished_at=time.time())


def try_claim(
    run_dir: Path,
    worker: Worker,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    run: str | None = None,
    now: float | None = None,
) -> Claim | None:
    """Claim the run for ``worker`` if it is free, released (not done) or stale; else None."""
    run_dir = Path(run_dir)
    current = read_claim(run_dir)
    takeover = None
    if current is not None:
        if current.get("released"):
            if current.get("outcome") == "done":
                return None
        else:
            reason = stale_reason(current, timeout, now)
            if reason is None:
                return None
            takeover = {
                "generation": current["generation"],
                "worker": current.get("worker"),
                "reason": reason,
            }
    generation = (current["generation"] if current else 0) + 1
    stamp = time.time()
    data = {
        "run": run or run_dir.name,
        "generation": generation,
        "worker": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "machine": worker.machine,
        "process_start": worker.start,
        "claimed_at": stamp,
        "heartbeat": stamp,
        "phase": "claimed",
        "phase_since": stamp,
        "timeout": timeout,
        "takeover_of": takeover,
        "released": False,
        "outcome": None,
    }
    if not create_json_exclusive(claim_path(run_dir, generation), data):
        return None  # another worker was faster
    return Claim(run_dir, generation, data, timeout)
