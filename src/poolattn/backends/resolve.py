"""The one model-string resolver: what ``poolattn eval``, ``encode``, ``mine`` accept as MODEL.

In order: a saved poolattn model dir, a sentence-transformers model dir, ``all-MiniLM-L6-v2``
(the packaged copy; also ``minilm``), a design spec ``BASE:POOLING+ATTENTION`` (an untrained
design, e.g. ``smollm2-135m:eos+causal``), a backbone alias, a transformers backbone folder or a
``.gguf`` file (the last three with the default design, eos+causal).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DTYPES, ConfigError, check_choice
from ..design import parse_design_spec
from ..dtypes import resolve_dtype
from .base import MINILM_NAME, Backend, PoolattnBackend, SentenceTransformerBackend, load_sentence_transformer

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

ST_MARKERS = ("modules.json", "config_sentence_transformers.json")


def is_minilm(spec: str) -> bool:
    """``all-MiniLM-L6-v2`` in any case, with or without an owner (``sentence-transformers/``)."""
    return spec.lower() == "minilm" or spec.split("/")[-1].lower() == MINILM_NAME.lower()


def load_backend(spec: str, dtype: str | None = None) -> Backend:
    """The backend a model string names (see the module docstring); a clear error otherwise.

    ``dtype`` (a ``ModelConfig.dtype`` value) loads a poolattn model's backbone in that dtype
    (never a cast after loading); a sentence-transformers model is cast whole.
    """
    from ..backbone import ALIASES
    from ..model import EmbeddingModel
    from ..model_dir import DESIGN_FILE, is_model_dir

    path = Path(spec).expanduser()
    if is_model_dir(path):
        return PoolattnBackend(EmbeddingModel.load(path, dtype=dtype))
    if path.is_dir() and any((path / marker).exists() for marker in ST_MARKERS):
        return SentenceTransformerBackend(_cast(load_sentence_transformer(str(path)), dtype), path.name)
    if is_minilm(spec) and not path.exists():
        return SentenceTransformerBackend(_cast(load_sentence_transformer(MINILM_NAME), dtype), MINILM_NAME)
    options = {} if dtype is None else {"dtype": dtype}
    parsed = parse_design_spec(spec)
    if parsed is not None:
        base, pooling, attention = parsed
        return PoolattnBackend(
            EmbeddingModel.from_pretrained(base, attention=attention, pooling=pooling, **options)
        )
    if spec in ALIASES or (path.is_dir() and (path / "config.json").exists()) or path.suffix == ".gguf":
        return PoolattnBackend(EmbeddingModel.from_pretrained(spec, **options))
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


def _cast(model: SentenceTransformer, dtype: str | None) -> SentenceTransformer:
    """A sentence-transformers model (loaded in float32) in ``dtype``, whole; as is for None."""
    if dtype is None:
        return model
    check_choice("dtype", dtype, DTYPES)
    return model.to(resolve_dtype(dtype).torch_dtype)
