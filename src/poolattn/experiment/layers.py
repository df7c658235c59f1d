"""Attention mass per layer of a multilayer pooling head over sample texts.

Attention mass says where the head's latents look, not what the embedding needs: a layer can
draw attention and still be redundant. ``poolattn.layer_ablation`` measures the latter (the
score change when a layer is removed from the key set).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..layer_ablation import LayerVectorCache, attention_mass
from ..settings import data_dir

if TYPE_CHECKING:
    from ..model import EmbeddingModel
    from .plan import ExperimentConfig


def sample_texts(root: Path, count: int) -> list[str]:
    """A fixed sample of real sentences (STSBenchmark first sentences) for probing."""
    path = root / "eval" / "sts" / "STSBenchmark" / "test.jsonl"
    texts: list[str] = []
    with path.open() as fh:
        for line in fh:
            texts.append(json.loads(line)["sentence1"])
            if len(texts) >= count:
                break
    return texts


def attention_per_layer(model: EmbeddingModel, texts: list[str], batch_size: int = 16) -> list[float]:
    """Mean attention probability of the head's latents on each layer vector (sums to 1),
    for ``texts`` encoded bare (as documents)."""
    cache = LayerVectorCache(model, batch_size)
    cache.vectors(texts, query=False, instruction=None)
    return attention_mass(cache, batch_size)


def layer_attention(model: EmbeddingModel, config: ExperimentConfig) -> list[float]:
    """Attention mass per layer of ``model``'s multilayer head on the experiment's sample texts."""
    root = data_dir(config.evaluation.local_data)
    model.eval()
    return attention_per_layer(model, sample_texts(root, config.experiment.layer_attention_sample))
