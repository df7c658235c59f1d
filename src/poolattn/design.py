"""Design checks against the pooler registry (``config`` stays a leaf without torch, so pooler names
are checked here) and the one parser of ``POOLING+ATTENTION`` / ``BASE:POOLING+ATTENTION`` strings.
"""

from __future__ import annotations

from typing import Any

from .config import ATTENTION_MODES, ConfigError, ModelConfig, check_choice, from_dict
from .pooler_names import check_pooling


def validate_design(config: ModelConfig, where: str = "model") -> ModelConfig:
    """Validate ``config`` (every field, the pooler name and settings against the registry);
    returns it, keeping its own pooler's settings alone, defaults filled in (as saved)."""
    check_pooling(config.pooling, f"{where}.pooling")  # without torch: a misspelt name at once
    from .pooling import pooler_settings  # the pooler classes (torch) check their own settings

    config.poolers = pooler_settings(config, where)
    config.validate(where)
    return config


def model_config(pooling: str = "eos", attention: str = "causal", **options: Any) -> ModelConfig:
    """Build and validate a ModelConfig from keyword options (unknown options named)."""
    cfg = from_dict(ModelConfig, {"pooling": pooling, "attention": attention, **options}, "model")
    return validate_design(cfg)


def parse_design(design: str, where: str = "design") -> tuple[str, str]:
    """``"multilayer+bidirectional"`` -> ("multilayer", "bidirectional"), validated; ``where``
    names the field or argument in the error message."""
    pooling, sep, attention = design.partition("+")
    if not sep:
        raise ConfigError(f"{where}: {design!r} must look like 'POOLING+ATTENTION', e.g. 'eos+causal'")
    check_pooling(pooling, f"{where}: {design!r} pooling")
    check_choice(f"{where}: {design!r} attention", attention, ATTENTION_MODES)
    return pooling, attention


def parse_design_spec(spec: str) -> tuple[str, str, str] | None:
    """``base:pooling+attention`` (e.g. ``smollm2-135m:eos+causal``) -> (base, pooling, attention);
    None when ``spec`` is not shaped so, a ConfigError when it names an unknown pooler or mode."""
    base, sep, design = spec.rpartition(":")
    if not sep or not base or "+" not in design:
        return None
    pooling, attention = parse_design(design, f"model spec {spec!r} (BASE:POOLING+ATTENTION)")
    return base, pooling, attention
