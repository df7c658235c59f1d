"""Contrastive training: data, InfoNCE loss, GradCache steps, checkpoints and the trainer.

``train(load_train_config("train.toml"))`` trains a design and returns its model directory.
This package re-exports for users; modules inside poolattn import from the defining module.
"""

from .config import (
    DataConfig,
    LoraSection,
    TrainConfig,
    TrainingConfig,
    load_train_config,
    train_config_from_dict,
)
from .data import BatchSampler, DataError, Example, load_sources, read_examples
from .loss import global_info_nce, info_nce
from .trainer import OutputExistsError, TrainingDiverged, build_model, train

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
