"""Export a poolattn model to sentence-transformers (ONNX: ``onnx_export``).

**Plain** where ST's own modules express the design (eos -> ``lasttoken``, ``mean``,
``weighted_mean``): LoRA merged, the attention mode in the saved config (proven by
``verify_attention``), EOS appended by the saved tokenizer; it loads without poolattn or remote
code. Otherwise (``plain_export_blocker`` says why) one ``PoolattnModule``, loaded with
``trust_remote_code=True``. Both reproduce ``EmbeddingModel.encode``, except that a plain export
truncates a query's prompt with its text, so queries longer than ``max_length`` differ.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .backbone import AttentionModeError, verify_attention
from .config import DEFAULT_INSTRUCTION, ConfigError
from .io import atomic_directory, write_json_atomic
from .model import EmbeddingModel
from .model_card import read_card_data, write_export_card
from .st_module import PICKLE_SUFFIXES, PoolattnModule, load_model_dir, query_prompt

log = logging.getLogger(__name__)

FORMATS = ("sentence-transformers", "onnx")
# poolattn pooler -> sentence-transformers Pooling mode
ST_POOLING = {"eos": "lasttoken", "mean": "mean", "weighted_mean": "weightedmean"}
PROBE_TEXT = "Hello world, this is a text."
ST_CONFIG_FILE = "sentence_bert_config.json"  # sentence-transformers' Transformer module config


class PlainExportError(ConfigError):
    """The design cannot be written as plain sentence-transformers modules; the message says why."""


@dataclass
class ExportSource:
    """What every export starts from: the model, where it came from and the prompts to write."""

    model: EmbeddingModel
    output_dir: Path
    prompts: dict[str, str]
    source_dir: Path | None  # the saved model directory (None: an in-memory model)
    base_dir: Path | None  # its bundled base backbone, if any
    owned: bool  # loaded here, so free to modify (merge in place)

    def write_card(self, directory: Path, kind: str, dtype: torch.dtype | None = None) -> None:
        """The export's ``README.md``, carrying the source's recipe and evaluation."""
        write_export_card(
            directory,
            self.model,
            kind=kind,
            name=self.output_dir.name,
            path=str(self.output_dir),
            source_dir=self.source_dir,
            query_prompt=self.prompts["query"],
            dtype=None if dtype is None else str(dtype).removeprefix("torch."),
        )


def prepare_export(
    model_or_dir: EmbeddingModel | str | Path, output_dir: Path, instruction: str | None, overwrite: bool
) -> ExportSource:
    """Load what every export starts from, after refusing an existing ``output_dir``."""
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{output_dir}: already exists and is not empty (pass overwrite=True / --overwrite)"
        )
    if isinstance(model_or_dir, EmbeddingModel):
        model, base_dir, source_dir = model_or_dir, None, None
    else:
        source_dir = Path(model_or_dir)
        model, base_dir = load_model_dir(source_dir)
    training = read_card_data(source_dir).get("training") if source_dir else None
    prompts = export_prompts(model, training, instruction)
    return ExportSource(model, output_dir, prompts, source_dir, base_dir, owned=source_dir is not None)


def export_prompts(
    model: EmbeddingModel, training: dict[str, Any] | None, instruction: str | None
) -> dict[str, str]:
    """ST prompts: ``query`` (``instruction``, else the one training instruction, else poolattn's
    default), ``document`` (bare), one per training source and one per evaluation task."""
    from .evaluation.instructions import TASK_INSTRUCTIONS
    from .training.recipe import training_instructions

    template = model.config.query_template
    trained = training_instructions(training)
    distinct = sorted(set(trained.values()))
    default = instruction or (distinct[0] if len(distinct) == 1 else None)
    default = default or (training or {}).get("default_instruction") or DEFAULT_INSTRUCTION
    texts = {**TASK_INSTRUCTIONS, **trained, "query": default}
    return {**{name: query_prompt(template, text) for name, text in texts.items()}, "document": ""}


def plain_export_blocker(model: EmbeddingModel, prompts: dict[str, str] | None = None) -> str | None:
    """Why ST's own modules cannot reproduce this design (None when they can). Attention modes
    are checked later, on the saved weights (``export_plain``)."""
    cfg = model.config
    if cfg.pooling not in ST_POOLING:
        return f"pooling {cfg.pooling!r} has trained weights that sentence-transformers' Pooling cannot hold"
    if not cfg.append_eos:
        return "append_eos = false: the saved tokenizer always appends EOS"
    if cfg.exclude_instruction and cfg.pooling == "weighted_mean":
        return "weighted_mean with exclude_instruction: ST's position weights count the prompt tokens"
    if cfg.exclude_instruction and cfg.pooling == "mean":
        lead = len(_lead_ids(model.tokenizer))
        for name, prompt in (prompts or {}).items():
            if not prompt:
                continue
            alone = len(model.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            # poolattn's features of PROBE_TEXT behind the literal prompt (as ST hands it over)
            feats = model.tokenize([PROBE_TEXT], instruction=prompt, template="{instruction}{text}")
            prefix = int((feats["attention_mask"] - feats["pooling_mask"]).sum())
            if lead + alone != prefix:  # ST excludes the prompt's own tokens (and any BOS)
                return (
                    f"exclude_instruction: prompt {name!r} tokenizes differently alone than before a text "
                    f"({lead + alone} vs {prefix} prefix tokens), so ST would exclude the wrong tokens"
                )
    return None


def _lead_ids(tokenizer: Any) -> list[int]:
    """The special token ids the tokenizer puts before a text (e.g. BOS)."""
    ids = tokenizer("x", add_special_tokens=True)["input_ids"]
    bare = tokenizer("x", add_special_tokens=False)["input_ids"]
    start = next((i for i in range(len(ids)) if ids[i : i + len(bare)] == bare), 0)
    return list(ids[:start])


def eos_tokenizer(tokenizer: Any) -> Any:
    """A copy of ``tokenizer`` whose post-processor appends EOS (after any BOS it adds), so a
    plain ``tokenizer(texts)`` gives poolattn's input ids; right padding, so positions match;
    no chat template, so sentence-transformers embeds the text itself, not a chat turn."""
    from tokenizers import processors

    tok = copy.deepcopy(tokenizer)
    tok.chat_template, tok.padding_side = None, "right"
    eos, eos_id = tok.eos_token, tok.eos_token_id
    if tok("x", add_special_tokens=True)["input_ids"][-1] == eos_id:
        return tok
    lead = _lead_ids(tok)
    special = {tok.convert_ids_to_tokens(i): i for i in [*lead, eos_id]}
    single = f"{' '.join(tok.convert_ids_to_tokens(i) for i in lead)} $A:0 {eos}".strip()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=f"{single} $B:1 {eos}", special_tokens=list(special.items())
    )
    return tok


def merged_backbone(model: EmbeddingModel, dtype: torch.dtype, owned: bool) -> torch.nn.Module:
    """The backbone with any LoRA adapter merged in, in ``dtype`` (the caller's model untouched)."""
    backbone = model.backbone if owned else copy.deepcopy(model.backbone)
    if model.has_adapter:  # merge in float32: one rounding to ``dtype`` instead of two
        backbone = backbone.float().merge_and_unload()
    return backbone.to(dtype)


def export_plain(source: ExportSource, dtype: torch.dtype) -> Path:
    """Write ``source`` as ST's own Transformer + Pooling + Normalize; raises PlainExportError."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import AutoModel

    model, cfg = source.model, source.model.config
    blocker = plain_export_blocker(model, source.prompts)
    if blocker:
        raise PlainExportError(blocker)
    with tempfile.TemporaryDirectory(prefix="poolattn-export-") as scratch:
        backbone = merged_backbone(model, dtype, source.owned)
        backbone.save_pretrained(scratch, safe_serialization=True)
        eos_tokenizer(model.tokenizer).save_pretrained(scratch)
        try:  # load the saved backbone as transformers would and prove its attention mode
            verify_attention(AutoModel.from_pretrained(scratch), cfg.attention)
        except AttentionModeError as exc:
            raise PlainExportError(
                f"{type(backbone).__name__}: the saved config does not express {cfg.attention} attention ({exc})"
            ) from exc
        transformer = Transformer(scratch, max_seq_length=cfg.max_length, model_kwargs={"dtype": dtype})
        if transformer.tokenizer(PROBE_TEXT)["input_ids"][-1] != model.tokenizer.eos_token_id:
            raise PlainExportError("the saved tokenizer does not append EOS after loading")
        pooling = Pooling(
            transformer.get_embedding_dimension(),
            pooling_mode=ST_POOLING[cfg.pooling],
            include_prompt=not cfg.exclude_instruction,
        )
        st = SentenceTransformer(
            modules=[transformer, pooling, Normalize()],
            prompts=source.prompts,
            default_prompt_name=None,
            similarity_fn_name="cosine",
            device="cpu",
        )
        return _save(source, st, "plain", dtype)


def _save(source: ExportSource, st: Any, kind: str, dtype: torch.dtype | None = None) -> Path:
    """Write ``st`` and its card into the output directory atomically, refusing any pickle file."""
    with atomic_directory(source.output_dir) as tmp:
        st.save(str(tmp), create_model_card=False, safe_serialization=True)
        if dtype not in (None, torch.float32):
            _load_in_float32(tmp)
        source.write_card(tmp, kind, dtype)
        pickles = [p for p in tmp.rglob("*") if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise RuntimeError(f"export would contain pickle files: {pickles}")
    return source.output_dir


def _load_in_float32(directory: Path) -> None:
    """Make ``SentenceTransformer(path)`` compute in float32 over lower-precision stored weights
    (a caller's ``model_kwargs`` still wins): on SmolLM2-135M, bf16 compute does not reproduce
    itself to cosine 0.999 (batch 1 vs 32: 0.9886), while float32 compute over the same bf16
    weights gives 0.9996 to poolattn's float32 embeddings, and is ~5x faster without AMX."""
    path = directory / ST_CONFIG_FILE
    config = json.loads(path.read_text())
    config["model_kwargs"] = {**config.get("model_kwargs", {}), "dtype": "float32"}
    write_json_atomic(path, config)


def export_sentence_transformers(
    model_or_dir: EmbeddingModel | str | Path,
    output_dir: str | Path,
    *,
    instruction: str | None = None,
    plain: bool | None = None,
    dtype: str | None = None,
    bundle_backbone: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``model_or_dir`` as a sentence-transformers directory; returns its path.

    Args:
        model_or_dir: an ``EmbeddingModel`` or a saved poolattn model directory.
        output_dir: where to write (atomically: a failed export leaves nothing behind).
        instruction: the instruction of the ``"query"`` prompt (default: the training one).
        plain: True = plain export or an error; False = module export; None (default) = plain
            where the design allows, else the module export with a logged reason.
        dtype: the weights' dtype in a plain export (default: the model's compute dtype).
        bundle_backbone: module export: copy the base backbone inside (self-contained).
        overwrite: replace an existing ``output_dir``.
    """
    source = prepare_export(model_or_dir, Path(output_dir), instruction, overwrite)
    if plain is not False:
        torch_dtype = getattr(torch, dtype) if dtype else source.model.compute_dtype
        try:
            return export_plain(source, torch_dtype)
        except PlainExportError as exc:
            if plain:
                raise
            log.warning("plain sentence-transformers export impossible (%s): writing the module export", exc)
            if source.owned:  # the merge changed our copy: reload
                source = prepare_export(model_or_dir, source.output_dir, instruction, overwrite)
    return _export_module(source, bundle_backbone)


def _export_module(source: ExportSource, bundle_backbone: bool) -> Path:
    """The module export: one ``PoolattnModule`` then ``Normalize`` (needs trust_remote_code)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize

    model = source.model
    module = PoolattnModule(model, base_dir=source.base_dir, bundle_backbone=bundle_backbone)
    was_training = model.training
    st = SentenceTransformer(
        modules=[module, Normalize()],
        prompts=source.prompts,
        similarity_fn_name="cosine",
        device=str(model.device),
    )
    model.train(was_training)  # ST's constructor must not change the caller's model mode
    return _save(source, st, "module")


def export_kind(directory: str | Path) -> str:
    """``plain`` or ``module``: which kind of sentence-transformers export ``directory`` holds."""
    modules = json.loads((Path(directory) / "modules.json").read_text())
    return "module" if any(PoolattnModule.__name__ in m.get("type", "") for m in modules) else "plain"
