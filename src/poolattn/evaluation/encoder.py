"""A backend as an mteb 2.x encoder, with an embedding cache keyed by (backend fingerprint, prompt,
text): a model whose weights or compute dtype changed never receives another model's vectors."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType

from ..backends.base import as_backend
from .instructions import instruction_for


class EmbeddingCache:
    """Float32 vectors stored by (fingerprint, prompt, text) in one SQLite file per fingerprint
    (``directory=None``: in memory, for this process only)."""

    def __init__(self, directory: str | Path | None, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self._lock = threading.Lock()
        path = ":memory:"
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            path = str(Path(directory) / f"{fingerprint}.sqlite")
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")
        self.hits = 0
        self.misses = 0

    def key(self, text: str, prompt: str | None) -> bytes:
        """Hash of fingerprint, prompt (``None`` = bare document) and text."""
        payload = json.dumps([self.fingerprint, prompt, text], ensure_ascii=False).encode()
        return hashlib.blake2b(payload, digest_size=20).digest()

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for key, blob in self._db.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", chunk):
                    found[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: dict[bytes, np.ndarray]) -> None:
        with self._lock:
            rows = [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items.items()]
            self._db.executemany("INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)", rows)
            self._db.commit()

    def close(self) -> None:
        self._db.close()


class MTEBEncoder(AbsEncoder):
    """mteb's ``EncoderProtocol`` for a backend: per-task query instructions, bare documents,
    float32 output, and every text looked up in the embedding cache before encoding."""

    def __init__(self, model: Any, *, cache_dir: str | Path | None = None, batch_size: int = 32) -> None:
        self.backend = as_backend(model)
        self.model = self.backend  # mteb's AbsEncoder looks for similarity functions on it
        self.batch_size = batch_size
        self.model_fingerprint = self.backend.fingerprint()
        self.cache = EmbeddingCache(cache_dir, self.model_fingerprint)
        info = self.backend.describe()
        self.mteb_model_meta = ModelMeta.create_empty(
            {
                "name": self.backend.name,
                "revision": self.model_fingerprint[:12],
                "similarity_fn_name": ScoringFunction.COSINE,
                "embed_dim": info.get("embedding_dim"),
                "use_instructions": self.backend.uses_instructions,
                "framework": ["PyTorch"],
            }
        )
        self.encoded_texts = 0
        self.empty_texts: Counter[str] = Counter()  # task name -> blank texts passed in by mteb

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        texts = [str(t) for batch in inputs for t in batch["text"]]
        self.empty_texts[str(task_metadata.name)] += sum(1 for t in texts if not t.strip())
        query = prompt_type != PromptType.document
        instruction = None
        if query and self.backend.uses_instructions:
            instruction = instruction_for(task_metadata.name, task_metadata.type)
        return self.encode_texts(texts, query=query, instruction=instruction)

    def encode_texts(self, texts: Sequence[str], *, query: bool, instruction: str | None) -> np.ndarray:
        """Vectors for ``texts`` in order: cached ones read, unique missing ones encoded once; blank
        texts are embedded as ``""`` (one vector for every blank text)."""
        texts = [t if t.strip() else "" for t in texts]
        prompt = f"query:{instruction}" if query else None
        keys = [self.cache.key(t, prompt) for t in texts]
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
        self.cache.hits += len(keys) - sum(1 for k in keys if k in missing)
        self.cache.misses += len(missing)
        if missing:
            vectors = self.backend.encode(
                list(missing.values()), query=query, instruction=instruction, batch_size=self.batch_size
            )
            new = dict(zip(missing.keys(), vectors, strict=True))
            self.cache.put_many(new)
            found.update(new)
            self.encoded_texts += len(missing)
        if not keys:
            return np.zeros((0, int(self.mteb_model_meta.embed_dim or 0)), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
