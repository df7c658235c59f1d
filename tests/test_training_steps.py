"""The training step's parts: ``ContrastiveBatch`` splits embeddings back into queries, positives
and negatives; ``replayed_rng`` replays recorded dropout and leaves the RNG as it found it; the
GradCache step leaves the RNG exactly where the plain step does (the next step's dropout is
the same whichever is used)."""

from __future__ import annotations

import pytest
import torch

from poolattn.training.gradcache import (
    Backprop,
    Chunks,
    ContrastiveBatch,
    RandState,
    cached_step,
    make_chunks,
    plain_step,
    replayed_rng,
)
from poolattn.training.loss import info_nce

QUERIES = ["a cat sleeps", "the market fell today", "rain again"]
DOCS = ["cats sleep a lot on the mat", "stocks dropped", "it rains", "an unrelated text", "cars"]


def test_split_restores_input_order() -> None:
    inverse = torch.tensor([3, 0, 4, 1, 2])  # input text i sits at row inverse[i]
    chunks = Chunks(features=[], inverse=inverse)
    batch = ContrastiveBatch(chunks, n_queries=2, n_positives=2)
    rows = torch.arange(5.0).unsqueeze(1)  # row r holds the value r
    q, p, n = batch.split(rows)
    assert q.squeeze(1).tolist() == [3.0, 0.0]
    assert p.squeeze(1).tolist() == [4.0, 1.0]
    assert n.squeeze(1).tolist() == [2.0]


def test_counts_that_do_not_fit_the_texts_are_an_error() -> None:
    chunks = Chunks(features=[], inverse=torch.arange(4))
    with pytest.raises(ValueError, match="3 queries and 2 positives do not fit 4 texts"):
        ContrastiveBatch(chunks, n_queries=3, n_positives=2)


def test_replayed_rng_repeats_the_draws_and_restores_the_rng() -> None:
    torch.manual_seed(5)
    state = RandState(torch.device("cpu"))
    first = torch.rand(4)
    torch.rand(10)  # the RNG moves on
    outside = torch.get_rng_state()
    with replayed_rng(state):
        again = torch.rand(4)
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert torch.equal(torch.get_rng_state(), outside)
    with pytest.raises(RuntimeError), replayed_rng(state):  # restored on an error too
        raise RuntimeError
    assert torch.equal(torch.get_rng_state(), outside)


def test_cached_step_leaves_the_rng_where_the_plain_step_does(tiny_model) -> None:
    model = tiny_model("mean", "bidirectional", max_length=24)
    model.add_lora(r=4, alpha=8, dropout=0.3, target_modules=["q_proj", "v_proj"])
    model.train()
    chunks = make_chunks(model.tokenize, QUERIES + DOCS, ["Find it"] * 3 + [None] * 5, 2)
    assert len(chunks.features) >= 3
    batch = ContrastiveBatch(chunks, len(QUERIES), len(QUERIES))
    losses, states, calls = [], [], []

    def backward(loss: torch.Tensor) -> None:
        calls.append(1)
        loss.backward()

    for step in (plain_step, cached_step):
        torch.manual_seed(11)
        losses.append(step(model, batch, info_nce, Backprop(backward=backward, scale=2.0)))
        states.append(torch.get_rng_state())
        model.zero_grad(set_to_none=True)
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert torch.equal(states[0], states[1])
    assert len(calls) == 1 + len(chunks.features)  # plain: one backward; cached: one per mini-batch
