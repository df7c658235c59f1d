"""Item-level results (``<Task>.items.json`` beside mteb's ``<Task>.json``): enough to recompute
a dataset's main score on any subset or resample of its items.

One *entry* per (split, subset) mteb scored, of a kind: ``correlation`` (STS: gold and
similarity per pair), ``ap`` (pair classification: gold label, one score column per similarity;
max AP), ``classification`` (gold and each classifier experiment's prediction) or ``mean`` (one
value per item, e.g. nDCG). ``Entry.score(idx)`` scores every row of resampled positions at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

ITEMS_VERSION = 1
KINDS = ("correlation", "ap", "classification", "mean")


class ItemsError(ValueError):
    """An items file is missing, corrupt or inconsistent; the message names the file and field."""


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``x`` with the same row of ``y`` (nan if constant)."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    num = (xc * yc).sum(axis=1)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[den == 0] = np.nan
    return np.clip(out, -1.0, 1.0)


def _classification_metric(metric: str, gold: np.ndarray, pred: np.ndarray) -> float:
    """One of ``CLASSIFICATION_METRICS``, as mteb's ``_calculate_scores`` computes it (sklearn)."""
    from sklearn import metrics as skm

    if metric == "accuracy":
        return float(np.mean(gold == pred))
    base, _, weighted = metric.partition("_")
    score = getattr(skm, "average_precision_score" if base == "ap" else f"{base}_score")
    return float(score(gold, pred, average="weighted" if weighted else "macro"))


