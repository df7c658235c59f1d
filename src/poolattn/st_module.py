"""A sentence-transformers module that runs a whole poolattn ``EmbeddingModel``.

Why one module and not ST's own ``Transformer`` + ``Pooling``: poolattn needs things those
modules cannot express -- EOS really appended (also after truncation), bidirectional
attention, every layer's states for the multilayer head, trained heads, and a pooling
mask that excludes the instruction prefix. So the module tokenizes with poolattn's own
``tokenize`` (ST hands the prompt over separately, which keeps the prefix known) and
pools with poolattn's pooler.

Its folder is a regular poolattn model directory (design JSON, head safetensors, PEFT
adapter) plus, by default, a copy of the base backbone in ``base/`` so the export is
self-contained; it is read by ``EmbeddingModel.load`` (``poolattn.model_dir``), like any other
model directory. Nothing is pickled.

Loading needs ``poolattn`` installed and, in sentence-transformers >= 6, ``trust_remote_code=True``:
ST refuses to import any module class outside its own namespace without it, even from an
installed package and a local directory.
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
    """Recover the instruction from a prompt built by ``query_prompt``; None if it was not built so.

    Lets ST's ``prompt``/``prompt_name`` drive poolattn's full template (a suffix after
    ``{text}`` included) instead of a plain string prefix.
    """
    prefix, _, _ = template.partition("{text}")
    if "{instruction}" not in prefix:
        return None
    parts = prefix.split("{instruction}")
    pattern = "(?P<instruction>.+)".join([re.escape(parts[0]), re.escape(parts[1])])
    if len(parts) > 2:
        pattern += "".join("(?P=instruction)" + re.escape(p) for p in parts[2:])
    match = re.fullmatch(pattern, prompt, flags=re.DOTALL)
    return match.group("instruction") if match else None


def _copy_backbone_files(source: Path, target: Path) -> None:
    """Copy a local backbone directory without pickle-format weights (safetensors only)."""
    if not any(source.glob("*.safetensors")):
        raise ConfigError(
            f"model.base: {source} has no safetensors weights, so it cannot be bundled without pickles; "
            "export with bundle_backbone=False"
        )
    shutil.copytree(
        source,
        target,
        ignore=lambda _d, names: [n for n in names if n.endswith(PICKLE_SUFFIXES) or n.startswith(".")],
        dirs_exist_ok=True,
    )


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

    # --------------------------------------------------------------- ST interface
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

        A prompt made by ``query_prompt`` (ST ``prompt_name="query"``) gives exactly
        ``EmbeddingModel.tokenize(texts, "query", instruction)``; any other prompt is taken
        as a literal prefix (still excluded from pooling when the design says so). An
        ``instruction`` keyword overrides the template prompt.
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

    # --------------------------------------------------------------- persistence
    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Write the poolattn model directory (+ the base backbone when bundling) into ``output_path``."""
        out = Path(output_path)
        self.model.save(out)
        if self.bundle_backbone and not self.model.full_finetune:
            source = self.base_dir or _local_backbone_dir(self.model.config)
            _copy_backbone_files(Path(source), out / BUNDLED_BASE_DIR)
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
        return cls(
            model,
            base_dir=base_dir,
            bundle_backbone=bool(config.get("bundle_backbone", base_dir is not None)),
        )
