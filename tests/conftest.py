"""Shared fixtures: tiny random backbones of every supported architecture, the real tokenizer,
the real SmolLM2 model, and the local data folder. Nothing here touches the network."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from transformers import (  # noqa: E402
    AutoModel,
    AutoTokenizer,
    Gemma3TextConfig,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerBase,
    Qwen2Config,
)

from poolattn.backbone import resolve_source  # noqa: E402
from poolattn.config import model_config  # noqa: E402
from poolattn.model import EmbeddingModel  # noqa: E402

ARCHITECTURES = ("llama", "mistral", "qwen2", "gemma3")
TINY = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)


@pytest.fixture(scope="session")
def smol_dir() -> Path:
    """The converted SmolLM2-135M safetensors directory (converted once per machine)."""
    return Path(resolve_source("smollm2-135m"))


@pytest.fixture(scope="session")
def tokenizer(smol_dir: Path) -> PreTrainedTokenizerBase:
    """The real SmolLM2 tokenizer, shared by the tiny random models."""
    return AutoTokenizer.from_pretrained(smol_dir)


def tiny_config(arch: str, vocab_size: int):  # noqa: ANN201 - a transformers config
    """A tiny random config of one architecture."""
    if arch == "llama":
        return LlamaConfig(vocab_size=vocab_size, **TINY)
    if arch == "mistral":
        return MistralConfig(vocab_size=vocab_size, sliding_window=None, **TINY)
    if arch == "qwen2":
        return Qwen2Config(vocab_size=vocab_size, **TINY)
    if arch == "gemma3":
        # Like the real Gemma 3: sliding-window layers, then a full-attention one.
        layer_types = ["sliding_attention", "full_attention"]
        return Gemma3TextConfig(
            vocab_size=vocab_size, head_dim=8, sliding_window=4, layer_types=layer_types, **TINY
        )
    raise ValueError(arch)


@pytest.fixture
def tiny_model(tokenizer: PreTrainedTokenizerBase) -> Callable[..., EmbeddingModel]:
    """Factory: ``tiny_model(pooling="eos", attention="causal", arch="llama", attn_implementation="sdpa", **opts)``."""

    def make(
        pooling: str = "eos", attention: str = "causal", arch: str = "llama", seed: int = 0, **options
    ) -> EmbeddingModel:
        torch.manual_seed(seed)
        impl = options.get("attn_implementation", "sdpa")
        backbone = AutoModel.from_config(tiny_config(arch, len(tokenizer)), attn_implementation=impl)
        cfg = model_config(pooling=pooling, attention=attention, base=f"tiny-{arch}", **options)
        return EmbeddingModel(backbone, tokenizer, cfg)

    return make


@pytest.fixture(scope="session")
def smol_model() -> EmbeddingModel:
    """The real SmolLM2-135M, eos + causal (loaded once per test session)."""
    return EmbeddingModel.from_pretrained("smollm2-135m", attention="causal", pooling="eos")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The local data folder from POOLATTN_DATA_DIR (default ../shared/data)."""
    path = Path(os.environ.get("POOLATTN_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not path.is_dir():
        pytest.fail(f"data folder {path} not found: set POOLATTN_DATA_DIR")
    return path
