"""poolattn: decoder LLMs as embedding models, with attention and pooling as swappable designs.

The root re-exports the user-facing names (modules inside poolattn never import through it);
importing it changes no process-wide state and loads torch only when a name needs it.
"""

from ._lazy import lazy_exports
from ._version import __version__ as __version__
from .config import ConfigError, HeadConfig, ModelConfig

__getattr__, _LAZY = lazy_exports(
    __name__,
    {
        ".model": ("EmbeddingModel",),
        ".training.trainer": ("train",),
        ".training.config": ("load_train_config",),
    },
)
__all__ = ["ConfigError", "HeadConfig", "ModelConfig", *_LAZY]
