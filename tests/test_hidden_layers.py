"""The backbone keeps only the hidden layers the pooler reads (``Pooler.layers_read``), and the
embeddings stay what they were when every layer's states were requested: transformers'
``hidden_states[-1]`` is the state after the final norm, the same tensor as ``last_hidden_state``."""

from __future__ import annotations

import pytest
import torch
from helpers import ARCHITECTURES

from poolattn.dtypes import compute_autocast
from poolattn.model import EmbeddingModel
from poolattn.pooling import ALL_LAYERS, BUILTIN_POOLERS, LAST_LAYER, POOLERS, Pooler, register

TEXTS = ["red cat on a mat", "blue dog", "green tree by the river in the city", "song"]
READS_ALL = {"multilayer"}


def every_layer_embeddings(model: EmbeddingModel, features: dict[str, torch.Tensor]) -> torch.Tensor:
    """The embeddings as computed before ``layers_read``: every layer requested from the backbone."""
    with compute_autocast(model.device, model.compute_dtype):
        out = model.backbone(
            input_ids=features["input_ids"],
            attention_mask=features["attention_mask"],
            position_ids=features["position_ids"],
            output_hidden_states=True,
            use_cache=False,
        )
    pooling = features["pooling_mask"] if model.config.exclude_instruction else features["attention_mask"]
    return model.pooler(out.hidden_states, features["attention_mask"], pooling).float()


def test_builtin_poolers_declare_the_layers_they_read() -> None:
    declared = {name: POOLERS[name].layers_read for name in BUILTIN_POOLERS}
    assert declared == {name: ALL_LAYERS if name in READS_ALL else LAST_LAYER for name in BUILTIN_POOLERS}
    assert Pooler.layers_read == ALL_LAYERS  # a user pooler that declares nothing gets every layer


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_last_hidden_state_is_the_final_normed_last_layer(tiny_model, arch: str) -> None:
    """What ``layers_read = "last"`` relies on, for every supported architecture."""
    model = tiny_model("eos", "bidirectional", arch=arch)
    features = model.tokenize(TEXTS, "document")
    with torch.inference_mode():
        out = model.backbone(
            **{k: features[k] for k in ("input_ids", "attention_mask", "position_ids")},
            output_hidden_states=True,
            use_cache=False,
        )
    assert len(out.hidden_states) == model.backbone.config.num_hidden_layers + 1
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("pooling", BUILTIN_POOLERS)
def test_embeddings_match_every_layer_request(tiny_model, pooling: str, arch: str) -> None:
    model = tiny_model(pooling, "bidirectional", arch=arch, exclude_instruction=True)
    model.eval()
    features = model.tokenize(TEXTS, "query")
    with torch.inference_mode():
        states = model.hidden_states(features)
        expected = every_layer_embeddings(model, features)
        got = model(features)
    layers = model.backbone.config.num_hidden_layers
    assert len(states) == (layers + 1 if pooling in READS_ALL else 1)
    assert torch.equal(got, expected), (got - expected).abs().max()


@pytest.mark.parametrize("pooling", ["eos", "multilayer"])
def test_bf16_and_lora_embeddings_match_every_layer_request(tiny_model, pooling: str) -> None:
    """Through a PEFT wrapper and under bf16 autocast the two requests agree too."""
    model = tiny_model(pooling, "causal", dtype="bfloat16")
    model.add_lora(r=4, alpha=8, dropout=0.0)
    with torch.no_grad():  # a non-zero adapter, so the LoRA path changes the states
        for name, param in model.backbone.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)
    model.eval()
    features = model.tokenize(TEXTS, "document")
    with torch.inference_mode():
        got, expected = model(features), every_layer_embeddings(model, features)
    cosine = torch.nn.functional.cosine_similarity(got, expected, dim=-1)
    assert cosine.min() >= 0.9999, cosine


def test_a_pooler_declaring_all_layers_gets_them(tiny_model) -> None:
    """A user pooler reading an inner layer declares nothing and still receives every layer."""

    @register("second_layer_first_token")
    class SecondLayer(Pooler):
        def forward(self, hidden_states, attention_mask, pooling_mask):  # noqa: D102
            return hidden_states[1][:, 0].float()

    try:
        model = tiny_model("second_layer_first_token", "causal")
        model.eval()
        features = model.tokenize(TEXTS, "document")
        with torch.inference_mode():
            assert torch.equal(model(features), every_layer_embeddings(model, features))
            assert len(model.hidden_states(features)) == model.backbone.config.num_hidden_layers + 1
    finally:
        POOLERS.pop("second_layer_first_token", None)
