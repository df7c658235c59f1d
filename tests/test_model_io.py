"""Save/load round trips: design JSON + head safetensors + PEFT adapter give the same embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import save_tiny_backbone

from poolattn.model import EmbeddingModel
from poolattn.model_dir import DESIGN_FILE
from poolattn.pooling import BUILTIN_POOLERS

TEXTS = ["a first sentence", "and a second, longer sentence to embed", "third"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer):
    """A tiny random Llama saved as a local model directory (a loadable ``base``)."""
    return save_tiny_backbone(tmp_path_factory.mktemp("tiny-llama"), tokenizer)


def perturb(model: EmbeddingModel) -> None:
    """Move trainable weights away from their init, as training would."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in list(model.pooler.parameters()) + [
            p for n, p in model.backbone.named_parameters() if "lora_" in n
        ]:
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)


@pytest.mark.parametrize("pooling", BUILTIN_POOLERS)
@pytest.mark.parametrize("lora", [False, True])
def test_save_load_round_trip(tiny_dir, tmp_path, pooling, lora):
    attention = "bidirectional" if pooling in ("latent", "mean") else "causal"
    model = EmbeddingModel.from_pretrained(str(tiny_dir), attention=attention, pooling=pooling)
    if lora:
        model.add_lora(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    perturb(model)
    before = model.encode(TEXTS, prompt_type="query", instruction="Find it")
    model.save(tmp_path / "saved")
    design = json.loads((tmp_path / "saved" / DESIGN_FILE).read_text())
    assert design["model"]["pooling"] == pooling and design["has_adapter"] == lora
    assert not list((tmp_path / "saved").rglob("*.bin")) and not list((tmp_path / "saved").rglob("*.pt"))
    loaded = EmbeddingModel.load(tmp_path / "saved")
    after = loaded.encode(TEXTS, prompt_type="query", instruction="Find it")
    assert np.abs(before - after).max() <= 1e-6
    assert loaded.fingerprint() == model.fingerprint()


def test_save_overwrites_atomically_and_fingerprint_tracks_weights(tiny_dir, tmp_path):
    model = EmbeddingModel.from_pretrained(str(tiny_dir), pooling="latent")
    model.save(tmp_path / "m")
    first = model.fingerprint()
    perturb(model)
    assert model.fingerprint() != first
    model.save(tmp_path / "m")
    assert EmbeddingModel.load(tmp_path / "m").fingerprint() == model.fingerprint()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_load_rejects_a_non_model_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a poolattn model directory"):
        EmbeddingModel.load(tmp_path)


def test_missing_local_path_is_a_clear_error(tmp_path):
    from poolattn.config import ConfigError

    with pytest.raises(ConfigError, match="not a model directory"):
        EmbeddingModel.from_pretrained(str(tmp_path / "nope.gguf"))


def test_unknown_design_format_version_is_a_clear_error(tmp_path, tiny_model):
    import json

    from poolattn.config import ConfigError
    from poolattn.model import EmbeddingModel
    from poolattn.model_dir import DESIGN_FILE

    tiny_model("eos", "causal").save(tmp_path / "m")
    design = json.loads((tmp_path / "m" / DESIGN_FILE).read_text())
    design["format_version"] = 1
    (tmp_path / "m" / DESIGN_FILE).write_text(json.dumps(design))
    with pytest.raises(ConfigError, match="format_version 1"):
        EmbeddingModel.load(tmp_path / "m")
