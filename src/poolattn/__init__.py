"""poolattn: decoder LLMs as embedding models, with attention and pooling as swappable designs."""

import warnings

# peft probes a transformers attribute that transformers 5 deprecates; the warning is not ours to act on.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

from .config import ConfigError, HeadConfig, ModelConfig  # noqa: E402

__all__ = ["ConfigError", "EmbeddingModel", "HeadConfig", "ModelConfig", "load_train_config", "train"]

# Training pulls in accelerate: imported on first use, so encoding stays light.
_FROM_TRAINING = ("train", "load_train_config")


def __getattr__(name: str):
    # torch loads on first use of the model, so `poolattn --help` and light tools answer at once.
    if name == "EmbeddingModel":
        from .model import EmbeddingModel

        return EmbeddingModel
    if name in _FROM_TRAINING:
        from . import training

        return getattr(training, name)
    raise AttributeError(f"module 'poolattn' has no attribute {name!r}")


__version__ = "0.1.0"