class _SortedColumn:
    """One score column sorted once (descending, tie groups marked), so the average precision
    of any resample is a weighted pass in O(n) instead of a sort per resample."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray) -> None:
        self.order = np.argsort(-scores, kind="mergesort")
        s = scores[self.order]
        self.labels = labels[self.order]
        self.last = np.ones(s.size, dtype=bool)
        self.last[:-1] = s[1:] != s[:-1]

    def average_precision(self, weights: np.ndarray) -> np.ndarray:
        """AP per row of item multiplicities (sklearn's value on the expanded resample)."""
        w = weights[:, self.order].astype(float)
        tp = np.cumsum(w * self.labels, axis=1)
        count = np.cumsum(w, axis=1)
        tp_end = np.where(self.last, tp, 0.0)
        prev = np.zeros_like(tp)
        prev[:, 1:] = np.maximum.accumulate(tp_end, axis=1)[:, :-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(count > 0, tp / count, 0.0)
            ap = np.where(self.last, (tp - prev) * precision, 0.0).sum(axis=1) / tp[:, -1]
        ap[tp[:, -1] == 0] = np.nan
        return ap


_ARRAYS = {"correlation": ("gold", "pred"), "classification": ("gold", "predictions"), "mean": ("values",)}
CLASSIFICATION_METRICS = (
    "accuracy",
    *(f"{m}{w}" for m in ("f1", "precision", "recall", "ap") for w in ("", "_weighted")),
)


@dataclass
class Entry:
    """The items of one (split, subset) of a dataset and how its score is computed."""

    kind: str
    ids: list[str]
    data: dict[str, Any]
    split: str = "test"
    hf_subset: str = "default"
    method: str | None = None  # correlation: spearman|pearson; classification: the metric
    round_digits: int | None = None
    main_score: float | None = None  # mteb's value for this entry, when known
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ItemsError(f"entry kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        n = len(self.ids)
        if self.kind == "ap":
            columns = self.data["scores"]
            if not columns:
                raise ItemsError("ap entry: no score columns")
            self._arrays = {
                "labels": np.asarray(self.data["labels"], float),
                "scores": np.stack([np.asarray(v, float) for v in columns.values()]),
            }
        else:  # class labels keep their type
            dtype = None if self.kind == "classification" else float
            self._arrays = {k: np.asarray(self.data[k], dtype) for k in _ARRAYS[self.kind]}
        if self.kind == "correlation" and self.method not in ("spearman", "pearson"):
            raise ItemsError(f"correlation entry: method must be spearman or pearson, got {self.method!r}")
        if self.kind == "classification":
            if self.method not in CLASSIFICATION_METRICS:
                raise ItemsError(f"classification entry: unknown metric {self.method!r}")
            if self._arrays["predictions"].ndim != 2:
                raise ItemsError("classification entry: predictions must be experiments x items")
        for key, array in self._arrays.items():
            if array.shape[-1] != n:
                raise ItemsError(f"{self.kind} entry: {key} has {array.shape[-1]} items, ids {n}")

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def is_mean(self) -> bool:
        """True when the score is a mean of per-item values (a sign-flip test applies)."""
        return self.kind == "mean" or (self.kind == "classification" and self.method == "accuracy")

    def item_values(self) -> np.ndarray:
        """Per-item values whose mean is the score (mean-type entries only)."""
        if self.kind == "mean":
            return self._arrays["values"]
        if self.kind == "classification" and self.method == "accuracy":
            return (self._arrays["predictions"] == self._arrays["gold"][None, :]).mean(axis=0)
        raise ItemsError(f"{self.kind} entry ({self.method}) is not a mean over items")

    def gold(self) -> np.ndarray | None:
        """The gold labels/scores (to check that two models saw the same items); None for means."""
        return self._arrays.get("labels", self._arrays.get("gold"))

    def score(self, idx: np.ndarray | None = None) -> np.ndarray | float:
        """The entry's score on all items (float) or on each row of item positions ``idx``."""
        if idx is None:
            return float(self.score(np.arange(self.n)[None, :])[0])
        idx = np.atleast_2d(idx)
        if self.is_mean:
            return self.item_values()[idx].mean(axis=1)
        if self.kind == "correlation":
            gold, pred = self._arrays["gold"][idx], self._arrays["pred"][idx]
            if self.method == "spearman":
                gold, pred = sps.rankdata(gold, axis=1), sps.rankdata(pred, axis=1)
            return _rowwise_pearson(gold, pred)
        if self.kind == "ap":
            if not hasattr(self, "_sorted"):
                labels = self._arrays["labels"]
                self._sorted = [_SortedColumn(col, labels) for col in self._arrays["scores"]]
            rows = idx.shape[0]  # how often each item appears in each resample
            flat = (idx + np.arange(rows)[:, None] * self.n).ravel()
            weights = np.bincount(flat, minlength=rows * self.n).reshape(rows, self.n)
            return np.max(np.stack([c.average_precision(weights) for c in self._sorted]), axis=0)
        gold, preds = self._arrays["gold"], self._arrays["predictions"]
        out = np.empty(idx.shape[0])
        for r, row in enumerate(idx):
            out[r] = np.mean([_classification_metric(self.method, gold[row], p[row]) for p in preds])
        return out

    def reported(self) -> float:
        """The score as mteb reports it: rounded as mteb rounds this metric."""
        value = float(self.score())
        if self.round_digits is not None and not math.isnan(value):
            value = round(value, self.round_digits)
        return value

    def select(self, positions: Sequence[int]) -> Entry:
        """The same entry restricted to ``positions`` (used to align two models' items)."""
        pos = np.asarray(positions, dtype=int)
        if self.kind == "ap":
            data = {
                "labels": self._arrays["labels"][pos].tolist(),
                "scores": {k: np.asarray(v)[pos].tolist() for k, v in self.data["scores"].items()},
            }
        else:  # items are the last axis of every array
            data = {k: array[..., pos].tolist() for k, array in self._arrays.items()}
        return replace(self, ids=[self.ids[i] for i in pos], data=data, main_score=None, extra={})

    def to_dict(self) -> dict[str, Any]:
        out = {
            "split": self.split,
            "hf_subset": self.hf_subset,
            "kind": self.kind,
            "method": self.method,
            "round": self.round_digits,
            "main_score": self.main_score,
            "n_items": self.n,
            "ids": self.ids,
            "data": self.data,
        }
        if self.extra:
            out["extra"] = self.extra
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Entry:
        return cls(
            kind=raw["kind"],
            ids=[str(i) for i in raw["ids"]],
            data=raw["data"],
            split=raw.get("split", "test"),
            hf_subset=raw.get("hf_subset", "default"),
            method=raw.get("method"),
            round_digits=raw.get("round"),
            main_score=raw.get("main_score"),
            extra=raw.get("extra") or {},
        )


@dataclass
class DatasetItems:
    """All entries of one dataset (task) of one model, and the main score they reproduce."""

    task_name: str
    family: str
    main_score_name: str
    entries: list[Entry]
    main_score: float | None = None
    notes: list[str] = field(default_factory=list)

    def recomputed_main_score(self) -> float:
        """mteb's main score recomputed from the items: per entry (rounded as mteb), then the mean."""
        return float(np.mean([e.reported() for e in self.entries]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "poolattn_items_version": ITEMS_VERSION,
            "task_name": self.task_name,
            "family": self.family,
            "main_score_name": self.main_score_name,
            "main_score": self.main_score,
            "recomputed_main_score": self.recomputed_main_score(),
            "notes": self.notes,
            "entries": [e.to_dict() for e in self.entries],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "items") -> DatasetItems:
        try:
            version = raw["poolattn_items_version"]
            if version != ITEMS_VERSION:
                raise ItemsError(f"{where}: items version {version}, this poolattn reads {ITEMS_VERSION}")
            entries = [Entry.from_dict(e) for e in raw["entries"]]
        except ItemsError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ItemsError(f"{where}: not a poolattn items file ({type(exc).__name__}: {exc})") from exc
        if not entries:
            raise ItemsError(f"{where}: no entries")
        return cls(
            task_name=str(raw.get("task_name")),
            family=str(raw.get("family")),
            main_score_name=str(raw.get("main_score_name")),
            entries=entries,
            main_score=raw.get("main_score"),
            notes=list(raw.get("notes") or []),
        )


def items_path(directory: str | Path, task_name: str) -> Path:
    """Where a task's items live in a results directory."""
    return Path(directory) / f"{task_name}.items.json"


def read_json(path: str | Path, error: type[ValueError] = ItemsError) -> Any:
    """A JSON file's content; ``error`` naming the file when it is missing, empty or corrupt."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: missing")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise error(f"{path}: empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: corrupt JSON ({exc.msg} at line {exc.lineno})") from exc


def read_items(path: str | Path) -> DatasetItems:
    """Load one ``<Task>.items.json``; errors name the file."""
    return DatasetItems.from_dict(read_json(path), str(path))
