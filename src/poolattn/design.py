"""Design checks against the pooler registry, and the one parser of design strings.

``validate_design`` applies ``ModelConfig``'s own rules plus the registry's pooler names;
``parse_design`` / ``parse_design_spec`` read ``POOLING+ATTENTION`` / ``BASE:POOLING+ATTENTION``.
``config`` stays a leaf without torch, so the pooling name is checked here, against
``pooler_names`` (no torch; a user-registered pooler is valid everywhere a built-in one is).
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
    """``"multilayer+bidirectional"`` -> ("multilayer", "bidirectional"), validated.

    ``where`` names the field or argument in the error message.
    """
    pooling, sep, attention = design.partition("+")
    if not sep:
        raise ConfigError(f"{where}: {design!r} must look like 'POOLING+ATTENTION', e.g. 'eos+causal'")
    check_pooling(pooling, f"{where}: {design!r} pooling")
    check_choice(f"{where}: {design!r} attention", attention, ATTENTION_MODES)
    return pooling, attention


def parse_design_spec(spec: str) -> tuple[str, str, str] | None:
    """``base:pooling+attention`` (e.g. ``smollm2-135m:eos+causal``) -> (base, pooling, attention).

    None when ``spec`` is not shaped like a design spec (no ``:`` followed by ``+``); a
    ConfigError when it is but names an unknown pooler or attention mode.
    """
    base, sep, design = spec.rpartition(":")
    if not sep or not base or "+" not in design:
        return None
    pooling, attention = parse_design(design, f"model spec {spec!r} (BASE:POOLING+ATTENTION)")
    return base, pooling, attention
