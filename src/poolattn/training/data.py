"""Training examples: JSONL loading with precise errors, source mixing, and a seeded batch order
that every process builds whole before taking its shard (independent of the process count).

A record is ``{"query": str, "positive": str, "negative"?: str | [str, ...], "instruction"?: str}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import JsonlError, bad_line_message, read_jsonl
from ..settings import DATA_DIR_ENV
from .config import DataConfig

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A training record is malformed; the message names file, line and field."""


# how a user skips bad training lines, named in every bad-line error (encode names --skip-invalid)
SKIP_HINT = "set data.skip_invalid = true"


@dataclass(frozen=True)
class Example:
    """One query with its positive document and zero or more hard negatives."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    instruction: str | None = None
    source: str = ""


@dataclass
class Source:
    """A named list of examples with its sampling weight and count of skipped records."""

    name: str
    examples: list[Example]
    weight: float
    skipped: int = 0
    location: str = ""


def _check_text(value: Any, where: str, name: str) -> str:
    if value is None:
        raise DataError(f"{where}: field {name!r} is missing")
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field {name!r} is empty")
    return value


def parse_record(record: Any, where: str, source: str = "", instruction: str | None = None) -> Example:
    """Validate one decoded record; ``where`` (``file:line``) prefixes every error."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    query = _check_text(record.get("query"), where, "query")
    positive = _check_text(record.get("positive"), where, "positive")
    raw = record.get("negative", record.get("negatives"))
    if raw is None:
        negatives: tuple[str, ...] = ()
    elif isinstance(raw, str):
        negatives = (_check_text(raw, where, "negative"),)
    elif isinstance(raw, list):
        negatives = tuple(_check_text(v, where, f"negative[{i}]") for i, v in enumerate(raw))
    else:
        raise DataError(
            f"{where}: field 'negative' must be a string or a list of strings, got {type(raw).__name__}"
        )
    own = record.get("instruction")
    if own is not None:
        instruction = _check_text(own, where, "instruction")
    return Example(query, positive, negatives, instruction, source)


def read_examples(
    path: str | Path, *, source: str | None = None, instruction: str | None = None, skip_invalid: bool = False
) -> tuple[list[Example], int]:
    """Read a JSONL file of examples; returns (examples, number of skipped bad lines). A bad line
    raises DataError naming file, line and field, unless ``skip_invalid``."""
    path = Path(path)
    name = source or path.stem
    examples: list[Example] = []
    skipped: list[Exception] = []
    try:
        for record in read_jsonl(path, on_bad_line=skipped.append if skip_invalid else None):
            try:
                examples.append(parse_record(record.value, record.where, name, instruction))
            except DataError as exc:
                if not skip_invalid:
                    reason = str(exc).removeprefix(f"{record.where}: ")
                    raise DataError(bad_line_message(record.where, reason, SKIP_HINT)) from exc
                skipped.append(exc)
    except JsonlError as exc:
        raise DataError(bad_line_message(exc.where, f"invalid JSON ({exc.reason})", SKIP_HINT)) from exc
    for exc in skipped:
        log.warning("skipped %s", exc)
    if not examples:
        raise DataError(f"{path}: no valid examples")
    return examples, len(skipped)


def resolve_data_path(text: str, base_dir: str | Path | None = None) -> Path:
    """Find a data file: absolute, relative to the working or config directory, or to $POOLATTN_DATA_DIR."""
    path = Path(os.path.expandvars(text)).expanduser()
    candidates = [path]
    if not path.is_absolute():
        if base_dir is not None:
            candidates.append(Path(base_dir) / path)
        if os.environ.get(DATA_DIR_ENV):
            candidates.append(Path(os.environ[DATA_DIR_ENV]).expanduser() / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"data.train: {text!r} not found (tried {tried}; set {DATA_DIR_ENV} for relative paths)"
    )


def _hub_examples(dataset_id: str, split: str, instruction: str | None) -> list[Example]:
    """Load a hub dataset (online users only) with query/positive/negative columns."""
    from datasets import load_dataset

    rows = load_dataset(dataset_id, split=split)
    out = []
    for i, row in enumerate(rows):
        record = {
            "query": row.get("query"),
            "positive": row.get("positive", row.get("pos")),
            "negative": row.get("negative", row.get("neg")),
        }
        if isinstance(record["positive"], list):  # some datasets store a list of positives
            record["positive"] = record["positive"][0] if record["positive"] else None
        out.append(parse_record(record, f"{dataset_id}[{split}]:{i}", dataset_id, instruction))
    return out


