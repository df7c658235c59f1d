"""``head_preset = "paper"`` end to end: a training TOML on a tiny local backbone builds the
paper-sized head, ``describe()`` reports its size, and the saved model keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import save_tiny_backbone, write_pairs

from poolattn.model import EmbeddingModel
from poolattn.training import build_model, load_train_config

HIDDEN, LAYERS = 32, 3


def paper_head_size(d: int, layers: int, pooling: str) -> int:
    """The paper's head (768 latents, 32 heads x 2048 dims, GEGLU x4) as a polynomial in the
    model width ``d``: four d x 65536 projections, 768 latent rows, a 12 d^2 feed-forward, three
    LayerNorms, the feed-forward biases (9 d), and for ``multilayer`` one position row per layer."""
    size = 12 * d * d + (4 * 32 * 2048 + 768 + 3 * 2 + 9) * d
    return size + layers * d if pooling == "multilayer" else size


def test_formula_gives_the_published_size_on_mistral() -> None:
    """Anchor: the paper's head on Mistral-7B (d 4096, 32 layers) has about 1.3B parameters."""
    assert paper_head_size(4096, 32, "multilayer") == pytest.approx(1.3e9, rel=0.03)


@pytest.mark.parametrize("pooling", ["latent", "multilayer", "nv_latent"])
def test_paper_preset_from_a_toml_file(tokenizer, tmp_path: Path, pooling: str) -> None:
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer, hidden_size=HIDDEN, num_hidden_layers=LAYERS)
    pairs = write_pairs(tmp_path / "pairs.jsonl", 8)
    toml = tmp_path / "train.toml"
    toml.write_text(
        f'[model]\nbase = "{base}"\npooling = "{pooling}"\nhead_preset = "paper"\ndtype = "float32"\n'
        f'[data]\ntrain = ["{pairs}"]\n[training]\noutput_dir = "{tmp_path / "run"}"\n'
    )
    cfg = load_train_config(toml)
    head = cfg.model.head
    assert (head.num_latents, head.num_heads, head.head_dim, head.ff_mult) == (768, 32, 2048, 4)

    model = build_model(cfg)
    info = model.describe()
    assert info["layers"] == LAYERS
    assert info["head_parameters"] == paper_head_size(HIDDEN, LAYERS, pooling)
    assert info["head_parameters"] > info["backbone_parameters"]  # the confound the small default avoids

    saved = EmbeddingModel.load(model.save(tmp_path / "saved"))
    assert saved.config.head_preset == "paper"
    assert saved.describe()["head_parameters"] == info["head_parameters"]
