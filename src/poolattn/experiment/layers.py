"""Attention mass per layer of a multilayer head over probe texts from the run's own training
data (no local evaluation data needed). It says where the latents look, not what the embedding
needs: ``poolattn.layer_ablation`` measures that."""

from __future__ import annotations

from itertools import zip_longest
from typing import TYPE_CHECKING

from ..layer_ablation import LayerVectorCache, attention_mass

if TYPE_CHECKING:
    from ..model import EmbeddingModel
    from ..training.config import DataConfig
    from .plan import ExperimentConfig, Run


def probe_texts(data: DataConfig, count: int, base_dir: str | None = None) -> list[str]:
    """A fixed sample of ``count`` distinct documents (the positives) from the training sources,
    taken in turn from each source's first records (a hub dataset reads only those rows)."""
    from ..training.data import _hub_examples, read_examples, resolve_data_path

    per_source: list[list[str]] = []
    for text in data.train:
        examples, _ = read_examples(resolve_data_path(text, base_dir), skip_invalid=True)
        per_source.append([e.positive for e in examples])
    for dataset_id in data.hub:  # datasets' slice syntax: the first rows, not the whole split
        per_source.append(
            [e.positive for e in _hub_examples(dataset_id, f"{data.hub_split}[:{count}]", None)]
        )
    in_turn = (text for row in zip_longest(*per_source) for text in row if text is not None)
    return list(dict.fromkeys(in_turn))[:count]


def attention_per_layer(model: EmbeddingModel, texts: list[str], batch_size: int = 16) -> list[float]:
    """Mean attention probability of the head's latents on each layer vector (sums to 1),
    for ``texts`` encoded bare (as documents)."""
    cache = LayerVectorCache(model, batch_size)
    cache.keys(texts, query=False, instruction=None)  # fills the cache
    return attention_mass(cache, batch_size)


def layer_attention(model: EmbeddingModel, config: ExperimentConfig, run: Run) -> list[float] | None:
    """Attention mass per layer of ``model``'s multilayer head on ``experiment.layer_attention_sample``
    probe texts from ``run``'s training data; None when that setting is 0 (off)."""
    count = config.experiment.layer_attention_sample
    if count <= 0:
        return None
    train_config = config.train_config(run)
    model.eval()
    return attention_per_layer(model, probe_texts(train_config.data, count, train_config.base_dir))
