"""poolattn: decoder LLMs as embedding models, with attention and pooling as swappable designs."""

from .config import ConfigError, HeadConfig, ModelConfig
from .model import EmbeddingModel

__all__ = ["ConfigError", "EmbeddingModel", "HeadConfig", "ModelConfig"]
__version__ = "0.1.0"
