"""Export a poolattn model to other ecosystems (for now: sentence-transformers).

``export_sentence_transformers(model_or_dir, "out/")`` writes a directory that
``SentenceTransformer("out/", trust_remote_code=True)`` loads (poolattn must be installed;
ST >= 6 demands ``trust_remote_code`` for any module class outside its own package) and
whose embeddings match ``EmbeddingModel.encode``:

- documents: ``st.encode(texts)`` or ``st.encode_document(texts)`` == ``model.encode(texts)``;
- queries: ``st.encode_query(texts)`` (prompt ``"query"``) == ``model.encode(texts, "query")``;
  another instruction: ``st.encode_query(texts, instruction="...")`` or
  ``prompt=query_prompt(template, "...")``.

The pipeline is ``PoolattnModule`` (poolattn tokenization + backbone + pooler) then ST's
``Normalize``, so ST's output is L2-normalised like ``encode``'s default.
"""

from __future__ import annotations

from pathlib import Path

from .config import DEFAULT_INSTRUCTION
from .io import atomic_directory
from .model import EmbeddingModel
from .model_card import write_export_card
from .st_module import PICKLE_SUFFIXES, PoolattnModule, load_model_dir, query_prompt

FORMATS = ("sentence-transformers",)


def export_sentence_transformers(
    model_or_dir: EmbeddingModel | str | Path,
    output_dir: str | Path,
    *,
    instruction: str | None = None,
    bundle_backbone: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``model_or_dir`` as a sentence-transformers directory; returns its path.

    Args:
        model_or_dir: an ``EmbeddingModel`` or a saved poolattn model directory.
        output_dir: where to write (atomically: a failed export leaves nothing behind).
        instruction: the instruction of the ``"query"`` prompt (default: poolattn's default).
        bundle_backbone: copy the base backbone inside, so the export loads on a machine
            without the base (False keeps it small and resolves ``config.base`` at load).
        overwrite: replace an existing ``output_dir``.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize

    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{output_dir}: already exists and is not empty (pass overwrite=True / --overwrite)"
        )
    if isinstance(model_or_dir, EmbeddingModel):
        model, base_dir = model_or_dir, None
    else:
        model, base_dir = load_model_dir(model_or_dir)
    instruction = instruction or DEFAULT_INSTRUCTION
    module = PoolattnModule(model, base_dir=base_dir, bundle_backbone=bundle_backbone)
    was_training = model.training
    st = SentenceTransformer(
        modules=[module, Normalize()],
        prompts={"query": query_prompt(model.config.query_template, instruction), "document": ""},
        similarity_fn_name="cosine",
        device=str(model.device),
    )
    model.train(was_training)  # ST's constructor must not change the caller's model mode

    with atomic_directory(output_dir) as tmp:
        st.save(str(tmp), create_model_card=False)
        module_dir = next(
            p.name for p in tmp.iterdir() if p.is_dir() and p.name.endswith(PoolattnModule.__name__)
        )
        write_export_card(  # README.md with front matter, design, recipe, scores, usage
            tmp,
            module_dir,
            instruction=instruction,
            name=output_dir.name,
            path=str(output_dir),
            source_dir=None if isinstance(model_or_dir, EmbeddingModel) else model_or_dir,
        )
        pickles = [p for p in tmp.rglob("*") if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise RuntimeError(f"export would contain pickle files: {pickles}")
    return output_dir
