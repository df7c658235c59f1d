"""Poolers: hidden states + masks -> one vector per text; a registry of small classes.

Adding one is a class with ``forward(hidden_states, attention_mask, pooling_mask)`` and one
``@register`` line. Trainable heads keep float32 parameters (an AdamW step of ~1e-5 is below
bf16's resolution at weights of ~0.02) and run with autocast off, their inputs cast to them.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, HeadConfig, ModelConfig, check_choice, from_dict, to_dict
from .pooler_names import BUILTIN_POOLERS, check_pooling

POOLERS: dict[str, type[Pooler]] = {}


def register(name: str) -> Callable[[type[Pooler]], type[Pooler]]:
    """Class decorator: make a pooler available under ``name``."""

    def deco(cls: type[Pooler]) -> type[Pooler]:
        cls.name = name
        POOLERS[name] = cls
        return cls

    return deco


def pooler_settings(config: ModelConfig, where: str = "model") -> dict[str, dict[str, Any]]:
    """Check every ``[model.poolers.NAME]`` table with its pooler's class (a grid's shared table
    may set several); returns the design's own pooler's table alone, defaults filled in."""
    check_pooling(config.pooling, f"{where}.pooling")
    for name, table in config.poolers.items():
        check_pooling(name, f"{where}.poolers")
        POOLERS[name].check_settings(table, config, f"{where}.poolers.{name}")
    name, own = config.pooling, config.poolers.get(config.pooling, {})
    return {name: POOLERS[name].check_settings(own, config, f"{where}.poolers.{name}")}


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row, whatever the padding side."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.full_like(positions, -1)).argmax(dim=1)


def gather_last(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state of the last real token of each row: (B, T, D) -> (B, D)."""
    return states[torch.arange(states.shape[0], device=states.device), last_token_index(mask)]


