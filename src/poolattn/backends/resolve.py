"""The one model-string resolver: what ``poolattn eval``, ``encode``, ``mine`` accept as MODEL.

In order: a saved poolattn model dir, a sentence-transformers model dir, ``all-MiniLM-L6-v2``
(the packaged copy; also ``minilm``), a design spec ``BASE:POOLING+ATTENTION`` (an untrained
design, e.g. ``smollm2-135m:eos+causal``), a backbone alias, a transformers backbone folder or a
``.gguf`` file (the last three with the default design, eos+causal).
"""

from __future__ import annotations

from pathlib import Path

from ..config import DTYPES, ConfigError, check_choice
from ..design import parse_design_spec
from ..dtypes import resolve_dtype
from .base import MINILM_NAME, Backend, PoolattnBackend, SentenceTransformerBackend, load_sentence_transformer

ST_MARKERS = ("modules.json", "config_sentence_transformers.json")


def load_backend(spec: str, dtype: str | None = None) -> Backend:
    """The backend a model string names (see the module docstring); a clear error otherwise.
    ``dtype`` (``ModelConfig.dtype``) loads a poolattn backbone in it; an s-t model is cast whole."""
    from ..backbone import ALIASES
    from ..model import EmbeddingModel
    from ..model_dir import DESIGN_FILE, is_model_dir

    path = Path(spec).expanduser()
    if is_model_dir(path):
        return PoolattnBackend(EmbeddingModel.load(path, dtype=dtype))
    st_dir = path.is_dir() and any((path / marker).exists() for marker in ST_MARKERS)
    # all-MiniLM-L6-v2 in any case, with or without an owner, when no such path exists
    minilm = spec.lower() == "minilm" or spec.split("/")[-1].lower() == MINILM_NAME.lower()
    if st_dir or (minilm and not path.exists()):
        model = load_sentence_transformer(str(path) if st_dir else MINILM_NAME)
        if dtype is not None:  # loaded in float32: cast whole
            check_choice("dtype", dtype, DTYPES)
            model = model.to(resolve_dtype(dtype).torch_dtype)
        return SentenceTransformerBackend(model, path.name if st_dir else MINILM_NAME)
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
