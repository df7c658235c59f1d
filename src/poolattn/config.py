"""Typed, validated settings: the model design, and the generic TOML/dataclass plumbing.

Every TOML section is a dataclass; an unknown key is an error that suggests the closest valid
one, a bad value one that names section and field. A leaf module (imports nothing from poolattn);
pooler names and settings are checked by the registry (``poolattn.design.validate_design``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ATTENTION_MODES = ("causal", "bidirectional")
DTYPES = ("auto", "float32", "bfloat16", "float16")  # auto: poolattn.dtypes.resolve_dtype
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
DEFAULT_QUERY_TEMPLATE = "Instruct: {instruction}\nQuery: {text}"
# The query instruction when none is given: the E5 wording of the STS family.
DEFAULT_INSTRUCTION = "Retrieve semantically similar text."
# LoRA's default target modules: every attention and MLP projection of a Llama-style block.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ConfigError(ValueError):
    """A setting is missing, unknown or has a bad value; the message names it."""


def check_choice(where: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise a ConfigError listing the valid choices when ``value`` is not one of them."""
    if value not in choices:
        hint = difflib.get_close_matches(str(value), choices, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{where}: {value!r} is not valid{extra}; choose one of {', '.join(choices)}")


@dataclass
class HeadConfig:
    """Shape of the trainable pooling heads (``pooling.CrossAttentionBlock``). The defaults keep it
    small next to the backbone, so head size does not confound a design comparison;
    ``ff_mult`` is the GEGLU feed-forward's width multiplier."""

    num_latents: int = 16
    num_heads: int = 8
    head_dim: int = 64
    ff_mult: int = 4

    @classmethod
    def paper(cls) -> HeadConfig:
        """The sizes of the paper's code (768 latents, 32 heads x 2048 dims, feed-forward x4)."""
        return cls(num_latents=768, num_heads=32, head_dim=2048, ff_mult=4)

    def validate(self, where: str = "model.head") -> None:
        for name, value in to_dict(self).items():
            if value < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {value}")


@dataclass
class ModelConfig:
    """The design of an embedding model: backbone x attention x pooling, plus prompting."""

    base: str = "smollm2-135m"
    attention: str = "causal"
    pooling: str = "eos"
    max_length: int = 128
    max_instruction_length: int = 256
    head: HeadConfig = field(default_factory=HeadConfig)
    head_preset: str = "small"
    # each pooler's own settings ([model.poolers.latent] latent_keys = "last"), checked by its class
    poolers: dict[str, dict[str, Any]] = field(default_factory=dict)
    exclude_instruction: bool = False
    query_template: str = DEFAULT_QUERY_TEMPLATE
    append_eos: bool = True
    padding_side: str = "right"
    dtype: str = "auto"  # bf16 where the hardware runs it natively, else float32
    attn_implementation: str = "sdpa"
    trust_remote_code: bool = False
    gguf_file: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.head, dict):
            self.head = from_dict(HeadConfig, self.head, "model.head")
        if self.head_preset == "paper":  # the preset fills every size left at its small default
            small, paper = to_dict(HeadConfig()), to_dict(HeadConfig.paper())
            sizes = {name: size for name, size in paper.items() if getattr(self.head, name) == small[name]}
            self.head = dataclasses.replace(self.head, **sizes)

    @staticmethod
    def upgrade(data: dict[str, Any], where: str) -> dict[str, Any]:
        """The old form (configs, options and ``poolattn.json`` from before poolers owned their
        settings): ``layer_vector`` and ``head.latent_keys`` move to the pooler that reads them."""
        data, head = dict(data), data.get("head")
        moved = {("multilayer", "layer_vector"): data.pop("layer_vector", None)}
        if isinstance(head, dict) and "latent_keys" in head:
            data["head"] = {k: v for k, v in head.items() if k != "latent_keys"}
            moved["latent", "latent_keys"] = head["latent_keys"]
        poolers = data.get("poolers", {})
        for (pooler, key), value in moved.items():
            table = poolers.get(pooler, {}) if isinstance(poolers, dict) else None
            if value is None or not isinstance(table, dict):
                continue  # nothing to move, or a malformed table that from_dict names
            table = {**table}
            if table.setdefault(key, value) != value:
                raise ConfigError(f"{where}.poolers.{pooler}.{key}: set twice (the old key says {value!r})")
            poolers = data["poolers"] = {**poolers, pooler: table}
        return data

    def validate(self, where: str = "model") -> None:
        """Check every field except the pooler's name and settings (``design.validate_design``)."""
        check_choice(f"{where}.attention", self.attention, ATTENTION_MODES)
        check_choice(f"{where}.head_preset", self.head_preset, ("small", "paper"))
        check_choice(f"{where}.dtype", self.dtype, DTYPES)
        check_choice(f"{where}.attn_implementation", self.attn_implementation, ATTN_IMPLEMENTATIONS)
        check_choice(f"{where}.padding_side", self.padding_side, ("right", "left"))
        if not self.base:
            raise ConfigError(f"{where}.base: must name a model (alias, local path, GGUF file or hub id)")
        for name, least in (("max_length", 4), ("max_instruction_length", 1)):
            if getattr(self, name) < least:
                raise ConfigError(f"{where}.{name}: must be >= {least}, got {getattr(self, name)}")
        if "{text}" not in self.query_template or "{instruction}" not in self.query_template:
            raise ConfigError(f"{where}.query_template: must contain {{instruction}} and {{text}}")
        if self.pooling == "eos" and not self.append_eos:
            raise ConfigError(f"{where}.append_eos: the eos pooler needs append_eos = true")
        self.head.validate(f"{where}.head")

    @property
    def name(self) -> str:
        """A short, readable design name such as ``multilayer+bidirectional``."""
        return f"{self.pooling}+{self.attention}"


