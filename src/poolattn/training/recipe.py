"""The recipe record of a training run (a view of ``TrainConfig``): the schema every saved model's
card, every export's prompts and the experiment report read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any


def training_recipe(config: Any, data: list[dict[str, Any]], processes: int = 1) -> dict[str, Any]:
    """The record of a training run from a ``TrainConfig`` and the loaded sources' summary
    (``instructions``: each source's query instruction, one named prompt per source on export)."""
    t, d = config.training, config.data
    return {
        "data": [dict(item) for item in data],
        "examples": sum(int(item.get("examples", 0)) for item in data),
        "hub_datasets": list(d.hub),
        "instructions": {
            str(item["name"]): d.instructions.get(str(item["name"]), d.default_instruction)
            for item in data
            if "name" in item
        },
        "default_instruction": d.default_instruction,
        "num_negatives": d.num_negatives,
        "steps": t.steps,
        "batch_size": t.batch_size,
        "mini_batch_size": t.mini_batch_size,
        "gradcache": t.gradcache,
        "learning_rate": t.learning_rate,
        "head_learning_rate": t.head_learning_rate or t.learning_rate,
        "warmup_steps": t.warmup_steps,
        "head_warmup_steps": t.head_warmup_steps,
        "weight_decay": t.weight_decay,
        "temperature": t.temperature,
        "symmetric_loss": t.symmetric,
        "seed": t.seed,
        "mixed_precision": t.mixed_precision,
        "dtype": config.model.dtype,
        "full_finetune": t.full_finetune,
        "lora": None if t.full_finetune else asdict(config.lora),
        "processes": processes,
    }


def recipe_text(recipe: Mapping[str, Any]) -> str:
    """A recipe's optimisation settings in one line; every place that describes a recipe in
    words (card, experiment plan and report) uses this one."""
    lr, head = recipe.get("learning_rate"), recipe.get("head_learning_rate")
    text = f"{recipe.get('steps')} steps, batch {recipe.get('batch_size')} queries"
    if recipe.get("gradcache"):
        text += f" (GradCache mini-batch {recipe.get('mini_batch_size')})"
    text += f", lr {lr}" + (f" (head {head})" if head is not None and head != lr else "")
    if recipe.get("head_warmup_steps"):  # trainable heads only: a no-op for eos/mean designs
        text += f", head warm-up {recipe['head_warmup_steps']} steps before them (trainable heads)"
    return text + f", warm-up {recipe.get('warmup_steps')}, temperature {recipe.get('temperature')}"


def adapter_text(recipe: Mapping[str, Any]) -> str:
    """What a recipe trains: ``full fine-tuning`` or the LoRA settings."""
    lora = recipe.get("lora")
    if recipe.get("full_finetune") or not lora:
        return "full fine-tuning"
    targets = ", ".join(lora["target_modules"])
    return f"LoRA r {lora['r']}, alpha {lora['alpha']}, dropout {lora['dropout']} on {targets}"


def training_instructions(recipe: Mapping[str, Any] | None) -> dict[str, str]:
    """``{source name: instruction}`` a model was trained with (empty when none is recorded)."""
    return {str(k): str(v) for k, v in ((recipe or {}).get("instructions") or {}).items()}
