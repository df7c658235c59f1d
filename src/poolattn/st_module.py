"""A sentence-transformers module running a whole poolattn ``EmbeddingModel``, for what ST's own
``Transformer`` + ``Pooling`` cannot express (EOS after truncation, trained heads, every layer's
states, a pooling mask without the instruction). Its folder is a regular poolattn model directory,
by default with the base backbone bundled in ``base/``; nothing is pickled. Loading needs poolattn
and ``trust_remote_code=True`` (ST >= 6 imports no module class outside its namespace without it).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.base.modules.input_module import InputModule

from .config import ConfigError, ModelConfig
from .model import EmbeddingModel
from .model_dir import BUNDLED_BASE_DIR, read_design

MODULE_CONFIG_FILE = "poolattn_module.json"
MODULE_FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def query_prompt(template: str, instruction: str) -> str:
    """The ST prompt string for a query: the template's part before ``{text}``, instruction filled in."""
    prefix, _, _ = template.partition("{text}")
    return prefix.format(instruction=instruction)


def instruction_from_prompt(template: str, prompt: str) -> str | None:
    """Recover the instruction from a prompt built by ``query_prompt``; None if it was not built so
    (then the prompt is a plain prefix, and a template suffix after ``{text}`` does not apply)."""
    prefix, _, _ = template.partition("{text}")
    if "{instruction}" not in prefix:
        return None
    first, *rest = prefix.split("{instruction}")  # every later {instruction} repeats the first
    pattern = re.escape(first) + "(?P<instruction>.+)" + "(?P=instruction)".join(map(re.escape, rest))
    match = re.fullmatch(pattern, prompt, flags=re.DOTALL)
    return match.group("instruction") if match else None


def _local_backbone_dir(cfg: ModelConfig) -> Path:
    """The on-disk directory of the (un-adapted) base backbone, never touching the network."""
    from .backbone import resolve_source

    source = resolve_source(cfg.base, cfg.gguf_file)
    if isinstance(source, Path) and source.is_dir():
        return source
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(source), local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any cache miss means the same thing here
        raise ConfigError(
            f"model.base: {cfg.base!r} is not in the local cache, so it cannot be bundled; "
            "export with bundle_backbone=False"
        ) from exc


def load_model_dir(directory: str | Path) -> tuple[EmbeddingModel, Path | None]:
    """A poolattn model directory's model and its bundled ``base/`` backbone (None when not
    bundled); ``config.base`` keeps its saved value, so a re-save writes the same design."""
    return EmbeddingModel.load(directory), read_design(directory).bundled_base


class PoolattnModule(InputModule):
    """Tokenize with poolattn and embed with a full ``EmbeddingModel`` (backbone + pooler).

    Args:
        model: the poolattn model to wrap.
        base_dir: a local copy of the base backbone to bundle on save (found from
            ``model.config.base`` when None).
        bundle_backbone: write the base backbone into the saved folder (self-contained).
    """

    save_in_root = False
    config_file_name = MODULE_CONFIG_FILE
    forward_kwargs = {"instruction"}

    def __init__(
        self, model: EmbeddingModel, base_dir: Path | None = None, bundle_backbone: bool = True
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = model.tokenizer
        self.base_dir = base_dir
        self.bundle_backbone = bundle_backbone

    @property
    def max_seq_length(self) -> int:
        return self.model.config.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.model.config.max_length = int(value)

    def get_embedding_dimension(self) -> int:
        """Width of the output embedding (the backbone's hidden size)."""
        return self.model.embedding_dim

    def get_config_dict(self) -> dict[str, Any]:
        return {"format_version": MODULE_FORMAT_VERSION, "bundle_backbone": self.bundle_backbone}

    def preprocess(
        self, inputs: Sequence[Any], prompt: str | None = None, instruction: str | None = None, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Tokenize with poolattn; a prompt becomes an instruction so its tokens can be excluded from pooling.

        A prompt made by ``query_prompt`` gives exactly ``EmbeddingModel.tokenize(texts, "query",
        instruction)``, any other is a literal prefix; an ``instruction`` keyword overrides the prompt.
        """
        template = self.model.config.query_template
        if instruction is None and prompt:
            instruction = instruction_from_prompt(template, prompt)
            if instruction is None:  # a free-form prefix
                template, instruction = "{instruction}{text}", prompt
        elif instruction is not None and prompt and instruction_from_prompt(template, prompt) is None:
            raise ValueError("pass either a free-form prompt or an instruction, not both")
        return self.model.tokenize(inputs, instruction=instruction or None, template=template)

    def forward(self, features: dict[str, torch.Tensor], **kwargs: Any) -> dict[str, torch.Tensor]:
        """Add ``sentence_embedding`` (float32, not normalised: ST's Normalize module does that)."""
        features["sentence_embedding"] = self.model(features)
        return features

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Write the poolattn model directory (+ the base backbone when bundling) into ``output_path``;
        the backbone is copied without pickle-format weights (safetensors only)."""
        out = Path(output_path)
        self.model.save(out)
        if self.bundle_backbone and not self.model.full_finetune:
            source = Path(self.base_dir or _local_backbone_dir(self.model.config))
            if not any(source.glob("*.safetensors")):
                raise ConfigError(
                    f"model.base: {source} has no safetensors weights, so it cannot be bundled without "
                    "pickles; export with bundle_backbone=False"
                )
            ignore = shutil.ignore_patterns(".*", *(f"*{suffix}" for suffix in PICKLE_SUFFIXES))
            shutil.copytree(source, out / BUNDLED_BASE_DIR, ignore=ignore, dirs_exist_ok=True)
        self.save_config(str(out))

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> PoolattnModule:
        """Load the poolattn model from the module's folder (local or a hub snapshot); of ST's
        loading ``kwargs``, the hub ones are used."""
        hub = ("token", "cache_folder", "revision", "local_files_only")
        local = cls.load_dir_path(model_name_or_path, subfolder, **{k: kwargs[k] for k in hub if k in kwargs})
        if local is None:
            raise FileNotFoundError(f"{model_name_or_path}/{subfolder}: poolattn module folder not found")
        config = cls.load_config(local)
        if config.get("format_version", MODULE_FORMAT_VERSION) > MODULE_FORMAT_VERSION:
            raise ConfigError(f"{local}: written by a newer poolattn (format {config['format_version']})")
        model, base_dir = load_model_dir(local)
        bundle_backbone = bool(config.get("bundle_backbone", base_dir is not None))
        return cls(model, base_dir=base_dir, bundle_backbone=bundle_backbone)
