"""One optimisation step's forward/backward, plain or cached (GradCache, Gao et al. 2021): embed
every mini-batch without a graph, take the loss's gradient with respect to the embeddings, then
re-run each mini-batch with a graph under its recorded RNG state (the same dropout masks) and
back-propagate that gradient: the plain gradient, one mini-batch's memory."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..runtime import release_free_heap

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
BackwardFn = Callable[[torch.Tensor], None]
Tokenizer = Callable[[list[str], None, list[str | None]], dict[str, torch.Tensor]]


@dataclass
class Chunks:
    """Tokenized mini-batches of one kind of text; ``inverse`` restores input order."""

    features: list[dict[str, torch.Tensor]]
    inverse: torch.Tensor

    def __len__(self) -> int:
        return int(self.inverse.numel())


# Replayed mini-batches between two heap trims: tensors of ever-changing sizes fragment glibc's
# heap. bench/memory_trace.py (batch 512, bf16): peak RSS 2240 MB / step 94 s never trimming,
# 2075 MB / 97 s every 4, 2011 MB / 103 s every 1.
TRIM_EVERY = 4

# Cost of one forward call beyond its padded tokens, in token-equivalents: it keeps the
# partition from splitting into many tiny mini-batches that a CPU or GPU runs inefficiently.
CALL_OVERHEAD_TOKENS = 64


def partition_by_length(lengths: Sequence[int], size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Split text indices into mini-batches of at most ``size`` texts and (when given) at most
    ``max_tokens`` padded tokens (a longer text alone), minimising padded tokens plus
    ``CALL_OVERHEAD_TOKENS`` per cut: a dynamic programme over the texts sorted by length. The
    costliest mini-batch comes last: ``cached_step`` keeps its graph from the first pass.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(max(0, end - size), end):
            padded = (end - start) * lengths[order[start]]
            if max_tokens is not None and padded > max_tokens and end - start > 1:
                continue
            cost = best[start] + padded + CALL_OVERHEAD_TOKENS
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], n
    while end > 0:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return sorted(groups, key=lambda g: len(g) * lengths[g[0]])


def mean_length_budget(lengths: Sequence[int], size: int) -> int:
    """Padded tokens of ``size`` texts of the step's mean length: a token cap that keeps peak
    memory flat as the batch grows (a larger batch has more long texts to fill whole mini-batches
    with; its mean length barely changes)."""
    return max(1, math.ceil(size * sum(lengths) / max(1, len(lengths))))


def make_chunks(
    tokenize: Tokenizer,
    texts: Sequence[str],
    instructions: Sequence[str | None],
    size: int,
    max_tokens: int | Literal["mean"] | None = None,
) -> Chunks:
    """Tokenize a step's texts into mini-batches (``partition_by_length``); ``max_tokens="mean"``:
    ``mean_length_budget``."""
    everything = tokenize(list(texts), None, list(instructions))
    lengths = everything["attention_mask"].sum(dim=1).tolist()
    budget = mean_length_budget(lengths, size) if max_tokens == "mean" else max_tokens
    groups = partition_by_length(lengths, size, budget)
    features = [select_rows(everything, group) for group in groups]
    inverse = torch.argsort(
        torch.tensor([i for g in groups for i in g], dtype=torch.long)
    )  # inverse permutation
    return Chunks(features, inverse)


def select_rows(features: dict[str, torch.Tensor], rows: list[int]) -> dict[str, torch.Tensor]:
    """Some rows of a padded batch, without the padding columns none of them uses (either
    padding side; position ids come from the mask, so they stay right)."""
    index = torch.tensor(rows, dtype=torch.long)
    used = features["attention_mask"][index].any(dim=0)
    return {key: value[index][:, used] for key, value in features.items()}


@dataclass(frozen=True)
class ContrastiveBatch:
    """One step's texts on this process, tokenized into mini-batches: the queries, then the
    positives (one per query), then the hard negatives, in that input order."""

    chunks: Chunks
    n_queries: int
    n_positives: int

    def __post_init__(self) -> None:
        if self.n_queries < 1 or self.n_positives < 1 or self.n_queries + self.n_positives > len(self.chunks):
            raise ValueError(
                f"ContrastiveBatch: {self.n_queries} queries and {self.n_positives} positives "
                f"do not fit {len(self.chunks)} texts"
            )

    def split(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, positives, negatives back in input order (``embeddings`` in mini-batch order)."""
        ordered = embeddings[self.chunks.inverse]
        q, p = self.n_queries, self.n_queries + self.n_positives
        return ordered[:q], ordered[q:p], ordered[p:]


@dataclass(frozen=True)
class Backprop:
    """How a step back-propagates: the backward call (``accelerator.backward`` in training), the
    loss scale (the world size under data parallelism, see ``loss``), the context that skips
    gradient synchronisation, and the device whose RNG dropout draws from."""

    backward: BackwardFn = torch.Tensor.backward
    scale: float = 1.0
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class RandState:
    """The CPU (and current CUDA device) RNG state, recorded to replay dropout exactly."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.device = device
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


@contextlib.contextmanager
def replayed_rng(state: RandState) -> Iterator[None]:
    """Run the block with the RNG as ``state`` recorded it (so dropout draws the same masks),
    then put the RNG back as it was on entry."""
    with torch.random.fork_rng(devices=[] if state.cuda is None else [state.device]):
        state.restore()
        yield


def plain_step(
    model: Callable, batch: ContrastiveBatch, loss_fn: LossFn, backprop: Backprop | None = None
) -> float:
    """Forward every mini-batch with its graph, one loss, one backward (memory grows with the batch)."""
    backprop = backprop or Backprop()
    embeddings = torch.cat([model(f) for f in batch.chunks.features])
    loss = loss_fn(*batch.split(embeddings))
    backprop.backward(loss * backprop.scale)
    return float(loss.detach())


def cached_step(
    model: Callable, batch: ContrastiveBatch, loss_fn: LossFn, backprop: Backprop | None = None
) -> float:
    """GradCache step: same gradient as ``plain_step``, memory of one mini-batch."""
    backprop = backprop or Backprop()
    features_list = batch.chunks.features
    backward, no_sync = backprop.backward, backprop.no_sync
    # The last mini-batch keeps its graph from the first pass: it is back-propagated first, so
    # only one mini-batch's activations are alive at a time, and it saves one forward pass.
    states, cached = [], []
    with torch.no_grad():
        for features in features_list[:-1]:
            states.append(RandState(backprop.device))
            cached.append(model(features))
    last = model(features_list[-1])
    leaf = torch.cat([*cached, last.detach()]).requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(*batch.split(leaf))
        (grad,) = torch.autograd.grad(loss * backprop.scale, leaf)
    first_of_last = sum(e.shape[0] for e in cached)
    with no_sync() if cached else contextlib.nullcontext():  # gradients sync on the final backward
        backward((last * grad[first_of_last:].to(last.dtype)).sum())
    del last
    offset = 0
    for k, (features, state) in enumerate(zip(features_list[:-1], states, strict=True)):
        if k % TRIM_EVERY == 0:  # no graph is alive here: give the heap's free pages back
            release_free_heap()
        sync = contextlib.nullcontext() if k == len(features_list) - 2 else no_sync()
        # the RNG leaves each replay as it entered it: after the step it is where plain_step leaves it
        with replayed_rng(state), sync:
            emb = model(features)
            part = grad[offset : offset + emb.shape[0]].to(emb.dtype)
            backward((emb * part).sum())
        offset += emb.shape[0]
    return float(loss.detach())
