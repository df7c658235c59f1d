"""Inference runs a batch's shared prompt prefix once under causal attention (issue 25): the
embeddings must equal those of running every row whole, for every pooler and architecture,
and training, bidirectional attention and left padding must never take that path."""

from __future__ import annotations

import pytest
import torch
from helpers import ARCHITECTURES

TEXTS = [
    "the cat sat on the mat",
    "two dogs run in the park while the sun goes down over the hills",
    "a man is playing music",
    "what is the price of bread and milk and coffee",
    "",
]
INSTRUCTION = "Retrieve semantically similar text about food and music and sport"


def _embed(model, share: bool, **kwargs) -> torch.Tensor:
    model.share_prefix = share
    return model.encode(
        TEXTS, "query", INSTRUCTION, batch_size=8, convert_to="torch", allow_empty=True, **kwargs
    )


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("pooling", ["eos", "mean", "latent", "multilayer"])
def test_shared_prefix_gives_the_same_embeddings(tiny_model, arch: str, pooling: str) -> None:
    model = tiny_model(pooling=pooling, attention="causal", arch=arch)
    with model.inference():
        features = model.tokenize(TEXTS, "query", INSTRUCTION, allow_empty=True)
        assert model.shared_prefix(features["input_ids"], features["attention_mask"]) >= 4
    whole, shared = _embed(model, False), _embed(model, True)
    cosine = torch.nn.functional.cosine_similarity(whole, shared)
    assert float(cosine.min()) >= 0.99999, cosine
    assert torch.allclose(whole, shared, atol=1e-4, rtol=1e-4)


def test_the_prefix_runs_once(tiny_model) -> None:
    """The backbone sees the prefix once and each row's own tokens, not every row whole."""
    model = tiny_model(pooling="eos", attention="causal")
    seen: list[tuple[int, ...]] = []
    hook = model.backbone.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    try:
        _embed(model, True)
    finally:
        hook.remove()
    features = model.tokenize(TEXTS, "query", INSTRUCTION, allow_empty=True)
    with model.inference():
        shared = model.shared_prefix(features["input_ids"], features["attention_mask"])
    assert shared > 0
    width = features["input_ids"].shape[1]
    assert seen == [(1, shared), (len(TEXTS), width - shared)]


def test_no_shared_prefix_where_it_would_change_results(tiny_model) -> None:
    features = tiny_model().tokenize(TEXTS, "query", INSTRUCTION, allow_empty=True)
    ids, mask = features["input_ids"], features["attention_mask"]
    bidirectional = tiny_model(attention="bidirectional")
    left = tiny_model(padding_side="left")
    causal = tiny_model()
    with bidirectional.inference(), left.inference():
        assert bidirectional.shared_prefix(ids, mask) == 0  # a prefix token sees the text
        assert left.shared_prefix(ids, mask) == 0
    causal.train()
    with torch.no_grad():  # GradCache's first pass: dropout must replay exactly
        assert causal.shared_prefix(ids, mask) == 0
    causal.eval()
    assert causal.shared_prefix(ids, mask) == 0  # autograd on: a training forward
    with causal.inference():
        assert causal.shared_prefix(ids[:1], mask[:1]) == 0  # one row: nothing to share
        documents = causal.tokenize(["the cat", "a dog"], "document")
        assert causal.shared_prefix(documents["input_ids"], documents["attention_mask"]) == 0


def test_shared_prefix_through_a_lora_adapter(tiny_model) -> None:
    """A trained model's backbone is a PeftModel: the KV cache passes through it unchanged."""
    model = tiny_model(pooling="multilayer", attention="causal", arch="qwen2")
    model.add_lora(r=4, alpha=8, dropout=0.1, target_modules=["q_proj", "v_proj"])
    for name, parameter in model.backbone.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.1)  # a non-zero update, as after training
    whole, shared = _embed(model, False), _embed(model, True)
    assert float(torch.nn.functional.cosine_similarity(whole, shared).min()) >= 0.99999
