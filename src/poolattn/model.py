"""The embedding model: a decoder backbone (in an attention mode) + a pooler.

``EmbeddingModel.from_pretrained("smollm2-135m", attention="bidirectional", pooling="multilayer")``
loads a design; ``encode`` embeds texts; ``save``/``load`` round-trip the design, the
pooling head (safetensors) and a LoRA adapter (PEFT) when present (the directory's layout and
its design file belong to ``poolattn.model_dir``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .backbone import load_backbone, set_attention_mode, setup_tokenizer, text_config, verify_attention
from .backends.fingerprint import weights_fingerprint
from .config import DEFAULT_INSTRUCTION, LORA_TARGETS, ConfigError, ModelConfig, from_dict, to_dict
from .design import model_config, validate_design
from .dtypes import compute_autocast, floating_dtype, model_compute_dtype
from .io import atomic_directory
from .model_dir import (
    ADAPTER_DIR,
    BACKBONE_DIR,
    DESIGN_FILE,
    HEAD_FILE,
    is_model_dir,
    load_parts,
    read_design,
    write_design,
)
from .peft_compat import quiet_peft, use_uniform_dropout
from .pooling import LAST_LAYER, build_pooler
from .tokenization import check_texts, per_text, tokenize

log = logging.getLogger(__name__)

ENCODE_CHUNK = 2048  # texts tokenized at once by encode(): bounds memory on large corpora
# Fewest shared leading tokens worth a second backbone call (``EmbeddingModel.shared_prefix``).
MIN_SHARED_PREFIX = 4


def length_chunks(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Indices of ``texts``, longest (in characters) first, cut into the chunks ``encode``
    tokenizes at once. Distributed evaluation hands out these chunks whole, so every rank builds
    the batches one process would (bit-identical vectors)."""
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    size = batch_size * max(1, ENCODE_CHUNK // batch_size)
    return [order[start : start + size] for start in range(0, len(order), size)]


class EmbeddingModel(nn.Module):
    """A decoder LLM turned into a text-embedding model."""

    # Inference runs a batch's shared prompt prefix once under causal attention (``shared_prefix``);
    # False runs every row whole (the reference the equivalence test compares against).
    share_prefix: bool = True
    # LoRA dropout draws its masks with ``UniformDropout`` (cheaper than nn.Dropout's bernoulli_);
    # False keeps peft's nn.Dropout (the reference bench/train_step.py compares against).
    uniform_dropout: bool = True

    def __init__(
        self,
        backbone: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: ModelConfig,
        *,
        verify: bool = True,
        head_seed: int = 0,
        full_finetune: bool = False,
    ) -> None:
        """``head_seed`` seeds the trainable head's own initialisation (the global RNG is not
        touched, so the head never shifts another component's random start).
        ``full_finetune``: the backbone's own weights are trained, so ``save`` writes the whole
        backbone (part of the saved design; otherwise only the head and any LoRA adapter)."""
        super().__init__()
        validate_design(config)  # the pooler's own settings too, kept in the config as saved
        self.config = config
        self.backbone = backbone
        self.tokenizer = tokenizer
        setup_tokenizer(tokenizer, config.padding_side)
        set_attention_mode(backbone, config.attention)
        if verify:
            verify_attention(backbone, config.attention)
        self.pooler = build_pooler(config, self.embedding_dim, self.num_layers, head_seed)
        # float32 whatever the backbone's dtype: bf16 weights would not move under AdamW at lr 1e-5
        self.pooler.to(device=self.device, dtype=torch.float32)
        self._full_finetune = bool(full_finetune)
        # The backbone runs in this dtype (autocast); frozen weights may be stored in it, while
        # trainable weights, pooling and the returned embeddings stay float32.
        self.compute_dtype: torch.dtype = model_compute_dtype(config.dtype, backbone)
        if self.compute_dtype == torch.float32 and floating_dtype(backbone) != torch.float32:
            backbone.float()  # an explicit float32 over lower-precision weights: upcast them

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = "smollm2-135m",
        attention: str | None = None,
        pooling: str | None = None,
        *,
        full_finetune: bool = False,
        **options: Any,
    ) -> EmbeddingModel:
        """Load a backbone (alias, local dir, GGUF file or hub id) as the given design
        (``attention`` defaults to causal, ``pooling`` to eos).

        ``options`` are ModelConfig fields (max_length, head, head_preset, poolers,
        exclude_instruction, dtype, attn_implementation, padding_side, ...).
        A saved poolattn model directory loads as saved: ``attention``, ``pooling`` or an
        option that differs from its design is an error (a saved head only fits its design).
        """
        if is_model_dir(name_or_path):
            _check_saved_design(Path(name_or_path), attention, pooling, options, full_finetune)
            return cls.load(name_or_path)
        config = model_config(
            pooling=pooling or "eos", attention=attention or "causal", base=str(name_or_path), **options
        )
        return cls.from_config(config, full_finetune=full_finetune)

    @classmethod
    def from_config(cls, config: ModelConfig, *, full_finetune: bool = False) -> EmbeddingModel:
        """Build the (untrained) design described by ``config``."""
        backbone, tokenizer = load_backbone(config)
        return cls(backbone, tokenizer, config, full_finetune=full_finetune)

    @property
    def full_finetune(self) -> bool:
        """Whether the backbone's own weights are trained (and saved whole)."""
        return self._full_finetune

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @property
    def embedding_dim(self) -> int:
        return int(text_config(self.backbone).hidden_size)

    @property
    def num_layers(self) -> int:
        return int(text_config(self.backbone).num_hidden_layers)

    # ----------------------------------------------------------------- LoRA
    def add_lora(
        self, r: int = 16, alpha: int = 32, dropout: float = 0.1, target_modules: Sequence[str] | None = None
    ) -> None:
        """Wrap the backbone with a PEFT LoRA adapter (the backbone's own weights frozen)."""
        from peft import LoraConfig, get_peft_model

        targets = list(target_modules or LORA_TARGETS)
        present = {name.rsplit(".", 1)[-1] for name, _ in self.backbone.named_modules()}
        missing = [t for t in targets if t not in present]
        if missing:
            raise ConfigError(f"lora.target_modules: {missing} not found in {type(self.backbone).__name__}")
        lora = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
        with quiet_peft():
            self.backbone = get_peft_model(self.backbone, lora)
        if self.uniform_dropout:
            use_uniform_dropout(self.backbone)
        set_attention_mode(self.backbone, self.config.attention)

    @property
    def has_adapter(self) -> bool:
        return hasattr(self.backbone, "peft_config")

    # ----------------------------------------------------------------- forward
    def tokenize(
        self,
        texts: Sequence[str],
        prompt_type: str | None = None,
        instruction: str | Sequence[str | None] | None = None,
        allow_empty: bool = False,
        template: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """Model inputs for ``texts``; queries get the instruction prompt (one for all texts or
        one per text), documents are bare. ``allow_empty``: as in ``encode``; ``template``
        replaces the design's query template (a free-form sentence-transformers prompt)."""
        if prompt_type not in (None, "query", "document"):
            raise ValueError(f"prompt_type: {prompt_type!r} is not valid; choose None, 'query' or 'document'")
        instructions = per_text(instruction, len(texts))
        if prompt_type == "document":
            instructions = [None] * len(texts)
        elif prompt_type == "query":
            instructions = [i or DEFAULT_INSTRUCTION for i in instructions]
        return tokenize(
            self.tokenizer,
            check_texts(texts, allow_empty=allow_empty),
            max_length=self.config.max_length,
            template=template or self.config.query_template,
            instruction=instructions,
            append_eos=self.config.append_eos,
            padding_side=self.config.padding_side,
            max_instruction_length=self.config.max_instruction_length,
        )

    def hidden_states(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The states the pooler reads (its ``layers_read``) for tokenized ``features``, in
        ``compute_dtype``: every layer's (embeddings first), or a 1-tuple of ``last_hidden_state``
        (after the final norm, as ``hidden_states[-1]``) with no other layer's activations kept."""
        every = self.pooler.layers_read != LAST_LAYER
        ids, mask, positions = (
            features[k].to(self.device) for k in ("input_ids", "attention_mask", "position_ids")
        )
        shared = self.shared_prefix(ids, mask)
        with compute_autocast(self.device, self.compute_dtype):
            if shared:
                return self._states_after_shared_prefix(ids, mask, positions, shared, every)
            out = self.backbone(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                output_hidden_states=every,
                use_cache=False,
            )
        return out.hidden_states if every else (out.last_hidden_state,)

    def shared_prefix(self, ids: torch.Tensor, mask: torch.Tensor) -> int:
        """How many leading tokens every row of an inference batch shares (0: run it whole).

        Under causal attention a token's states depend only on the tokens before it, so a prefix
        that all rows share (a task's instruction prompt, ~15-25 tokens) can run once and be
        read from the KV cache by every row: the same states, computed once instead of B times.
        Only without autograd and outside training (GradCache's first pass must replay dropout
        exactly), with right padding, and with at least one own token left in every row.
        """
        if (
            not self.share_prefix
            or self.training
            or torch.is_grad_enabled()
            or self.config.attention != "causal"
            or self.config.padding_side != "right"
            or ids.shape[0] < 2
        ):
            return 0
        same = ((ids == ids[:1]).all(dim=0) & mask.bool().all(dim=0)).long().cumprod(dim=0)
        shared = min(int(same.sum()), int(mask.sum(dim=1).min()) - 1)
        return shared if shared >= MIN_SHARED_PREFIX else 0

    def _states_after_shared_prefix(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, shared: int, every: bool
    ) -> tuple[torch.Tensor, ...]:
        """``hidden_states`` with the first ``shared`` tokens run once (see ``shared_prefix``):
        the prefix's states are broadcast to every row, so poolers see the full sequence."""
        rows = ids.shape[0]
        head = self.backbone(
            input_ids=ids[:1, :shared],
            attention_mask=mask[:1, :shared],
            position_ids=positions[:1, :shared],
            output_hidden_states=every,
            use_cache=True,
        )
        cache = head.past_key_values
        cache.batch_repeat_interleave(rows)
        tail = self.backbone(
            input_ids=ids[:, shared:],
            attention_mask=mask,
            position_ids=positions[:, shared:],
            past_key_values=cache,
            output_hidden_states=every,
            use_cache=True,
        )
        pairs = (
            zip(head.hidden_states, tail.hidden_states, strict=True)
            if every
            else [(head.last_hidden_state, tail.last_hidden_state)]
        )
        return tuple(torch.cat([h.expand(rows, -1, -1), t], dim=1) for h, t in pairs)

    def forward(
        self, features: dict[str, torch.Tensor], pool: Callable[..., torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Un-normalised float32 embeddings (B x D) for tokenized ``features``; keeps the graph.
        ``pool`` stands in for the pooler with the same inputs (the layer ablation passes
        ``pooler.layer_vectors``)."""
        states = self.hidden_states(features)
        return (pool or self.pooler)(states, *self.pooler_masks(features)).float()

    def pooler_masks(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention and pooling masks the pooler reads, on the model's device (the one
        pooling-mask rule: the instruction prefix is left out only when the design says so)."""
        attention = features["attention_mask"].to(self.device)
        if not self.config.exclude_instruction:
            return attention, attention
        return attention, features["pooling_mask"].to(self.device)

    @contextmanager
    def inference(self) -> Iterator[None]:
        """Eval mode without autograd; a training model gets its mode back, also on an error."""
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.train(was_training)

    def input_batches(
        self,
        texts: Sequence[str],
        prompt_type: str | None = None,
        instruction: str | None = None,
        batch_size: int = 32,
        allow_empty: bool = False,
    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """(indices into ``texts``, their model inputs) batch by batch: the one batching of every
        encoder (``encode``, ``poolattn encode``, distributed evaluation, the layer ablation).

        Each chunk (``length_chunks``) is tokenized once; its batches are cut by token length,
        which pads far less than character order, and their shared padding is trimmed, so a
        batch's inputs are exactly those of tokenizing it alone.
        """
        items = check_texts(texts, allow_empty=allow_empty)
        for chunk in length_chunks(items, batch_size):
            features = self.tokenize([items[i] for i in chunk], prompt_type, instruction, allow_empty)
            lengths = features["attention_mask"].sum(dim=1)
            by_tokens = torch.argsort(lengths, descending=True, stable=True).tolist()
            full = features["input_ids"].shape[1]
            for start in range(0, len(chunk), batch_size):
                rows = by_tokens[start : start + batch_size]
                width = int(lengths[rows].max())
                cols = slice(0, width) if self.config.padding_side == "right" else slice(full - width, full)
                yield [chunk[i] for i in rows], {key: value[rows, cols] for key, value in features.items()}

    def encode(
        self,
        texts: Sequence[str] | str,
        prompt_type: Literal["query", "document"] | None = None,
        instruction: str | None = None,
        batch_size: int = 32,
        normalize: bool = True,
        show_progress_bar: bool | None = None,
        convert_to: Literal["numpy", "torch"] = "numpy",
        allow_empty: bool = False,
    ) -> np.ndarray | torch.Tensor:
        """Embed ``texts`` (float32, input order), batched by ``input_batches``.

        An empty or blank text is an error unless ``allow_empty=True``: then it is embedded as
        an empty input, the query prompt (if any) followed by EOS (evaluation uses this, so a
        corpus's empty documents stay in the corpus, as MTEB keeps them).
        """
        single = isinstance(texts, str)
        items = check_texts([texts] if single else list(texts), allow_empty=allow_empty)
        out = torch.zeros((len(items), self.embedding_dim), dtype=torch.float32)
        show = len(items) >= 1024 if show_progress_bar is None else show_progress_bar
        batches = -(-len(items) // max(1, batch_size))
        with self.inference(), tqdm(total=batches, desc="encode", disable=not show, unit="batch") as bar:
            for rows, batch in self.input_batches(items, prompt_type, instruction, batch_size, allow_empty):
                emb = self.forward(batch)
                out[rows] = (torch.nn.functional.normalize(emb, dim=-1) if normalize else emb).cpu()
                bar.update(1)
        result = out[0] if single else out
        return result if convert_to == "torch" else result.numpy()

    # ----------------------------------------------------------------- reporting
    def describe(self) -> dict[str, Any]:
        """Parameter counts (backbone total and trainable, head) and the design."""
        backbone_total = sum(p.numel() for p in self.backbone.parameters())
        adapter = sum(p.numel() for n, p in self.backbone.named_parameters() if "lora_" in n)
        head = sum(p.numel() for p in self.pooler.parameters())
        return {
            "design": self.config.name,
            "base": self.config.base,
            "backbone_parameters": backbone_total - adapter,
            "adapter_parameters": adapter,
            "head_parameters": head,
            "embedding_dim": self.embedding_dim,
            "layers": self.num_layers,
            "compute_dtype": str(self.compute_dtype).removeprefix("torch."),
        }

    def fingerprint(self) -> str:
        """A hash of the design and every weight: a changed model gets a new fingerprint."""
        return weights_fingerprint(to_dict(self.config), self.state_dict(), sort_keys=True)

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | Path, *, training: dict[str, Any] | None = None) -> Path:
        """Write design JSON, head safetensors and adapter (or full backbone) atomically, with a
        generated model card (``README.md``; ``training``: the recipe from
        ``poolattn.training.recipe.training_recipe``)."""
        from .model_card import write_model_card

        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            write_design(tmp, self.config, has_adapter=self.has_adapter, full_finetune=self.full_finetune)
            head = {k: v.detach().cpu().contiguous() for k, v in self.pooler.state_dict().items()}
            save_file(head, str(tmp / HEAD_FILE))
            if self.has_adapter:
                self.backbone.save_pretrained(tmp / ADAPTER_DIR)
            if self.full_finetune:
                base = self.backbone.merge_and_unload() if self.has_adapter else self.backbone
                base.save_pretrained(tmp / BACKBONE_DIR, safe_serialization=True)
                self.tokenizer.save_pretrained(tmp / BACKBONE_DIR)
            write_model_card(
                tmp, name=directory.name, path=str(directory), parameters=self.describe(), training=training
            )
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, device: str | torch.device | None = None, *, dtype: str | None = None
    ) -> EmbeddingModel:
        """Load a saved model (never unpickles: safetensors + JSON + PEFT adapter); a bundled
        ``base/`` backbone copy (sentence-transformers export) is preferred over ``config.base``.

        ``dtype`` (a ``ModelConfig.dtype`` value) loads the backbone in that dtype instead of the
        saved one: loaded so, not cast afterwards (bf16 weights cast up are not a float32 model).
        """
        design = read_design(directory)
        if dtype is not None:
            where = f"{Path(directory) / DESIGN_FILE}: dtype"
            config = validate_design(
                from_dict(ModelConfig, {**to_dict(design.config), "dtype": dtype}, where)
            )
            design = dataclasses.replace(design, config=config)
        backbone, tokenizer, head = load_parts(design)
        model = cls(backbone, tokenizer, design.config, full_finetune=design.full_finetune)
        model.pooler.load_state_dict(head)
        if device is not None:
            model.to(device)
        model.eval()
        return model


def _check_saved_design(
    directory: Path, attention: str | None, pooling: str | None, options: dict[str, Any], full_finetune: bool
) -> None:
    """Refuse ``from_pretrained`` arguments that contradict a saved design (never ignore them)."""
    design = read_design(directory)
    saved = to_dict(design.config)
    wanted = {"attention": attention, "pooling": pooling, **options}
    if full_finetune:
        wanted["full_finetune"] = True
        saved["full_finetune"] = design.full_finetune
    differ = [
        f"{key}={value!r} (saved: {saved.get(key, '<not a design field>')!r})"
        for key, value in wanted.items()
        if value is not None and (key not in saved or not _agrees(value, saved[key]))
    ]
    if differ:
        raise ConfigError(
            f"{directory}: a saved poolattn model loads as saved; these arguments contradict its "
            f"design: {', '.join(differ)}. Drop them, or pass the base model to build a new design."
        )


def _agrees(value: Any, saved: Any) -> bool:
    """Whether an argument matches the saved value (a table: the keys it gives)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict) and isinstance(saved, dict):
        return all(key in saved and _agrees(item, saved[key]) for key, item in value.items())
    return value == saved
