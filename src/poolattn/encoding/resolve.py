"""The one model-string resolver: what ``poolattn eval``, ``encode``, ``mine`` accept as MODEL.

In order: a saved poolattn model dir, a sentence-transformers model dir, ``all-MiniLM-L6-v2``
(the packaged copy; also ``minilm``), a design spec ``BASE:POOLING+ATTENTION`` (an untrained
design, e.g. ``smollm2-135m:eos+causal``), a backbone alias, a transformers backbone folder or a
``.gguf`` file (the last three with the default design, eos+causal).
"""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError
from ..design import parse_design_spec
from .backends import (
    MINILM_NAME,
    Backend,
    PoolattnBackend,
    SentenceTransformerBackend,
    load_sentence_transformer,
)

ST_MARKERS = ("modules.json", "config_sentence_transformers.json")


def is_minilm(spec: str) -> bool:
    """``all-MiniLM-L6-v2`` in any case, with or without an owner (``sentence-transformers/``)."""
    return spec.lower() == "minilm" or spec.split("/")[-1].lower() == MINILM_NAME.lower()


def load_backend(spec: str) -> Backend:
    """The backend a model string names (see the module docstring); a clear error otherwise."""
    from ..backbone import ALIASES
    from ..model import EmbeddingModel
    from ..model_dir import DESIGN_FILE, is_model_dir

    path = Path(spec).expanduser()
    if is_model_dir(path):
        return PoolattnBackend(EmbeddingModel.load(path))
    if path.is_dir() and any((path / marker).exists() for marker in ST_MARKERS):
        return SentenceTransformerBackend(load_sentence_transformer(str(path)), path.name)
    if is_minilm(spec) and not path.exists():
        return SentenceTransformerBackend(load_sentence_transformer(MINILM_NAME), MINILM_NAME)
    parsed = parse_design_spec(spec)
    if parsed is not None:
        base, pooling, attention = parsed
        return PoolattnBackend(EmbeddingModel.from_pretrained(base, attention=attention, pooling=pooling))
    if spec in ALIASES or (path.is_dir() and (path / "config.json").exists()) or path.suffix == ".gguf":
        return PoolattnBackend(EmbeddingModel.from_pretrained(spec))
    if path.exists():
        raise FileNotFoundError(
            f"{spec}: neither a poolattn model dir ({DESIGN_FILE}), a sentence-transformers dir "
            f"({' or '.join(ST_MARKERS)}), a transformers backbone folder (config.json) nor a .gguf file"
        )
    raise ConfigError(
        f"model {spec!r}: give a poolattn model dir, a design spec like 'smollm2-135m:eos+causal', "
        f"a backbone alias ({', '.join(ALIASES)}), a backbone folder or .gguf file, a sentence-transformers "
        f"model dir or '{MINILM_NAME}'"
    )
