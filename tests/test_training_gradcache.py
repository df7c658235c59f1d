"""Acceptance 1: the GradCache gradient equals the plain full-batch gradient for every pooler
(dropout on, RNG replayed); plus the loss itself."""

from __future__ import annotations

import pytest
import torch

from poolattn.pooling import POOLERS
from poolattn.training.gradcache import (
    CALL_OVERHEAD_TOKENS,
    ContrastiveBatch,
    cached_step,
    make_chunks,
    partition_by_length,
    plain_step,
)
from poolattn.training.loss import info_nce

QUERIES = [
    f"query number {i} about {w}"
    for i, w in enumerate(["cats", "dogs and birds", "a long river", "x", "rain"])
]
DOCS = [
    f"document {i} that talks about {w} in some detail"
    for i, w in enumerate(["cats", "dogs", "rivers", "x", "y"])
]
NEGS = ["an unrelated text", "another distractor about cars", "short"]


def _randomise_lora_b(model) -> None:
    """LoRA starts with B = 0, which hides dropout from the forward; give B values so it shows."""
    gen = torch.Generator().manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.copy_(torch.randn(param.shape, generator=gen) * 0.5)


def _grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("pooling", sorted(POOLERS))
def test_gradcache_equals_plain_gradient(tiny_model, pooling: str) -> None:
    model = tiny_model(pooling, "bidirectional", max_length=24)
    model.add_lora(r=4, alpha=8, dropout=0.1, target_modules=["q_proj", "v_proj", "up_proj"])
    _randomise_lora_b(model)
    model.pooler.requires_grad_(True)
    model.train()
    # Mixed instructions (and bare documents) share length-sorted mini-batches of 3.
    instructions = ["Retrieve", "Find it", "Retrieve", "Find it", "Retrieve"] + [None] * 8
    chunks = make_chunks(model.tokenize, QUERIES + DOCS + NEGS, instructions, 3)
    assert len(chunks.features) >= 5 and all(f["input_ids"].shape[0] <= 3 for f in chunks.features)

    def loss_fn(qe, pe, ne):
        return info_nce(qe, pe, ne, temperature=0.05, symmetric=True)

    torch.manual_seed(123)
    batch = ContrastiveBatch(chunks, len(QUERIES), len(DOCS))
    plain_loss = plain_step(model, batch, loss_fn)
    plain = _grads(model)
    torch.manual_seed(123)
    cached_loss = cached_step(model, batch, loss_fn)
    cached = _grads(model)

    assert plain_loss == pytest.approx(cached_loss, rel=1e-6)
    assert set(plain) == set(cached) and any("lora_" in n for n in plain)
    if POOLERS[pooling].trainable:
        assert any(n.startswith("pooler.") for n in plain)
    for name, g in plain.items():
        rel = (g - cached[name]).abs().max() / g.abs().max().clamp(min=1e-12)
        assert rel <= 1e-4, f"{pooling}: {name} differs (max relative difference {rel:.2e})"


def test_dropout_is_really_on(tiny_model) -> None:
    """Guard for the test above: without RNG replay, the gradients would differ."""
    model = tiny_model("mean", "causal", max_length=24)
    model.add_lora(r=4, alpha=8, dropout=0.5, target_modules=["q_proj", "v_proj"])
    _randomise_lora_b(model)
    model.train()
    features = model.tokenize(QUERIES)
    torch.manual_seed(0)
    a = model(features)
    b = model(features)
    assert (a - b).abs().max() > 1e-6


def test_info_nce_matches_manual_cross_entropy() -> None:
    torch.manual_seed(0)
    q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(3, 8)
    qn, docs = (
        torch.nn.functional.normalize(q, dim=-1),
        torch.nn.functional.normalize(torch.cat([p, n]), dim=-1),
    )
    logits = qn @ docs.T / 0.05
    manual = -(logits.log_softmax(-1)[torch.arange(4), torch.arange(4)]).mean()
    assert info_nce(q, p, n) == pytest.approx(float(manual), rel=1e-6)
    perfect = info_nce(q, q.clone(), None, temperature=0.01)
    assert perfect < info_nce(q, p, None, temperature=0.01)


def test_chunks_restore_input_order(tiny_model) -> None:
    model = tiny_model("eos", "causal")
    texts = ["b" * 5, "a", "c" * 30, "dd", "e" * 12]
    chunks = make_chunks(model.tokenize, texts, [None] * 5, 2)
    assert sorted(f["input_ids"].shape[0] for f in chunks.features) == [1, 2, 2]
    with torch.no_grad():
        out = torch.cat([model(f) for f in chunks.features])[chunks.inverse]
        direct = torch.cat([model(model.tokenize([t], "document")) for t in texts])
    torch.testing.assert_close(out, direct, atol=1e-5, rtol=1e-4)


def test_partition_keeps_long_texts_apart_and_the_costliest_last() -> None:
    lengths = [12, 500, 9, 480, 10, 11, 8, 510, 13, 7, 9, 10]
    groups = partition_by_length(lengths, 8)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) <= 8 for g in groups)
    long = {1, 3, 7}
    assert any(set(g) == long for g in groups)  # the three long texts share one mini-batch
    padded = [len(g) * max(lengths[i] for i in g) for g in groups]
    assert padded[-1] == max(padded)
    # Fewer padded tokens than fixed-size mini-batches over the same sorted order.
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    fixed = sum(len(order[k : k + 8]) * lengths[order[k]] for k in range(0, len(order), 8))
    assert sum(padded) + CALL_OVERHEAD_TOKENS * len(groups) < fixed + CALL_OVERHEAD_TOKENS * 2


def test_a_step_within_one_mini_batch_skips_the_replay(tiny_model) -> None:
    """Texts that fit one mini-batch by count train with the plain step (no replayed forward,
    the same gradient as the test above shows); more texts, or gradcache off, as configured."""
    from poolattn.training.config import TrainingConfig
    from poolattn.training.trainer import _step_fn

    model = tiny_model("eos", "causal", max_length=24)
    texts = QUERIES + DOCS + NEGS
    chunks = make_chunks(model.tokenize, texts, [None] * len(texts), len(texts), "mean")
    assert len(chunks.features) >= 2  # length groups: GradCache would replay all but the last
    batch = ContrastiveBatch(chunks, len(QUERIES), len(DOCS))
    assert _step_fn(TrainingConfig(mini_batch_size=len(texts)), batch) is plain_step
    assert _step_fn(TrainingConfig(mini_batch_size=len(texts) - 1), batch) is cached_step
    assert _step_fn(TrainingConfig(mini_batch_size=len(texts) - 1, gradcache=False), batch) is plain_step
