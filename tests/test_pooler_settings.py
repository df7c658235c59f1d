"""Poolers own their settings: a registered pooler declares ``config_keys`` (with defaults),
checks them (a bad value is one error naming the field), and its settings travel with the model
through training, save, load and the sentence-transformers export. Designs saved in the old form
(``head.latent_keys``, a top-level ``layer_vector``) still load."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import registered_pooler, save_tiny_backbone, training_config, write_pairs
from sentence_transformers import SentenceTransformer
from torch import nn

from poolattn.config import ConfigError, HeadConfig, ModelConfig
from poolattn.design import model_config
from poolattn.export import export_sentence_transformers
from poolattn.model import EmbeddingModel
from poolattn.model_dir import DESIGN_FILE
from poolattn.pooling import LAST_LAYER, Pooler, masked_mean
from poolattn.training import train

NAME = "toy_softmax_mean"
TEXTS = ["a red cat", "the blue river and the green tree", "ok"]


class SoftmaxMean(Pooler):
    """Tokens weighted by softmax(state . query / temperature), a learned query: the temperature
    is the pooler's own setting, and it changes the direction of the embedding."""

    trainable = True
    layers_read = LAST_LAYER
    config_keys = {"temperature": 1.0}

    @classmethod
    def check_settings(cls, settings: dict[str, Any], design: ModelConfig, where: str) -> dict[str, Any]:
        checked = super().check_settings(settings, design, where)
        if checked["temperature"] <= 0:
            raise ConfigError(f"{where}.temperature: must be > 0, got {checked['temperature']}")
        return checked

    def __init__(self, hidden_size: int, num_layers: int, head: HeadConfig, **settings: Any) -> None:
        super().__init__(hidden_size, num_layers, head, **settings)
        self.query = nn.Parameter(torch.randn(hidden_size) / hidden_size**0.5)

    def forward(self, hidden_states, attention_mask, pooling_mask):  # noqa: ANN001, ANN201, D102
        states = hidden_states[-1].float()
        scores = (states @ self.query / self.temperature).masked_fill(~pooling_mask.bool(), float("-inf"))
        return masked_mean(states, pooling_mask, scores.softmax(dim=1))


@pytest.fixture
def registered() -> Iterator[str]:
    """Register the pooler for one test only, so no other test's parametrisation sees it."""
    with registered_pooler(NAME, SoftmaxMean) as name:
        yield name


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"temperature": 0.0}, r"model\.poolers\.toy_softmax_mean\.temperature: must be > 0, got 0\.0"),
        ({"temperature": "hot"}, r"model\.poolers\.toy_softmax_mean\.temperature: expected a number"),
        (
            {"temprature": 2.0},
            r"model\.poolers\.toy_softmax_mean\.temprature: unknown key; did you mean 'temperature'",
        ),
    ],
)
def test_a_bad_setting_is_one_error_naming_the_field(registered: str, settings: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        model_config(pooling=registered, poolers={registered: settings})


def test_settings_are_checked_by_their_pooler(registered: str) -> None:
    """Defaults filled in; a grid's shared table may set another pooler's settings, still checked."""
    assert model_config(pooling=registered).poolers == {registered: {"temperature": 1.0}}
    shared = {registered: {"temperature": 2}, "latent": {"latent_keys": "last"}}
    assert model_config(pooling=registered, poolers=shared).poolers == {registered: {"temperature": 2.0}}
    assert model_config(pooling="latent", poolers=shared).poolers == {"latent": {"latent_keys": "last"}}
    with pytest.raises(ConfigError, match=r"model\.poolers\.latent\.latent_keys: 'first' is not valid"):
        model_config(pooling=registered, poolers={"latent": {"latent_keys": "first"}})
    with pytest.raises(ConfigError, match=r"model\.poolers\.eos: the 'eos' pooler has no settings"):
        model_config(pooling="eos", poolers={"eos": {"temperature": 1.0}})
    with pytest.raises(ConfigError, match=r"model\.poolers: 'nope' is not valid"):
        model_config(pooling="eos", poolers={"nope": {}})


def test_old_keys_are_read_into_the_pooler_that_owns_them() -> None:
    """``head.latent_keys`` and ``layer_vector`` (configs, options, old poolattn.json) still work."""
    latent = model_config(pooling="latent", head={"latent_keys": "last", "num_latents": 4})
    assert latent.poolers == {"latent": {"latent_keys": "last"}} and latent.head.num_latents == 4
    multilayer = model_config(pooling="multilayer", attention="causal", layer_vector="mean")
    assert multilayer.poolers == {"multilayer": {"layer_vector": "mean"}}
    assert model_config(pooling="multilayer", attention="bidirectional").poolers["multilayer"] == {
        "layer_vector": "mean"  # "auto" resolved against the design
    }
    with pytest.raises(ConfigError, match=r"model\.poolers\.latent\.latent_keys: set twice"):
        model_config(
            pooling="latent", head={"latent_keys": "last"}, poolers={"latent": {"latent_keys": "tokens"}}
        )


def test_a_design_saved_in_the_old_form_loads(tokenizer, tmp_path: Path) -> None:
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    model = EmbeddingModel.from_pretrained(
        str(base), pooling="latent", dtype="float32", poolers={"latent": {"latent_keys": "last"}}
    )
    saved = model.save(tmp_path / "model")
    design = json.loads((saved / DESIGN_FILE).read_text())
    assert design["model"]["poolers"] == {"latent": {"latent_keys": "last"}}
    old = design["model"]
    del old["poolers"]
    old["head"]["latent_keys"], old["layer_vector"] = "last", "auto"  # the layout before this change
    (saved / DESIGN_FILE).write_text(json.dumps(design))
    loaded = EmbeddingModel.load(saved)
    assert loaded.pooler.latent_keys == "last" and loaded.config.poolers == {
        "latent": {"latent_keys": "last"}
    }
    assert np.abs(loaded.encode(TEXTS) - model.encode(TEXTS)).max() <= 1e-6


def test_registered_pooler_setting_trains_saves_loads_and_exports(
    registered: str, tokenizer, tmp_path: Path
) -> None:
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    cfg = training_config(
        base,
        [write_pairs(tmp_path / "triples.jsonl", 16)],
        tmp_path / "run",
        model={"pooling": registered, "dtype": "float32", "poolers": {registered: {"temperature": 0.25}}},
        training={"steps": 2, "save_every": 100},
    )
    final = train(cfg)
    saved = json.loads((final / DESIGN_FILE).read_text())["model"]["poolers"]
    assert saved == {registered: {"temperature": 0.25}}

    model = EmbeddingModel.load(final)
    assert isinstance(model.pooler, SoftmaxMean) and model.pooler.get_config_dict() == {"temperature": 0.25}
    ours = model.encode(TEXTS, prompt_type="query")

    out = export_sentence_transformers(final, tmp_path / "st")
    (design_file,) = out.rglob(DESIGN_FILE)
    assert json.loads(design_file.read_text())["model"]["poolers"] == {registered: {"temperature": 0.25}}
    st = SentenceTransformer(str(out), trust_remote_code=True)
    assert st[0].model.pooler.temperature == 0.25
    theirs = st.encode_query(TEXTS)
    assert ours.shape == theirs.shape and np.abs(ours - theirs).max() <= 1e-5

    model.pooler.temperature = 1.0  # the setting matters: another temperature, other vectors
    assert np.abs(model.encode(TEXTS, prompt_type="query") - theirs).max() > 1e-3
