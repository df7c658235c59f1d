"""Hard-negative mining: rank candidate texts per query with any backend, keep a rank window.
Candidates are the positives (plus an optional corpus) minus the positive's near-duplicates; a
query left with fewer than ``num_negatives`` is dropped."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..backends.base import Backend
from ..config import ConfigError
from ..io import atomic_file
from .data import Example, read_examples, same_text_key


@dataclass
class MiningSettings:
    """Rank window ``[rank_start, rank_end)`` (0 = most similar), how many negatives to keep,
    and the filters: ``margin`` drops candidates scored within ``margin`` of the positive
    (likely false negatives); ``max_duplicate_similarity`` drops near-duplicates of the positive."""

    num_negatives: int = 1
    rank_start: int = 0
    rank_end: int = 50
    margin: float = 0.0
    max_duplicate_similarity: float = 0.95
    instruction: str | None = None
    batch_size: int = 32

    def validate(self) -> None:
        if self.num_negatives < 1:
            raise ConfigError(f"num_negatives: must be >= 1, got {self.num_negatives}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1, got {self.batch_size}")
        if not 0 <= self.rank_start < self.rank_end:
            raise ConfigError(f"rank window: need 0 <= start < end, got [{self.rank_start}, {self.rank_end})")


def _encode(
    backend: Backend, texts: Sequence[str], query: bool, instruction: str | None, batch_size: int
) -> torch.Tensor:
    vectors = backend.encode(list(texts), query=query, instruction=instruction, batch_size=batch_size)
    return torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))


def mine_hard_negatives(
    examples: Sequence[Example],
    backend: Backend,
    settings: MiningSettings | None = None,
    corpus: Sequence[str] | None = None,
) -> list[Example]:
    """The examples with ``num_negatives`` mined negatives each (fewer eligible candidates: the
    example is dropped); the candidates are every positive plus ``corpus``, de-duplicated."""
    settings = settings or MiningSettings()
    settings.validate()
    pool = list(dict.fromkeys([e.positive for e in examples] + list(corpus or [])))
    pool_keys = [same_text_key(t) for t in pool]
    docs = _encode(backend, pool, False, None, settings.batch_size)
    positive_index = {key: i for i, key in enumerate(pool_keys)}
    mined: list[Example] = []
    by_instruction: dict[str | None, list[int]] = {}
    for i, e in enumerate(examples):
        by_instruction.setdefault(settings.instruction or e.instruction, []).append(i)
    for instruction, indices in by_instruction.items():
        queries = [examples[i].query for i in indices]
        scores = _encode(backend, queries, True, instruction, settings.batch_size) @ docs.T
        depth = min(settings.rank_end + settings.num_negatives + 5, len(pool))
        top = scores.topk(depth, dim=1).indices
        for row, i in enumerate(indices):
            e = examples[i]
            p = positive_index[same_text_key(e.positive)]
            pos_score = float(scores[row, p])
            chosen: list[str] = []
            for c in top[row, settings.rank_start : settings.rank_end].tolist():
                # the positive and every text that normalises like it or like the query
                if pool_keys[c] in (pool_keys[p], same_text_key(e.query)):
                    continue
                if float(scores[row, c]) > pos_score - settings.margin:
                    continue
                if float(docs[c] @ docs[p]) >= settings.max_duplicate_similarity:
                    continue
                chosen.append(pool[c])
                if len(chosen) == settings.num_negatives:
                    break
            if len(chosen) == settings.num_negatives:
                mined.append(Example(e.query, e.positive, tuple(chosen), e.instruction, e.source))
    return mined


def write_triples(examples: Sequence[Example], path: str | Path) -> Path:
    """Write ``{query, positive, negative}`` JSONL (a string for one negative, else a list), atomically."""
    path = Path(path)
    with atomic_file(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for e in examples:
            neg: str | list[str] = e.negatives[0] if len(e.negatives) == 1 else list(e.negatives)
            record = {"query": e.query, "positive": e.positive, "negative": neg}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def read_corpus(path: str | Path) -> list[str]:
    """Candidate texts: a JSON object with a ``text`` string per line, or one plain text per line
    (both may mix); a bad line is a ``ConfigError`` naming file and line."""
    path = Path(path)
    texts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if not line.lstrip().startswith("{"):
            texts.append(line.strip())
            continue
        try:
            text = json.loads(line).get("text")
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(text, str):
            raise ConfigError(f"{path}:{number}: field 'text' must be a string")
        texts.append(text)
    return texts


def mine_file(
    input_path: str | Path,
    output_path: str | Path,
    model: Backend | str,
    settings: MiningSettings | None = None,
    corpus_path: str | Path | None = None,
    skip_invalid: bool = False,
) -> tuple[Path, int, int]:
    """Mine negatives for a pairs JSONL file; returns (output path, examples in, triples out)."""
    examples, _ = read_examples(input_path, skip_invalid=skip_invalid)
    corpus = None if corpus_path is None else read_corpus(corpus_path)
    if isinstance(model, str):
        from ..backends.resolve import load_backend

        model = load_backend(model)
    mined = mine_hard_negatives(examples, model, settings, corpus)
    return write_triples(mined, output_path), len(examples), len(mined)
