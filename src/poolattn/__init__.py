"""poolattn: decoder LLMs as embedding models, with attention and pooling as swappable designs.

The package root re-exports the user-facing names (modules inside poolattn never import through
it); importing it changes no process-wide state
(no warning filter, no backend choice, no RNG seed) and loads neither torch nor the evaluation
stack until a name that needs it is first used.
"""

from ._version import __version__ as __version__
from .config import ConfigError, HeadConfig, ModelConfig

__all__ = [
    "ConfigError",
    "EmbeddingModel",
    "HeadConfig",
    "ModelConfig",
    "load_train_config",
    "train",
]


def __getattr__(name: str):
    # torch loads on first use of the model, so `poolattn --help` and light tools answer at once;
    # training pulls in accelerate, so it too is imported on first use.
    if name == "EmbeddingModel":
        from .model import EmbeddingModel

        return EmbeddingModel
    if name == "train":
        from .training.trainer import train

        return train
    if name == "load_train_config":
        from .training.config import load_train_config

        return load_train_config
    raise AttributeError(f"module 'poolattn' has no attribute {name!r}")
