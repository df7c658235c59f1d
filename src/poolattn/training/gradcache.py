"""One optimisation step's forward/backward, plain or cached (GradCache, Gao et al. 2021).

Cached: embed every mini-batch without a graph (recording the RNG state before each), compute
the loss and its gradient with respect to the embeddings, then re-run each mini-batch with a
graph under the replayed RNG state and back-propagate that gradient. Dropout masks repeat
exactly, so the parameter gradient equals the plain one, while only one mini-batch's
activations live at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
BackwardFn = Callable[[torch.Tensor], None]
Tokenizer = Callable[[list[str], str, str | None], dict[str, torch.Tensor]]


@dataclass
class Chunks:
    """Tokenized mini-batches of one kind of text; ``inverse`` restores input order."""

    features: list[dict[str, torch.Tensor]]
    inverse: torch.Tensor

    def __len__(self) -> int:
        return int(self.inverse.numel())


def make_chunks(
    tokenize: Tokenizer, texts: Sequence[str], prompt_type: str, instructions: Sequence[str | None], size: int
) -> Chunks:
    """Split texts into mini-batches of at most ``size``, grouped by instruction and sorted by
    length so little compute goes to padding."""
    order = sorted(range(len(texts)), key=lambda i: (instructions[i] or "", -len(texts[i])))
    features, groups, current = [], [], []
    for i in order:
        if current and (len(current) == size or instructions[i] != instructions[current[0]]):
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    for group in groups:
        features.append(tokenize([texts[i] for i in group], prompt_type, instructions[group[0]]))
    flat = [i for g in groups for i in g]
    inverse = torch.empty(len(flat), dtype=torch.long)
    inverse[torch.tensor(flat, dtype=torch.long)] = torch.arange(len(flat))
    return Chunks(features, inverse)


class RandState:
    """The CPU (and current CUDA device) RNG state, to replay dropout exactly."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.device = device
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def _split(embeddings: torch.Tensor, q: Chunks, d: Chunks, n_pos: int):
    queries = embeddings[: len(q)][q.inverse]
    docs = embeddings[len(q) :][d.inverse]
    return queries, docs[:n_pos], docs[n_pos:]


def plain_step(
    model: Callable,
    q: Chunks,
    d: Chunks,
    n_pos: int,
    loss_fn: LossFn,
    backward: BackwardFn,
    scale: float = 1.0,
) -> float:
    """Forward every mini-batch with its graph, one loss, one backward (memory grows with the batch)."""
    embeddings = torch.cat([model(f) for f in q.features + d.features])
    loss = loss_fn(*_split(embeddings, q, d, n_pos))
    backward(loss * scale)
    return float(loss.detach())


def cached_step(
    model: Callable,
    q: Chunks,
    d: Chunks,
    n_pos: int,
    loss_fn: LossFn,
    backward: BackwardFn,
    scale: float = 1.0,
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    device: torch.device | None = None,
) -> float:
    """GradCache step: same gradient as ``plain_step``, memory of one mini-batch."""
    chunks = q.features + d.features
    device = device or torch.device("cpu")
    states, cached = [], []
    with torch.no_grad():
        for features in chunks:
            states.append(RandState(device))
            cached.append(model(features))
    after = RandState(device)
    leaf = torch.cat(cached).detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(*_split(leaf, q, d, n_pos))
        (grad,) = torch.autograd.grad(loss * scale, leaf)
    offset = 0
    for k, (features, state) in enumerate(zip(chunks, states, strict=True)):
        state.restore()
        sync = contextlib.nullcontext() if k == len(chunks) - 1 else no_sync()
        with sync:
            emb = model(features)
            part = grad[offset : offset + emb.shape[0]].to(emb.dtype)
            backward((emb * part).sum())
        offset += emb.shape[0]
    after.restore()
    return float(loss.detach())
