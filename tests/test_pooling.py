"""Padding invariance of every pooler, and the pooling-mask semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poolattn.config import ConfigError
from poolattn.design import model_config
from poolattn.pooling import BUILTIN_POOLERS, POOLERS, gather_last, last_token_index, masked_mean

TEXTS = [
    "short",
    "a considerably longer sentence that needs many more tokens than the others do",
    "a medium length sentence",
]


@pytest.mark.parametrize("pooling", BUILTIN_POOLERS)
@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("exclude_instruction", [False, True])
def test_alone_equals_in_padded_batch(tiny_model, pooling, attention, side, exclude_instruction):
    model = tiny_model(pooling, attention, padding_side=side, exclude_instruction=exclude_instruction)
    kwargs = dict(prompt_type="query", instruction="Find the paraphrase", normalize=False)
    batch = model.encode(TEXTS, **kwargs)
    alone = np.stack([model.encode([t], **kwargs)[0] for t in TEXTS])
    assert np.abs(batch - alone).max() <= 1e-5


def test_config_accepts_exactly_the_registered_poolers():
    for name in POOLERS:
        assert model_config(pooling=name).pooling == name
    with pytest.raises(ConfigError, match="model.pooling") as caught:
        model_config(pooling="max")
    assert all(name in str(caught.value) for name in POOLERS)  # the error lists every choice


def test_last_token_index_any_padding_side():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [2, 4, 4]
    states = torch.arange(15.0).view(3, 5, 1)
    assert gather_last(states, mask).flatten().tolist() == [2.0, 9.0, 14.0]


def test_masked_mean_ignores_padding_even_if_nan():
    states = torch.tensor([[[1.0], [3.0], [float("nan")]]])
    mask = torch.tensor([[1, 1, 0]])
    assert masked_mean(states, mask).item() == 2.0


def test_instruction_tokens_excluded_from_mean(tiny_model):
    """With exclude_instruction, a mean-pooled query depends on the instruction only through attention."""
    model = tiny_model("mean", "causal", exclude_instruction=True)
    features = model.tokenize(["hello world"], prompt_type="query", instruction="Retrieve")
    kept = features["pooling_mask"][0].bool()
    ids = features["input_ids"][0][kept].tolist()
    text = model.tokenizer.decode(ids)
    assert "Retrieve" not in text and "hello world" in text
    assert ids[-1] == model.tokenizer.eos_token_id
    # Under causal attention, excluded instruction tokens come first: the pooled text tokens
    # still see them, so a different instruction gives a different embedding.
    a = model.encode(["hello world"], prompt_type="query", instruction="Retrieve")
    b = model.encode(["hello world"], prompt_type="query", instruction="Classify")
    assert np.abs(a - b).max() > 1e-6


def test_trainable_heads_are_small_by_default(tiny_model):
    """(The paper preset's size: tests/test_head_preset.py.)"""
    small = tiny_model("multilayer", "bidirectional").describe()["head_parameters"]
    paper = tiny_model("multilayer", "bidirectional", head_preset="paper").describe()["head_parameters"]
    assert 0 < 50 * small < paper
    assert tiny_model("eos", "causal").describe()["head_parameters"] == 0


def test_multilayer_layer_vector_defaults(tiny_model):
    assert tiny_model("multilayer", "causal").pooler.layer_vector == "eos"
    assert tiny_model("multilayer", "bidirectional").pooler.layer_vector == "mean"
    assert tiny_model("multilayer", "causal", layer_vector="mean").pooler.layer_vector == "mean"