def load_sources(cfg: DataConfig, base_dir: str | Path | None = None) -> list[Source]:
    """Load every configured source with its instruction and weight; unknown keys are errors."""
    sources: list[Source] = []
    for text in cfg.train:
        path = resolve_data_path(text, base_dir)
        name = path.stem
        instruction = cfg.instructions.get(name, cfg.instructions.get(text, cfg.default_instruction))
        examples, skipped = read_examples(
            path, source=name, instruction=instruction, skip_invalid=cfg.skip_invalid
        )
        weight = cfg.weights.get(name, cfg.weights.get(text, float(len(examples))))
        sources.append(Source(name, examples, weight, skipped, str(path)))
    for dataset_id in cfg.hub:
        instruction = cfg.instructions.get(dataset_id, cfg.default_instruction)
        examples = _hub_examples(dataset_id, cfg.hub_split, instruction)
        weight = cfg.weights.get(dataset_id, float(len(examples)))
        sources.append(Source(dataset_id, examples, weight, 0, dataset_id))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise DataError(
            f"data.train: two sources share a name ({names}); instructions and weights are keyed by it"
        )
    for key in list(cfg.instructions) + list(cfg.weights):
        if key not in names and key not in cfg.train:
            raise DataError(
                f"data: instruction/weight key {key!r} matches no source (sources: {', '.join(names)})"
            )
    return sources


def same_text_key(text: str) -> str:
    """The key under which two texts count as the same (case and runs of whitespace ignored), for
    batches and mining."""
    return " ".join(text.lower().split())


@dataclass
class BatchSampler:
    """Seeded, resumable stream of global batches mixing weighted sources: each source walked in a
    permutation per (seed, source, epoch), each slot's source drawn from a seeded generator. An
    example whose positive is already in the batch (a false in-batch negative) waits for a later one."""

    sources: list[Source]
    batch_size: int
    seed: int = 0
    cursors: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    pending: list[tuple[int, int]] = field(default_factory=list)
    batches: int = 0

    def __post_init__(self) -> None:
        if not self.cursors:
            self.cursors = [0] * len(self.sources)
            self.epochs = [0] * len(self.sources)
        weights = np.array([s.weight for s in self.sources], dtype=np.float64)
        self._probs = weights / weights.sum()
        self._rng = np.random.default_rng([self.seed, 7919])
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        distinct = len({same_text_key(e.positive) for s in self.sources for e in s.examples})
        if distinct < self.batch_size:
            raise DataError(
                f"training.batch_size={self.batch_size} exceeds the {distinct} distinct positives in the data"
            )

    def _perm(self, s: int, epoch: int) -> np.ndarray:
        key = (s, epoch)
        if key not in self._perms:
            self._perms = {k: v for k, v in self._perms.items() if k[0] != s}
            self._perms[key] = np.random.default_rng([self.seed, s, epoch]).permutation(
                len(self.sources[s].examples)
            )
        return self._perms[key]

    def _draw(self) -> tuple[int, int]:
        s = int(self._rng.choice(len(self.sources), p=self._probs)) if len(self.sources) > 1 else 0
        if self.cursors[s] >= len(self.sources[s].examples):
            self.cursors[s], self.epochs[s] = 0, self.epochs[s] + 1
        index = int(self._perm(s, self.epochs[s])[self.cursors[s]])
        self.cursors[s] += 1
        return s, index

    def next_batch(self) -> list[Example]:
        """The next global batch (no positive twice)."""
        chosen: list[tuple[int, int]] = []
        seen: set[str] = set()
        deferred: list[tuple[int, int]] = []
        queue = list(self.pending)
        while len(chosen) < self.batch_size:
            ref = queue.pop(0) if queue else self._draw()
            key = same_text_key(self.sources[ref[0]].examples[ref[1]].positive)
            if key in seen:
                deferred.append(ref)
                if len(deferred) > 100 * self.batch_size:
                    raise DataError("cannot fill a batch with distinct positives; lower training.batch_size")
                continue
            seen.add(key)
            chosen.append(ref)
        self.pending = deferred + queue
        self.batches += 1
        return [self.sources[s].examples[i] for s, i in chosen]

    def state_dict(self) -> dict[str, Any]:
        """The data position (JSON-friendly)."""
        return {
            "cursors": list(self.cursors),
            "epochs": list(self.epochs),
            "pending": [list(p) for p in self.pending],
            "batches": self.batches,
            "rng": self._rng.bit_generator.state,
            "sources": [[s.name, len(s.examples)] for s in self.sources],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position; refuses data that changed in between."""
        now = [[s.name, len(s.examples)] for s in self.sources]
        if state["sources"] != now:
            raise DataError(
                f"resume: the training data changed since the checkpoint ({state['sources']} vs {now})"
            )
        self.cursors, self.epochs = list(state["cursors"]), list(state["epochs"])
        self.pending = [(int(a), int(b)) for a, b in state["pending"]]
        self.batches = int(state["batches"])
        self._rng.bit_generator.state = state["rng"]


def shard(batch: list[Example], rank: int, world: int) -> list[Example]:
    """This process's contiguous share of a global batch."""
    if len(batch) % world:
        raise DataError(f"training.batch_size={len(batch)} must be divisible by the {world} processes")
    size = len(batch) // world
    return batch[rank * size : (rank + 1) * size]


def batch_digest(batch: Iterable[Example]) -> str:
    """A short hash of a batch's content: equal digests mean the same data in the same order."""
    digest = hashlib.blake2b(digest_size=8)
    for e in batch:
        digest.update(json.dumps([e.query, e.positive, list(e.negatives)]).encode())
    return digest.hexdigest()
