"""A saved poolattn model directory: its file names, and the one reader and writer of its design.

``poolattn.json`` (the design), ``pooler.safetensors`` (the head), ``adapter/`` (PEFT LoRA),
``backbone/`` (a fully fine-tuned backbone) and, in a sentence-transformers export, ``base/`` (the
bundled base). ``EmbeddingModel.load`` and the ST module both read through ``read_design``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ConfigError, ModelConfig, from_dict, to_dict
from .io import load_safetensors

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DESIGN_FILE = "poolattn.json"
HEAD_FILE = "pooler.safetensors"
ADAPTER_DIR = "adapter"
BACKBONE_DIR = "backbone"
BUNDLED_BASE_DIR = "base"
# 2: pre-norm cross-attention heads with a GEGLU feed-forward (`head.ff_mult`), the
# instruction's own token budget; heads of format 1 have other weights and cannot be loaded.
FORMAT_VERSION = 2


@dataclass(frozen=True)
class SavedDesign:
    """What ``poolattn.json`` says about a model directory."""

    directory: Path
    config: ModelConfig
    has_adapter: bool
    full_finetune: bool

    @property
    def bundled_base(self) -> Path | None:
        """The base backbone bundled by the sentence-transformers export, if present and used
        (a fully fine-tuned model carries its whole backbone instead)."""
        path = self.directory / BUNDLED_BASE_DIR
        return path if path.is_dir() and not self.full_finetune else None

    def backbone_config(self) -> ModelConfig:
        """The design pointed at the backbone to load: the saved full backbone, else the bundled
        base copy, else ``config.base`` itself."""
        local = self.directory / BACKBONE_DIR if self.full_finetune else self.bundled_base
        if local is None:
            return self.config
        where = f"{self.directory / DESIGN_FILE}: model"
        return from_dict(ModelConfig, {**to_dict(self.config), "base": str(local), "gguf_file": None}, where)


def is_model_dir(path: str | Path) -> bool:
    """True when ``path`` is a directory holding a poolattn design file."""
    return (Path(path) / DESIGN_FILE).is_file()


def write_design(directory: Path, config: ModelConfig, *, has_adapter: bool, full_finetune: bool) -> None:
    """Write ``poolattn.json`` into ``directory`` (already a temporary directory being filled)."""
    design = {
        "format_version": FORMAT_VERSION,
        "model": to_dict(config),
        "has_adapter": has_adapter,
        "full_finetune": full_finetune,
    }
    (directory / DESIGN_FILE).write_text(json.dumps(design, indent=2) + "\n")


def read_design(directory: str | Path) -> SavedDesign:
    """Read and check ``poolattn.json``; every error names the file (and the bad field or version)."""
    directory = Path(directory)
    path = directory / DESIGN_FILE
    design = read_design_file(directory)
    config = from_dict(ModelConfig, design["model"], f"{path}: model")
    flags = {}
    for key in ("has_adapter", "full_finetune"):
        value = design.get(key, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {key}: expected true or false, got {value!r}")
        flags[key] = value
    return SavedDesign(directory, config, **flags)


def read_design_file(directory: str | Path) -> dict[str, Any]:
    """``poolattn.json`` as stored (format version and ``model`` table checked), for the loader
    above and the model card."""
    directory = Path(directory)
    path = directory / DESIGN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: not a poolattn model directory (no {DESIGN_FILE})")
    try:
        design: Any = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: corrupt design file ({exc})") from exc
    if not isinstance(design, dict):
        raise ConfigError(f"{path}: corrupt design file (expected a JSON object)")
    version = design.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ConfigError(
            f"{path}: format_version {version} was written by a newer poolattn (this one reads format "
            f"{FORMAT_VERSION}): upgrade poolattn"
        )
    if version != FORMAT_VERSION:
        raise ConfigError(
            f"{path}: format_version {version!r} is not supported by this poolattn "
            f"(it reads format {FORMAT_VERSION}; format 1 heads predate the pre-norm poolers: "
            "retrain the design)"
        )
    if not isinstance(design.get("model"), dict):
        raise ConfigError(f"{path}: corrupt design file (no 'model' table)")
    return design


def load_parts(
    design: SavedDesign,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, torch.Tensor]]:
    """The backbone (with its LoRA adapter when saved with one), its tokenizer and the head's
    weights of a saved model. Never unpickles: safetensors, JSON and a PEFT adapter."""
    from .backbone import load_backbone

    backbone, tokenizer = load_backbone(design.backbone_config())
    if design.has_adapter and not design.full_finetune:  # a full backbone has the adapter merged in
        from peft import PeftModel

        from .peft_compat import quiet_peft

        with quiet_peft():
            backbone = PeftModel.from_pretrained(backbone, design.directory / ADAPTER_DIR)
    head = load_safetensors(design.directory / HEAD_FILE)
    return backbone, tokenizer, head
