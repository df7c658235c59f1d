"""A pooler a user registers with ``@register`` works everywhere a built-in one does: the config
accepts it, training trains its weights, evaluation accepts it in a design spec, and the
sentence-transformers export reloads it with the same embeddings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import registered_pooler, save_tiny_backbone, training_config, write_pairs
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer
from torch import nn

from poolattn.config import ConfigError
from poolattn.design import model_config
from poolattn.evaluation import evaluate
from poolattn.export import export_sentence_transformers
from poolattn.model import EmbeddingModel
from poolattn.pooling import Pooler, masked_mean
from poolattn.training import train

NAME = "toy_scaled_mean"
TEXTS = ["a red cat", "the blue river and the green tree", "ok"]


class ScaledMean(Pooler):
    """Mean over the pooled tokens times a learned per-feature scale (one trainable tensor)."""

    trainable = True

    def __init__(self, hidden_size: int, num_layers: int, head) -> None:  # noqa: ANN001
        super().__init__(hidden_size, num_layers, head)
        self.scale = nn.Parameter(torch.ones(hidden_size))

    def forward(self, hidden_states, attention_mask, pooling_mask):  # noqa: ANN001, ANN201, D102
        return masked_mean(hidden_states[-1].float(), pooling_mask) * self.scale


@pytest.fixture
def registered() -> Iterator[str]:
    """Register the pooler for one test only, so no other test's parametrisation sees it."""
    with registered_pooler(NAME, ScaledMean) as name:
        yield name


def write_sts(root: Path) -> Path:
    """A tiny local STS dataset in the ../shared/data layout."""
    words = ["red", "blue", "green", "cat", "dog", "car", "tree", "river"]
    rows = [
        {
            "sentence1": f"a {words[i % 8]} {words[(i + 3) % 8]}",
            "sentence2": f"the {words[i % 8]} one",
            "score": i % 5,
        }
        for i in range(10)
    ]
    folder = root / "sts" / "ToySTS"
    folder.mkdir(parents=True)
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_unregistered_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="model.pooling"):
        model_config(pooling=NAME)


def test_registered_pooler_end_to_end(registered: str, tokenizer, tmp_path: Path) -> None:
    assert model_config(pooling=registered).pooling == registered  # the config accepts it

    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    cfg = training_config(
        base,
        [write_pairs(tmp_path / "triples.jsonl", 16)],
        tmp_path / "run",
        model={"pooling": registered, "dtype": "float32"},  # exact comparisons below
        training={"steps": 2, "save_every": 100},
    )
    final = train(cfg)
    head = load_file(str(final / "pooler.safetensors"))
    assert set(head) == {"scale"} and (head["scale"] - 1).abs().max() > 0  # trained, not at init

    model = EmbeddingModel.load(final)
    assert isinstance(model.pooler, ScaledMean) and model.config.pooling == registered
    assert torch.equal(model.pooler.scale.detach(), head["scale"])
    assert model.describe()["head_parameters"] == model.embedding_dim

    # evaluation: the design spec BASE:POOLING+ATTENTION names the registered pooler
    data = write_sts(tmp_path / "data")
    run = evaluate(f"{base}:{registered}+causal", tmp_path / "eval", local_data=data, cache_dir_path=None)
    assert f"{registered}+causal" in json.dumps(run["model"])
    assert np.isfinite(run["tasks"]["ToySTS"]["main_score"])

    # sentence-transformers export: reloads the custom head and gives the same embeddings
    out = export_sentence_transformers(final, tmp_path / "st")
    st = SentenceTransformer(str(out), trust_remote_code=True)
    ours = model.encode(TEXTS, prompt_type="query")
    theirs = st.encode_query(TEXTS)
    assert ours.shape == theirs.shape and np.abs(ours - theirs).max() <= 1e-5
