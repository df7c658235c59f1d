"""Bidirectional really is bidirectional and causal really is causal, on every architecture.

The proof: change only the last token; the first token's last-layer state must change
under bidirectional attention and must not under causal attention. Checked with batch
size 1 (where masks are skipped) and inside a padded batch, with sdpa and eager.
"""

from __future__ import annotations

import pytest
import torch
from helpers import ARCHITECTURES

from poolattn.backbone import AttentionModeError, set_attention_mode, verify_attention
from poolattn.model import EmbeddingModel

TEXT = "the quick brown fox jumps over the lazy dog"
CHANGED = "the quick brown fox jumps over the lazy cat"
LONGER = "a much longer companion text that forces the first text to be padded in the batch"


def first_token_shift(model: EmbeddingModel, padded: bool) -> float:
    """Max change of the first token's last-layer state when only the last word changes."""
    states = []
    for text in (TEXT, CHANGED):
        batch = [text, LONGER] if padded else [text]
        features = model.tokenize(batch)
        if padded:
            assert features["attention_mask"][0].sum() < features["attention_mask"].shape[1], (
                "text 0 must be padded"
            )
        with torch.inference_mode():
            last = model.hidden_states(features)[-1]
        first = int(features["attention_mask"][0].nonzero()[0])  # first real token, any padding side
        states.append(last[0, first].float())
    return float((states[0] - states[1]).abs().max())


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("padded", [False, True], ids=["batch1", "padded"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_attention_modes_on_tiny_models(tiny_model, arch, impl, padded, side):
    causal = tiny_model("eos", "causal", arch=arch, attn_implementation=impl, padding_side=side)
    assert first_token_shift(causal, padded) < 1e-6
    bidirectional = tiny_model("eos", "bidirectional", arch=arch, attn_implementation=impl, padding_side=side)
    assert first_token_shift(bidirectional, padded) > 1e-4


@pytest.mark.slow
@pytest.mark.needs_model
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_attention_modes_on_real_smollm2(impl):
    model = EmbeddingModel.from_pretrained("smollm2-135m", attention="causal", attn_implementation=impl)
    for padded in (False, True):
        assert first_token_shift(model, padded) < 1e-5
    set_attention_mode(model.backbone, "bidirectional")
    model.config.attention = "bidirectional"
    verify_attention(model.backbone, "bidirectional")
    for padded in (False, True):
        assert first_token_shift(model, padded) > 1e-3


def test_switching_is_idempotent_and_reversible(tiny_model):
    model = tiny_model("mean", "bidirectional")
    for _ in range(2):
        set_attention_mode(model.backbone, "bidirectional")
    verify_attention(model.backbone, "bidirectional")
    set_attention_mode(model.backbone, "causal")
    verify_attention(model.backbone, "causal")
    assert first_token_shift(model, padded=False) < 1e-6


def test_verifier_refuses_a_model_that_stayed_causal(tiny_model):
    """A backbone whose switch did not take effect must fail loudly, never fall back silently."""
    model = tiny_model("eos", "causal")
    with pytest.raises(AttentionModeError, match="refusing to fall back"):
        verify_attention(model.backbone, "bidirectional")
