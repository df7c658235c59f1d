"""Training progress without a bar (``training.progress = false``: CI, batch jobs, log files):
one plain line every so often, since a job that prints nothing for minutes looks hung."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm.auto import tqdm

HEARTBEAT_SECONDS = 30.0


class Heartbeat:
    """tqdm's interface (``update``, ``set_postfix``, ``close``), writing ``train: step 12/50 (24%),
    loss=...`` to stderr at most every ``HEARTBEAT_SECONDS`` and at the last step."""

    def __init__(
        self, total: int, initial: int = 0, desc: str = "train", every_s: float | None = None
    ) -> None:
        self.total, self.n, self.desc = total, initial, desc
        self.every_s = HEARTBEAT_SECONDS if every_s is None else every_s
        self.started = self.last = time.monotonic()
        self.postfix: dict[str, Any] = {}

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last < self.every_s and self.n < self.total:
            return
        self.last = now
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = "".join(f", {key}={value}" for key, value in self.postfix.items())
        line = f"{self.desc}: step {self.n}/{self.total}{share}{extra}, {now - self.started:.0f} s"
        print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Nothing to tear down (the bar's interface)."""


def step_progress(total: int, initial: int, desc: str, *, bar: bool, enabled: bool = True) -> Any:
    """A tqdm bar (``bar``), else a ``Heartbeat``; nothing at all where not ``enabled`` (the
    processes other than the main one)."""
    if enabled and not bar:
        return Heartbeat(total, initial, desc)
    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not (enabled and bar))