T = TypeVar("T")
# A scalar field's type -> (its name in errors, the Python types it accepts; never a bool for a number)
SCALARS: dict[type, tuple[str, tuple[type, ...]]] = {
    bool: ("true or false", (bool,)),
    int: ("an integer", (int,)),
    float: ("a number", (int, float)),
    str: ("a string", (str,)),
}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1
    tp = args[0] if optional else tp
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required")
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if tp in SCALARS:
        what, accepted = SCALARS[tp]
        if not isinstance(value, accepted) or (tp is not bool and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {what}, got {value!r}")
        return float(value) if tp is float else value
    if origin in (list, dict):
        if not isinstance(value, origin):
            raise ConfigError(f"{where}: expected {'a list' if origin is list else 'a table'}, got {value!r}")
        item_tp = (typing.get_args(tp) or (Any, Any))[-1]  # list[T] -> T, dict[K, V] -> V
        if origin is list:
            return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return {str(k): _coerce(v, item_tp, f"{where}.{k}") for k, v in value.items()}
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from a mapping, naming any unknown or mistyped key."""
    upgrade = getattr(cls, "upgrade", None)  # a reader for a section's old form
    data = upgrade(data, where) if upgrade else data
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"{where}.{key}: unknown key{extra} (valid keys: {', '.join(names)})")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain JSON/TOML-friendly data."""
    return dataclasses.asdict(obj)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set section.key=value`` overrides onto raw TOML data (in place); the value is
    TOML syntax, bare words taken as strings."""
    for text in overrides:
        if "=" not in text:
            raise ConfigError(f"--set {text!r}: expected section.key=value")
        key, raw = text.split("=", 1)
        path = [p for p in key.strip().split(".") if p]
        if not path:
            raise ConfigError(f"--set {text!r}: empty key")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {part} is not a table")
        node[path[-1]] = value
    return data


def config_relative(path: str | Path, base_dir: str | Path) -> Path:
    """An output path in a config file: ``~`` and ``$VARS`` expanded, a relative path taken from
    the config file's folder, so a config writes to the same place from wherever it is run."""
    expanded = Path(os.path.expandvars(str(path))).expanduser()
    return expanded if expanded.is_absolute() else Path(base_dir) / expanded


def load_toml(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a TOML file (with overrides); a syntax error names the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return apply_overrides(data, overrides or [])
