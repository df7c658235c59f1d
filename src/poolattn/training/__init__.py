"""Contrastive training: data, InfoNCE loss, GradCache steps, checkpoints and the trainer.

``train(load_train_config("train.toml"))`` trains a design and returns its model directory.
This package re-exports for users; modules inside poolattn import from the defining module.
"""

from typing import Any

# name -> defining module, imported on first use: `poolattn train` reads and checks its config
# (poolattn.training.config) without first loading torch, accelerate and PEFT for the trainer.
_EXPORTS = {
    "DataConfig": "config",
    "LoraSection": "config",
    "TrainConfig": "config",
    "TrainingConfig": "config",
    "load_train_config": "config",
    "train_config_from_dict": "config",
    "BatchSampler": "data",
    "DataError": "data",
    "Example": "data",
    "load_sources": "data",
    "read_examples": "data",
    "global_info_nce": "loss",
    "info_nce": "loss",
    "OutputExistsError": "trainer",
    "TrainingDiverged": "trainer",
    "build_model": "trainer",
    "train": "trainer",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BatchSampler",
    "DataConfig",
    "DataError",
    "Example",
    "LoraSection",
    "OutputExistsError",
    "TrainConfig",
    "TrainingConfig",
    "TrainingDiverged",
    "build_model",
    "global_info_nce",
    "info_nce",
    "load_sources",
    "load_train_config",
    "read_examples",
    "train",
    "train_config_from_dict",
]
