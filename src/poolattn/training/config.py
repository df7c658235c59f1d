"""Training settings: the TOML sections [model], [data], [training] and [lora] as dataclasses. The
design comes only from [model], so designs can be trained alike by changing [model] alone."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import (
    DEFAULT_INSTRUCTION,
    LORA_TARGETS,
    ConfigError,
    ModelConfig,
    check_choice,
    config_relative,
    from_dict,
    load_toml,
    to_dict,
)
from ..io import check_output_path

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


# the trainer's record in ``training.output_dir``, here so readers need not import the trainer;
# older runs wrote ``run.json`` (still read)
TRAIN_RUN_FILE = "training_run.json"
_OLD_TRAIN_RUN_FILE = "run.json"


def read_train_run(output_dir: str | Path) -> dict[str, Any]:
    """The trainer's record of a run (``training.output_dir``), under its current or old name."""
    for name in (TRAIN_RUN_FILE, _OLD_TRAIN_RUN_FILE):
        path = Path(output_dir) / name
        if path.is_file():
            try:
                return dict(json.loads(path.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise ConfigError(f"{path}: corrupt training record ({exc})") from exc
    raise FileNotFoundError(f"{output_dir}: no training record ({TRAIN_RUN_FILE})")


@dataclass
class DataConfig:
    """Where the training examples come from (``train``: JSONL files, see ``resolve_data_path``)
    and how sources are mixed: ``instructions`` and ``weights`` are keyed by file stem or hub id;
    a source's weight defaults to its number of examples (uniform over examples)."""

    train: list[str] = field(default_factory=list)
    hub: list[str] = field(default_factory=list)
    hub_split: str = "train"
    instructions: dict[str, str] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    default_instruction: str = DEFAULT_INSTRUCTION
    num_negatives: int = 1
    skip_invalid: bool = False

    def validate(self, where: str = "data") -> None:
        if not self.train and not self.hub:
            raise ConfigError(f"{where}.train: give at least one JSONL file (or {where}.hub dataset id)")
        if self.num_negatives < 0:
            raise ConfigError(f"{where}.num_negatives: must be >= 0, got {self.num_negatives}")
        for key, weight in self.weights.items():
            if weight <= 0:
                raise ConfigError(f"{where}.weights.{key}: must be > 0, got {weight}")


@dataclass
class TrainingConfig:
    """The optimisation recipe. ``batch_size`` counts queries per step (all see each other's
    documents as negatives); ``mini_batch_size`` counts texts per forward pass, which bounds
    memory when ``gradcache`` is on (a step with no more texts than that runs them without
    GradCache's replay: one forward less). ``head_warmup_steps`` (0 = off, the paper's recipe)
    train the head alone before the ``steps`` joint steps. A relative ``output_dir`` is taken
    from the config file's folder."""

    steps: int = 200
    batch_size: int = 256
    mini_batch_size: int = 32
    gradcache: bool = True
    learning_rate: float = 1e-4
    head_learning_rate: float | None = None
    warmup_steps: int = 20
    head_warmup_steps: int = 0
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    temperature: float = 0.05
    symmetric: bool = False
    seed: int = 0
    output_dir: str = "runs/poolattn"
    save_every: int = 50
    keep_checkpoints: int = 2
    max_steps_this_run: int | None = None
    full_finetune: bool = False
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"
    cpu: bool = False
    progress: bool = True

    def validate(self, where: str = "training") -> None:
        at_least_1 = "steps batch_size mini_batch_size save_every keep_checkpoints max_steps_this_run".split()
        for rule, names, bad in (
            (">= 1", at_least_1, lambda v: v < 1),
            (">= 0", ("warmup_steps", "head_warmup_steps", "weight_decay"), lambda v: v < 0),
            ("> 0", ("learning_rate", "temperature", "head_learning_rate"), lambda v: v <= 0),
        ):
            for name in names:
                value = getattr(self, name)
                if value is not None and bad(value):  # None: the optional ones left unset
                    raise ConfigError(f"{where}.{name}: must be {rule}, got {value}")
        check_choice(f"{where}.mixed_precision", self.mixed_precision, MIXED_PRECISION)
        if not self.output_dir:
            raise ConfigError(f"{where}.output_dir: must name a directory")


@dataclass
class LoraSection:
    """PEFT LoRA settings (the paper's defaults); ignored under ``training.full_finetune``."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))

    def validate(self, where: str = "lora") -> None:
        if self.r < 1:
            raise ConfigError(f"{where}.r: must be >= 1, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{where}.dropout: must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ConfigError(f"{where}.target_modules: must list at least one module name")


@dataclass
class TrainConfig:
    """A whole training run: design + data + recipe + adapter."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    lora: LoraSection = field(default_factory=LoraSection)
    base_dir: str | None = None  # directory of the config file, for relative data paths

    def validate(self) -> TrainConfig:
        # every torch-free check first, so a typo is reported before torch is imported
        self.model.validate("model")
        self.data.validate("data")
        self.training.validate("training")
        self.lora.validate("lora")
        from ..design import validate_design  # the pooler registry (torch): pooler names last

        validate_design(self.model, "model")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in to_dict(self).items() if key != "base_dir"}


def train_config_from_dict(data: dict[str, Any], base_dir: str | Path | None = None) -> TrainConfig:
    """Build and validate a TrainConfig from raw TOML data (unknown sections/keys are named)."""
    kinds = {"model": ModelConfig, "data": DataConfig, "training": TrainingConfig, "lora": LoraSection}
    sections: dict[str, Any] = {}
    for key, value in data.items():
        if key not in kinds:
            hint = difflib.get_close_matches(key, list(kinds), n=1)
            extra = f"; did you mean [{hint[0]}]?" if hint else ""
            raise ConfigError(f"[{key}]: unknown section{extra} (valid sections: {', '.join(kinds)})")
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table [{key}], got {value!r}")
        sections[key] = from_dict(kinds[key], value, key)
    cfg = TrainConfig(**sections, base_dir=str(base_dir) if base_dir is not None else None)
    cfg.validate()
    if base_dir is not None:
        cfg.training.output_dir = str(config_relative(cfg.training.output_dir, base_dir))
    check_output_path(cfg.training.output_dir, "training.output_dir")
    return cfg


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a training TOML file with ``section.key=value`` overrides, fully validated."""
    path = Path(path)
    return train_config_from_dict(load_toml(path, overrides), base_dir=path.resolve().parent)