def masked_mean(
    states: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over the tokens where ``mask`` is 1 (optionally weighted); padding never leaks in."""
    w = mask.to(states.dtype) if weights is None else weights.to(states.dtype) * mask.to(states.dtype)
    safe = torch.where(mask.bool().unsqueeze(-1), states, torch.zeros_like(states))  # pad states may be NaN
    return (safe * w.unsqueeze(-1)).sum(dim=1) / w.sum(dim=1, keepdim=True).clamp(min=1e-9)


LAST_LAYER = "last"  # the pooler reads hidden_states[-1] only (after the final norm)
ALL_LAYERS = "all"  # the pooler reads every layer's states (embeddings first)


class Pooler(nn.Module):
    """Base class: subclasses implement ``forward``; ``trainable`` says if it has parameters.

    ``hidden_states`` is every layer's states (embeddings first), or with ``layers_read = "last"``
    a 1-tuple of the last, so the backbone frees the other layers' activations as it goes.
    ``config_keys`` maps the pooler's own settings (``[model.poolers.NAME]``) to their defaults
    (a value must have its default's type); each becomes an attribute.
    """

    name = "base"
    trainable = False
    layers_read: str = ALL_LAYERS
    config_keys: dict[str, Any] = {}

    def __init__(self, hidden_size: int, num_layers: int, head: HeadConfig, **settings: Any) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        if unknown := sorted(set(settings) - set(self.config_keys)):
            raise TypeError(f"{type(self).__name__}: unknown settings {unknown}")
        for key, default in self.config_keys.items():
            setattr(self, key, settings.get(key, default))

    @classmethod
    def check_settings(cls, settings: dict[str, Any], design: ModelConfig, where: str) -> dict[str, Any]:
        """``settings`` with defaults filled in; an unknown key or a value of the wrong type is a
        ConfigError naming the field. Override (calling this first) to check values too."""
        if settings and not cls.config_keys:
            raise ConfigError(f"{where}: the {cls.name!r} pooler has no settings, got {sorted(settings)}")
        fields = [
            (key, type(value), dataclasses.field(default_factory=lambda v=value: copy.deepcopy(v)))
            for key, value in cls.config_keys.items()
        ]  # a dataclass, so the config plumbing names unknown keys and wrong types
        return to_dict(
            from_dict(dataclasses.make_dataclass(f"{cls.__name__}Settings", fields), settings, where)
        )

    def get_config_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.config_keys}

    def forward(
        self, hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor, pooling_mask: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError


@register("eos")
class EosPooler(Pooler):
    """Last-layer state of the final real token (the appended EOS)."""

    layers_read = LAST_LAYER

    def forward(self, hidden_states, attention_mask, pooling_mask):
        return gather_last(hidden_states[-1], attention_mask).float()


@register("mean")
class MeanPooler(Pooler):
    """Masked mean of the last layer over the pooled tokens (summed in float32)."""

    layers_read = LAST_LAYER

    def forward(self, hidden_states, attention_mask, pooling_mask):
        return masked_mean(hidden_states[-1].float(), pooling_mask)


@register("weighted_mean")
class WeightedMeanPooler(Pooler):
    """Position-weighted mean (SGPT): the i-th pooled token weighs i, so later tokens count more."""

    layers_read = LAST_LAYER

    def forward(self, hidden_states, attention_mask, pooling_mask):
        weights = pooling_mask.cumsum(dim=1) * pooling_mask
        return masked_mean(hidden_states[-1].float(), pooling_mask, weights)


class GEGLU(nn.Module):
    """Half of the features gate the other half through a GELU (Shazeer, 2020)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = x.chunk(2, dim=-1)
        return value * F.gelu(gate)


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention and GEGLU feed-forward, each with a residual: the published block
    (``PerceiverResampler`` of Tang & Yang, NV-Embed's ``LatentAttentionModel``). The context is
    normalised too, since per-layer states differ by an order of magnitude in norm.

    ``record_attention = True`` keeps the last call's attention probabilities in
    ``last_attention`` (batch x heads x queries x context), for analysis.
    """

    def __init__(self, dim: int, head: HeadConfig) -> None:
        super().__init__()
        inner = head.num_heads * head.head_dim
        self.num_heads, self.head_dim = head.num_heads, head.head_dim
        self.norm_queries = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 2 * head.ff_mult * dim), GEGLU(), nn.Linear(head.ff_mult * dim, dim)
        )
        self.record_attention = False
        self.last_attention: torch.Tensor | None = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # b x h x n x d

    def forward(
        self, queries: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Queries (B x Nq x dim) attend over the context (B x Nk x dim, ``context_mask`` B x Nk)."""
        if context_mask is not None:  # zero masked context first: padded states may be NaN
            context = torch.where(context_mask.bool()[..., None], context, torch.zeros_like(context))
        q = self._heads(self.to_q(self.norm_queries(queries)))
        k, v = (self._heads(t) for t in self.to_kv(self.norm_context(context)).chunk(2, dim=-1))
        mask = None if context_mask is None else context_mask.bool()[:, None, None, :]
        if self.record_attention:
            scores = q @ k.transpose(-1, -2) * self.head_dim**-0.5
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            probs = scores.softmax(dim=-1)
            self.last_attention = probs.detach()
            out = probs @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, n, _ = out.shape
        x = queries + self.to_out(out.transpose(1, 2).reshape(b, n, -1))
        return x + self.ff(self.norm_ff(x))


class LearnedLatentsPooler(Pooler):
    """The poolers with a learned latent array (``head.num_latents`` rows, N(0, 1), model width)
    and one cross-attention block; subclasses choose who attends to whom."""

    trainable = True
    layers_read = LAST_LAYER  # latent, nv_latent; multilayer reads all

    def __init__(self, hidden_size: int, num_layers: int, head: HeadConfig, **settings: Any) -> None:
        super().__init__(hidden_size, num_layers, head, **settings)
        self.latents = nn.Parameter(torch.randn(head.num_latents, hidden_size))
        self.attend = CrossAttentionBlock(hidden_size, head)

    def batch_latents(self, batch_size: int) -> torch.Tensor:
        """The latent array repeated for a batch: B x num_latents x D (a view, no copy)."""
        return self.latents.unsqueeze(0).expand(batch_size, -1, -1)

    def pool(self, keys: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Latents cross-attend over ``keys`` (B x N x D, the head's dtype); mean over latents -> B x D."""
        return self.attend(self.batch_latents(keys.shape[0]), keys, key_mask).mean(dim=1)


@register("latent")
class LatentPooler(LearnedLatentsPooler):
    """Last-layer trainable pooling: latents cross-attend over the last layer's states, every
    pooled token a key (``latent_keys = "tokens"``), or only the final token's, as the paper's
    code for its design 2 (``"last"``: one key, so every latent reads the same value)."""

    config_keys = {"latent_keys": "tokens"}

    @classmethod
    def check_settings(cls, settings: dict[str, Any], design: ModelConfig, where: str) -> dict[str, Any]:
        checked = super().check_settings(settings, design, where)
        check_choice(f"{where}.latent_keys", checked["latent_keys"], ("tokens", "last"))
        return checked

    def forward(self, hidden_states, attention_mask, pooling_mask):
        states = hidden_states[-1]
        with torch.autocast(states.device.type, enabled=False):
            if self.latent_keys == "last":
                return self.pool(gather_last(states, attention_mask).to(self.latents.dtype).unsqueeze(1))
            return self.pool(states.to(self.latents.dtype), pooling_mask)


@register("multilayer")
class MultiLayerPooler(LearnedLatentsPooler):
    """The paper's multi-layers trainable pooling: latents cross-attend over one vector per layer
    (its last-token state or masked mean) plus a learned layer-position embedding.

    ``pool_vectors`` takes cached per-layer vectors, so a layer ablation needs no backbone pass.
    ``layer_vector = "auto"`` is EOS under causal attention (only the last token has seen the
    whole text), mean under bidirectional.
    """

    layers_read = ALL_LAYERS
    config_keys = {"layer_vector": "auto"}

    @classmethod
    def check_settings(cls, settings: dict[str, Any], design: ModelConfig, where: str) -> dict[str, Any]:
        checked = super().check_settings(settings, design, where)
        vector = checked["layer_vector"]
        check_choice(f"{where}.layer_vector", vector, ("auto", "eos", "mean"))
        if vector == "auto":
            vector = "eos" if design.attention == "causal" else "mean"
        return {"layer_vector": vector}

    def __init__(self, hidden_size: int, num_layers: int, head: HeadConfig, **settings: Any) -> None:
        super().__init__(hidden_size, num_layers, head, **settings)
        self.layer_position = nn.Embedding(num_layers, hidden_size)  # N(0, 1) init, as published

    def layer_vectors(self, hidden_states, attention_mask, pooling_mask) -> torch.Tensor:
        """B x L x D float32: one vector per transformer layer (the embedding output is skipped)."""
        layers = hidden_states[1:]
        if self.layer_vector == "eos":
            vectors = [gather_last(s, attention_mask) for s in layers]
        else:
            vectors = [masked_mean(s.float(), pooling_mask) for s in layers]
        return torch.stack(vectors, dim=1).float()

    def pool_vectors(self, vectors: torch.Tensor, layer_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pool B x L x D per-layer vectors; ``layer_mask`` (L or B x L, 1 = keep) removes layers."""
        with torch.autocast(vectors.device.type, enabled=False):
            keys = vectors.to(self.latents.dtype) + self.layer_position.weight
            if layer_mask is not None:
                layer_mask = layer_mask.to(keys.device).bool().expand(keys.shape[0], -1)
            return self.pool(keys, layer_mask)

    def forward(self, hidden_states, attention_mask, pooling_mask):
        return self.pool_vectors(self.layer_vectors(hidden_states, attention_mask, pooling_mask))


@register("nv_latent")
class NVLatentPooler(LearnedLatentsPooler):
    """NV-Embed's latent attention (Lee et al., 2024): the last layer's token states are the
    queries over a learned latent key/value array (``head.num_latents`` rows; 512 in NV-Embed),
    then the GEGLU feed-forward, then a masked mean over the pooled tokens."""

    def forward(self, hidden_states, attention_mask, pooling_mask):
        states = hidden_states[-1]
        with torch.autocast(states.device.type, enabled=False):
            mask = attention_mask.bool()[..., None]
            tokens = torch.where(mask, states.to(self.latents.dtype), torch.zeros((), device=states.device))
            return masked_mean(self.attend(tokens, self.batch_latents(tokens.shape[0])), pooling_mask)


if tuple(POOLERS) != BUILTIN_POOLERS:  # the torch-free list that checks names in configs
    raise ImportError(f"pooler_names.BUILTIN_POOLERS must be {tuple(POOLERS)}, not {BUILTIN_POOLERS}")


def build_pooler(config: ModelConfig, hidden_size: int, num_layers: int, seed: int = 0) -> Pooler:
    """The design's pooler with its settings, initialised from its own RNG stream seeded with
    ``seed`` (the global RNG untouched: every design starts from the same LoRA weights)."""
    settings = pooler_settings(config)[config.pooling]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return POOLERS[config.pooling](hidden_size, num_layers, config.head, **settings)
