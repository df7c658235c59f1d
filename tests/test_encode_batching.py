"""``encode`` tokenizes each chunk once and cuts batches by token length: the result must not
depend on how texts fall into chunks and batches (padding side, prompts, chunk boundaries)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import poolattn.model as model_module

TEXTS = [
    "a",
    "A man is playing a guitar.",
    "The stock market fell today, sharply and for the third day running.",
    "ok then",
    "x y z " * 40,  # over max_length: truncated, EOS kept
] * 3


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize(("pooling", "attention"), [("eos", "causal"), ("latent", "bidirectional")])
def test_encode_independent_of_chunks_and_batches(
    tiny_model: Callable, monkeypatch: pytest.MonkeyPatch, padding_side: str, pooling: str, attention: str
) -> None:
    model = tiny_model(pooling, attention, padding_side=padding_side, exclude_instruction=True, max_length=32)
    alone = np.stack([model.encode(t, prompt_type="query") for t in TEXTS])
    for chunk in (2048, 4):
        monkeypatch.setattr(model_module, "ENCODE_CHUNK", chunk)
        batched = model.encode(TEXTS, prompt_type="query", batch_size=3)
        assert batched.shape == alone.shape
        assert np.abs(batched - alone).max() <= 1e-5
