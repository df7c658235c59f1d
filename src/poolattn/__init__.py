"""poolattn: decoder LLMs as embedding models, with attention and pooling as swappable designs.

The package root re-exports the user-facing names (modules inside poolattn never import through
it); importing it changes no process-wide state
(no warning filter, no backend choice, no RNG seed) and loads neither torch nor the evaluation
stack until a name that needs it is first used.
"""

from ._lazy import lazy_exports
from ._version import __version__ as __version__
from .config import ConfigError, HeadConfig, ModelConfig

# torch loads on first use of the model, so `poolattn --help` and light tools answer at once;
# training pulls in accelerate, so it too is imported on first use.
__getattr__, _LAZY = lazy_exports(
    __name__,
    {
        ".model": ("EmbeddingModel",),
        ".training.trainer": ("train",),
        ".training.config": ("load_train_config",),
    },
)
__all__ = ["ConfigError", "HeadConfig", "ModelConfig", *_LAZY]
