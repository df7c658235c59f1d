"""Finding local evaluation datasets (``ROOT/<family folder>/<dataset>/``, see
../shared/data/README.md), and the files each one is read from: ``LAYOUT`` is the one home of
those names, so a caller can point a dataset at another split (``LocalDataset.files("dev")``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

__all__ = ["FOLDERS", "LAYOUT", "LocalDataset", "discover"]

FOLDERS = {
    "sts": "STS",
    "retrieval": "Retrieval",
    "classification": "Classification",
    "clustering": "Clustering",
    "pair_classification": "PairClassification",
    "reranking": "Reranking",
    "summarization": "Summarization",
}
_ONE_FILE = {"eval": "{split}.jsonl"}
# family -> role -> file name under the dataset folder; "{split}" is the evaluated split
LAYOUT: dict[str, dict[str, str]] = {
    **dict.fromkeys(["STS", "PairClassification", "Clustering", "Reranking", "Summarization"], _ONE_FILE),
    "Classification": {"train": "train.jsonl", "eval": "{split}.jsonl"},
    "Retrieval": {"corpus": "corpus.jsonl", "queries": "queries.jsonl", "qrels": "qrels/{split}.tsv"},
}


class LocalDataset(NamedTuple):
    """One dataset folder found under a data root: ``(folder, name, path)``."""

    folder: str  # the family folder, e.g. "sts"
    name: str
    path: Path

    @property
    def family(self) -> str:
        return FOLDERS[self.folder]

    @property
    def key(self) -> str:
        """``folder/name``: the dataset's name in results and the seed of its sampling."""
        return f"{self.folder}/{self.name}"

    def files(self, split: str = "test") -> dict[str, Path]:
        """Role -> file the family's sampler reads, for ``split`` (train data stays train)."""
        return {role: self.path / name.format(split=split) for role, name in LAYOUT[self.family].items()}

    def has_split(self, split: str) -> bool:
        return all(path.is_file() for path in self.files(split).values())


def discover(root: str | Path) -> list[LocalDataset]:
    """Every dataset under ``root`` (or ``root/eval``), sorted by family folder then name."""
    root = Path(root)
    if (root / "eval").is_dir() and not any((root / f).is_dir() for f in FOLDERS):
        root = root / "eval"
    found = []
    for folder in FOLDERS:
        base = root / folder
        if base.is_dir():
            subs = sorted(p for p in base.iterdir() if p.is_dir())
            found += [LocalDataset(folder, sub.name, sub) for sub in subs]
    if not found:
        raise FileNotFoundError(f"{root}: no datasets found (expected folders {', '.join(FOLDERS)})")
    return found
