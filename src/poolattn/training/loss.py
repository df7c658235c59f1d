"""InfoNCE over in-batch positives and all hard negatives, gathered across processes: every
process computes the global loss (its own embeddings keep their graph), so back-propagating
``loss * world_size`` gives, after data-parallel averaging, the global loss's exact gradient."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def gather_with_grad(local: torch.Tensor) -> torch.Tensor:
    """Concatenate ``local`` from every process (rank order; rows may differ per process):
    other processes' rows are constants, this process's rows keep their graph."""
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world == 1:
        return local
    rank = dist.get_rank()
    size = torch.tensor([local.shape[0]], device=local.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    width = max(counts)
    padded = torch.zeros((width, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: local.shape[0]] = local.detach()
    parts = [torch.zeros_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    pieces = [local if r == rank else part[:n] for r, (part, n) in enumerate(zip(parts, counts, strict=True))]
    return torch.cat(pieces, dim=0)


def info_nce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None = None,
    temperature: float = 0.05,
    symmetric: bool = False,
) -> torch.Tensor:
    """Mean cross-entropy of query i against all positives and negatives (cosine / temperature),
    positive i its target; ``symmetric`` adds the positive -> query direction."""
    q = F.normalize(queries.float(), dim=-1)
    p = F.normalize(positives.float(), dim=-1)
    docs = p
    if negatives is not None and negatives.shape[0]:
        docs = torch.cat([p, F.normalize(negatives.float(), dim=-1)])
    labels = torch.arange(q.shape[0], device=q.device)
    loss = F.cross_entropy(q @ docs.T / temperature, labels)
    if symmetric:
        loss = (loss + F.cross_entropy(p @ q.T / temperature, labels)) / 2
    return loss


def global_info_nce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None,
    temperature: float = 0.05,
    symmetric: bool = False,
) -> torch.Tensor:
    """InfoNCE over the global batch: gathers queries, positives and negatives from all processes."""
    if negatives is None:
        negatives = positives[:0]
    q, p, n = (gather_with_grad(t) for t in (queries, positives, negatives))
    return info_nce(q, p, n, temperature, symmetric)
