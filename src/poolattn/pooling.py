"""Poolers: all hidden states + masks -> one vector per text. A registry of small classes.

Every pooler has the same interface: ``forward(hidden_states, attention_mask, pooling_mask)``
where ``hidden_states`` is the tuple of every layer's states (embeddings first, as
transformers returns them). Adding a pooler is one class and one ``@register`` line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .config import HeadConfig, check_choice

POOLERS: dict[str, type[Pooler]] = {}


def register(name: str) -> Callable[[type[Pooler]], type[Pooler]]:
    """Class decorator: make a pooler available under ``name``."""

    def deco(cls: type[Pooler]) -> type[Pooler]:
        cls.name = name
        POOLERS[name] = cls
        return cls

    return deco


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row, whatever the padding side."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.full_like(positions, -1)).argmax(dim=1)


def gather_last(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state of the last real token of each row: (B, T, D) -> (B, D)."""
    idx = last_token_index(mask)
    return states[torch.arange(states.shape[0], device=states.device), idx]


def masked_mean(
    states: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over the tokens where ``mask`` is 1 (optionally weighted); padding never leaks in."""
    w = mask.to(states.dtype) if weights is None else weights.to(states.dtype) * mask.to(states.dtype)
    safe = torch.where(mask.bool().unsqueeze(-1), states, torch.zeros_like(states))  # pad states may be NaN
    return (safe * w.unsqueeze(-1)).sum(dim=1) / w.sum(dim=1, keepdim=True).clamp(min=1e-9)


class Pooler(nn.Module):
    """Base class: subclasses implement ``forward``; ``trainable`` says if it has parameters."""

    name = "base"
    trainable = False

    def __init__(
        self, hidden_size: int, num_layers: int, head: HeadConfig, layer_vector: str = "eos"
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers

    def forward(
        self, hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor, pooling_mask: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError


@register("eos")
class EosPooler(Pooler):
    """Last-layer state of the final real token (the appended EOS)."""

    def forward(self, hidden_states, attention_mask, pooling_mask):  # noqa: D102
        return gather_last(hidden_states[-1], attention_mask)


@register("mean")
class MeanPooler(Pooler):
    """Masked mean of the last layer over the pooled tokens."""

    def forward(self, hidden_states, attention_mask, pooling_mask):  # noqa: D102
        return masked_mean(hidden_states[-1], pooling_mask)


@register("weighted_mean")
class WeightedMeanPooler(Pooler):
    """Position-weighted mean (SGPT): the i-th pooled token weighs i, so later tokens count more."""

    def forward(self, hidden_states, attention_mask, pooling_mask):  # noqa: D102
        weights = pooling_mask.cumsum(dim=1) * pooling_mask
        return masked_mean(hidden_states[-1], pooling_mask, weights)


class LatentCrossAttention(nn.Module):
    """Learned latent queries cross-attend over a set of key vectors, then an MLP; mean over latents.

    Keeps the last attention probabilities (``last_attention``: B x heads x latents x keys)
    so a report can show what the head relies on.
    """

    def __init__(self, hidden_size: int, head: HeadConfig) -> None:
        super().__init__()
        inner = head.num_heads * head.head_dim
        self.num_heads, self.head_dim = head.num_heads, head.head_dim
        self.latents = nn.Parameter(torch.randn(head.num_latents, inner) * 0.02)
        self.key = nn.Linear(hidden_size, inner, bias=False)
        self.value = nn.Linear(hidden_size, inner, bias=False)
        self.out = nn.Linear(inner, hidden_size)
        hidden = max(1, int(hidden_size * head.mlp_ratio))
        self.mlp = nn.Sequential(
            nn.LayerNorm(hidden_size),
            nn.Linear(hidden_size, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden_size),
        )
        self.record_attention = False
        self.last_attention: torch.Tensor | None = None

    def forward(self, keys: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = keys.shape
        h, d = self.num_heads, self.head_dim
        q = self.latents.view(1, -1, h, d).transpose(1, 2).to(keys.dtype)  # 1 x h x L x d
        k = self.key(keys).view(b, n, h, d).transpose(1, 2)  # b x h x n x d
        v = self.value(keys).view(b, n, h, d).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # b x h x L x n
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
            v = torch.where(key_mask.bool()[:, None, :, None], v, torch.zeros_like(v))  # NaN-safe padding
        probs = scores.softmax(dim=-1)
        if self.record_attention:
            self.last_attention = probs.detach()
        attended = (probs @ v).transpose(1, 2).reshape(b, -1, h * d)  # b x L x inner
        x = self.out(attended)
        x = x + self.mlp(x)
        return x.mean(dim=1)


@register("latent")
class LatentPooler(Pooler):
    """Last-layer trainable pooling: latents cross-attend over the token states (padding masked)."""

    trainable = True

    def __init__(
        self, hidden_size: int, num_layers: int, head: HeadConfig, layer_vector: str = "eos"
    ) -> None:
        super().__init__(hidden_size, num_layers, head, layer_vector)
        self.attend = LatentCrossAttention(hidden_size, head)

    def forward(self, hidden_states, attention_mask, pooling_mask):  # noqa: D102
        return self.attend(hidden_states[-1], pooling_mask)


@register("multilayer")
class MultiLayerPooler(Pooler):
    """The paper's multi-layers trainable pooling.

    One vector per transformer layer (its last-token state or its masked mean), plus a
    learned layer-position embedding; latents cross-attend over these L vectors.
    """

    trainable = True

    def __init__(
        self, hidden_size: int, num_layers: int, head: HeadConfig, layer_vector: str = "eos"
    ) -> None:
        super().__init__(hidden_size, num_layers, head, layer_vector)
        check_choice("model.layer_vector", layer_vector, ("eos", "mean"))
        self.layer_vector = layer_vector
        self.layer_position = nn.Embedding(num_layers, hidden_size)
        nn.init.normal_(self.layer_position.weight, std=0.02)
        self.attend = LatentCrossAttention(hidden_size, head)

    def layer_vectors(self, hidden_states, attention_mask, pooling_mask) -> torch.Tensor:
        """B x L x D: one vector per transformer layer (the embedding output is skipped)."""
        layers = hidden_states[1:]
        if self.layer_vector == "eos":
            vectors = [gather_last(s, attention_mask) for s in layers]
        else:
            vectors = [masked_mean(s, pooling_mask) for s in layers]
        return torch.stack(vectors, dim=1)

    def forward(self, hidden_states, attention_mask, pooling_mask):  # noqa: D102
        vectors = self.layer_vectors(hidden_states, attention_mask, pooling_mask)
        vectors = vectors + self.layer_position.weight.to(vectors.dtype)
        return self.attend(vectors)


def build_pooler(name: str, hidden_size: int, num_layers: int, head: HeadConfig, layer_vector: str) -> Pooler:
    """Instantiate a registered pooler; an unknown name lists the choices."""
    check_choice("model.pooling", name, tuple(POOLERS))
    return POOLERS[name](hidden_size, num_layers, head, layer_vector)
