"""Head warm-up (``training.head_warmup_steps``): train a randomly initialised head alone first
(linear probing, then fine-tuning; Kumar et al. 2022), so that at small budgets the joint phase
does not spend its steps teaching the head to read the backbone.

The backbone runs once per distinct text, without a graph, in eval mode (LoRA starts as a
no-op). The warm-up draws no random numbers, so the joint phase is that of a run without it; a
design without a trainable head ignores the option, so one recipe serves a whole experiment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .data import BatchSampler
from .gradcache import Backprop, select_rows

if TYPE_CHECKING:
    from ..model import EmbeddingModel

log = logging.getLogger(__name__)

Key = bytes


def row_keys(features: dict[str, torch.Tensor]) -> list[Key]:
    """One key per row: its real token ids and pooled-token flags (padding and padding side do
    not change a text's backbone states, since position ids come from the mask)."""
    mask = features["attention_mask"].bool()
    ids, pooled = features["input_ids"], features["pooling_mask"]
    return [
        ids[i][mask[i]].numpy().tobytes() + b"|" + pooled[i][mask[i]].to(torch.uint8).numpy().tobytes()
        for i in range(mask.shape[0])
    ]


class _ReadRecorder(tuple):
    """A tuple of hidden states that records which layers a pooler reads."""

    read: set[int]

    def __getitem__(self, index: Any) -> Any:
        n = len(self)
        if isinstance(index, slice):
            self.read.update(range(*index.indices(n)))
        else:
            self.read.add(index % n)
        return super().__getitem__(index)

    def __iter__(self) -> Iterator[Any]:
        self.read.update(range(len(self)))
        return super().__iter__()


@dataclass
class _Tokens:
    """A text's cached states over its real tokens: the layers the head reads, and its masks."""

    layers: dict[int, torch.Tensor]  # layer index -> n x D
    pooling: torch.Tensor  # n (1 = pooled)


class HeadInputCache:
    """What the head reads from the backbone, per tokenized text: a pooler's ``layer_vectors``
    (the multilayer head), else the hidden layers it reads (found once by a recording probe).
    Called with features it returns the head's embeddings: the model in ``plain_step``."""

    def __init__(self, model: EmbeddingModel) -> None:
        self.model = model
        methods = (getattr(model.pooler, name, None) for name in ("layer_vectors", "pool_vectors"))
        self.per_layer_vectors = all(callable(method) for method in methods)
        self.entries: dict[Key, torch.Tensor | _Tokens] = {}
        self.read_layers: tuple[int, ...] | None = None  # generic path, set by the probe
        self.num_states: int | None = None
        self.backbone_texts = 0

    def __call__(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        keys = row_keys(features)
        self.fill(features, keys)
        return self._pool([self.entries[k] for k in keys])

    @torch.no_grad()
    def fill(self, features: dict[str, torch.Tensor], keys: list[Key] | None = None) -> None:
        """Run the backbone (eval mode, no graph) on the rows not cached yet, once per key."""
        keys = keys if keys is not None else row_keys(features)
        first: dict[Key, int] = {}
        for row, key in enumerate(keys):
            if key not in self.entries:
                first.setdefault(key, row)
        if not first:
            return
        model = self.model
        batch = select_rows(features, list(first.values()))
        was_training = model.training
        model.eval()
        try:
            states = model.hidden_states(batch)
        finally:
            model.train(was_training)
        attention, pooling = model.pooler_masks(batch)
        self.backbone_texts += len(first)
        if self.per_layer_vectors:
            vectors = model.pooler.layer_vectors(states, attention, pooling).float().cpu()
            self.entries.update(zip(first, vectors, strict=True))
            return
        if self.read_layers is None:  # the layers the pooler reads: one call, its output discarded
            recorder = _ReadRecorder(states)
            recorder.read = set()
            model.pooler(recorder, attention, pooling)
            self.read_layers, self.num_states = tuple(sorted(recorder.read)), len(states)
        real = attention.bool().cpu()
        for row, key in enumerate(first):
            layers = {i: states[i][row][real[row].to(states[i].device)].cpu() for i in self.read_layers}
            self.entries[key] = _Tokens(layers, pooling[row].cpu()[real[row]])

    def _pool(self, entries: list[torch.Tensor | _Tokens]) -> torch.Tensor:
        device = self.model.device
        if self.per_layer_vectors:
            return self.model.pooler.pool_vectors(torch.stack(entries).to(device)).float()
        assert self.read_layers is not None and self.num_states is not None
        lengths = [len(e.pooling) for e in entries]
        width, left = max(lengths), self.model.config.padding_side == "left"
        attention = torch.zeros(len(entries), width, dtype=torch.long)
        pooling = torch.zeros_like(attention)
        layers: list[torch.Tensor | None] = [None] * self.num_states
        for i in self.read_layers:
            sample = entries[0].layers[i]
            layers[i] = sample.new_zeros((len(entries), width, sample.shape[-1]))
        for row, (entry, n) in enumerate(zip(entries, lengths, strict=True)):
            cols = slice(width - n, width) if left else slice(0, n)
            attention[row, cols] = 1
            pooling[row, cols] = entry.pooling.to(torch.long)
            for i in self.read_layers:
                layers[i][row, cols] = entry.layers[i]  # type: ignore[index]
        hidden = tuple(t.to(device) if t is not None else None for t in layers)
        return self.model.pooler(hidden, attention.to(device), pooling.to(device)).float()


@dataclass
class HeadWarmup:
    """The warm-up phase's parts: its steps, sampler, head input cache and optimizer (AdamW at
    the head's learning rate, constant: the recipe's schedule starts with the joint phase)."""

    steps: int
    sampler: BatchSampler
    cache: HeadInputCache
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    backprop: Backprop = field(default_factory=Backprop)
    sync: Callable[[list[torch.nn.Parameter]], None] | None = None  # averages gradients across processes

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def prime(self, done: int, batches: Callable[[list[Any]], Any]) -> None:
        """After a resume at warm-up step ``done``: refill the cache as the interrupted run did
        (same backbone sub-batches), so the head inputs are bit-identical to an uninterrupted run's."""
        for _ in range(done):
            for features in batches(self.sampler.next_batch()).chunks.features:
                self.cache.fill(features)

    def clip(self, max_norm: float) -> float:
        if self.sync is not None:
            self.sync(self.params)
        return float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))


def make_head_warmup(
    model: EmbeddingModel,
    steps: int,
    sampler: BatchSampler,
    groups: list[dict[str, Any]],
) -> HeadWarmup | None:
    """The warm-up for ``model`` (None when ``steps`` is 0 or the design has no trainable head:
    then the option is a no-op, logged)."""
    if steps <= 0:
        return None
    params = list(model.pooler.parameters())
    if not params:
        log.info(
            "training.head_warmup_steps=%d: pooling %r has no trainable head, nothing to warm up",
            steps,
            model.config.pooling,
        )
        return None
    head = {id(p) for p in params}  # the head's AdamW groups out of the recipe's (same lr, decay)
    head_groups = [{**g, "params": [p for p in g["params"] if id(p) in head]} for g in groups]
    head_groups = [g for g in head_groups if g["params"]]
    optimizer = torch.optim.AdamW(head_groups, lr=head_groups[0]["lr"])
    return HeadWarmup(steps, sampler, HeadInputCache(model), optimizer, params)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Mean of the head's gradients over processes (the head runs outside the DDP wrapper)."""
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
