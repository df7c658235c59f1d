"""Which layers a multilayer pooling head relies on: attention mass per layer over sample texts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

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


@torch.inference_mode()
def attention_per_layer(model: EmbeddingModel, texts: list[str], batch_size: int = 16) -> list[float]:
    """Mean attention probability of the head's latents on each layer vector (sums to 1)."""
    attend = model.pooler.attend
    attend.record_attention = True
    total = None
    try:
        for start in range(0, len(texts), batch_size):
            model(model.tokenize(texts[start : start + batch_size]))
            mass = attend.last_attention.float().mean(dim=(1, 2)).sum(dim=0)  # sum over batch of L-vectors
            total = mass if total is None else total + mass
    finally:
        attend.record_attention = False
        attend.last_attention = None
    return (total / len(texts)).tolist()


def layer_attention(model: EmbeddingModel, config: ExperimentConfig) -> list[float]:
    """Attention mass per layer of ``model``'s multilayer head on the experiment's sample texts."""
    root = data_dir(config.evaluation.local_data)
    model.eval()
    return attention_per_layer(model, sample_texts(root, config.experiment.layer_attention_sample))
