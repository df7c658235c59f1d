"""Contrastive training: data, InfoNCE loss, GradCache steps, checkpoints and the trainer.

``train(load_train_config("train.toml"))`` trains a design and returns its model directory.
This package re-exports for users; modules inside poolattn import from the defining module.
"""

from .._lazy import lazy_exports

# imported on first use: `poolattn train` reads and checks its config (poolattn.training.config)
# without first loading torch, accelerate and PEFT for the trainer.
__getattr__, __all__ = lazy_exports(
    __name__,
    {
        ".config": (
            "DataConfig",
            "LoraSection",
            "TrainConfig",
            "TrainingConfig",
            "load_train_config",
            "train_config_from_dict",
        ),
        ".data": ("BatchSampler", "DataError", "Example", "load_sources", "read_examples"),
        ".loss": ("global_info_nce", "info_nce"),
        ".trainer": ("OutputExistsError", "TrainingDiverged", "build_model", "train"),
    },
)
