"""Resolve the MODEL argument of ``poolattn eval`` into something the encoder wraps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import ATTENTION_MODES, POOLING_NAMES, ConfigError
from .encoder import MINILM_NAME, SentenceTransformerBackend, load_sentence_transformer


def parse_design_spec(spec: str) -> tuple[str, str, str] | None:
    """``base:pooling+attention`` (e.g. ``smollm2-135m:eos+causal``) -> (base, pooling, attention)."""
    if ":" not in spec:
        return None
    base, design = spec.rsplit(":", 1)
    if "+" not in design:
        return None
    pooling, attention = design.split("+", 1)
    if pooling not in POOLING_NAMES or attention not in ATTENTION_MODES:
        raise ConfigError(
            f"model spec {spec!r}: design must be POOLING+ATTENTION with pooling in {', '.join(POOLING_NAMES)} "
            f"and attention in {', '.join(ATTENTION_MODES)}"
        )
    return base, pooling, attention


def load_model(spec: str) -> Any:
    """A poolattn model dir, a design spec ``base:pooling+attention`` (untrained head/backbone),
    a sentence-transformers model dir, or ``all-MiniLM-L6-v2`` (the packaged copy)."""
    from ..model import DESIGN_FILE, EmbeddingModel

    path = Path(spec)
    if (path / DESIGN_FILE).exists():
        return EmbeddingModel.load(path)
    if path.is_dir() and (
        (path / "modules.json").exists() or (path / "config_sentence_transformers.json").exists()
    ):
        return SentenceTransformerBackend(load_sentence_transformer(str(path)), path.name)
    if spec.split("/")[-1] == MINILM_NAME:
        return SentenceTransformerBackend(load_sentence_transformer(spec), MINILM_NAME)
    parsed = parse_design_spec(spec)
    if parsed is not None:
        base, pooling, attention = parsed
        return EmbeddingModel.from_pretrained(base, attention=attention, pooling=pooling)
    if path.exists():
        raise FileNotFoundError(
            f"{spec}: neither a poolattn model dir ({DESIGN_FILE}) nor a sentence-transformers dir"
        )
    raise ConfigError(
        f"model {spec!r}: give a poolattn model dir, a design spec like 'smollm2-135m:eos+causal', "
        f"a sentence-transformers model dir or '{MINILM_NAME}'"
    )
