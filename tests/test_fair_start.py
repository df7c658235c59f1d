"""Fair comparisons: heads and adapters really train on a bf16 backbone (float32 weights), and
every design starts from bit-identical LoRA weights for a seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import save_tiny_backbone, training_config, write_pairs
from safetensors.torch import load_file

from poolattn.model import EmbeddingModel
from poolattn.training import build_model, train

TRAINABLE = ["latent", "multilayer", "nv_latent"]
PAPER_DESIGNS = [
    ("eos", "causal"),
    ("latent", "causal"),
    ("multilayer", "causal"),
    ("latent", "bidirectional"),
    ("multilayer", "bidirectional"),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> tuple[Path, Path, list[Path]]:
    root = tmp_path_factory.mktemp("fair")
    base = save_tiny_backbone(root / "tiny", tokenizer)
    return root, base, [write_pairs(root / "triples.jsonl", 48)]


def _lora(model: EmbeddingModel) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.backbone.named_parameters() if "lora_" in n}


def _head(model: EmbeddingModel) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.pooler.named_parameters()}


@pytest.mark.slow  # 20 bf16 training steps per head: the longest unit test
@pytest.mark.parametrize("pooling", TRAINABLE)
def test_bf16_backbone_trains_every_head_and_lora_tensor(setup, pooling: str) -> None:
    root, base, files = setup
    cfg = training_config(
        base,
        files,
        root / f"bf16-{pooling}",
        model={"pooling": pooling, "attention": "bidirectional", "dtype": "bfloat16"},
        training={"steps": 20, "batch_size": 4, "learning_rate": 1e-5, "warmup_steps": 0, "save_every": 100},
    )
    start = build_model(cfg)  # the same seed: the same starting point train() uses
    assert next(p for n, p in start.backbone.named_parameters() if "lora_" not in n).dtype == torch.bfloat16
    assert {p.dtype for p in start.pooler.parameters()} == {torch.float32}
    lora0 = _lora(start)
    assert {p.dtype for p in lora0.values()} == {torch.float32}
    head0 = _head(start)

    final = train(cfg)
    head = load_file(str(final / "pooler.safetensors"))
    lora = load_file(str(final / "adapter" / "adapter_model.safetensors"))
    assert set(head) == set(head0) and {t.dtype for t in head.values()} == {torch.float32}
    for name, before in head0.items():
        assert (head[name] - before).abs().max() > 0, f"head tensor {name} never moved"
    assert len(lora) == len(lora0) and {t.dtype for t in lora.values()} == {torch.float32}
    by_suffix = {n.split("base_model.model.", 1)[-1].replace(".default", ""): t for n, t in lora0.items()}
    for name, after in lora.items():
        before = by_suffix[name.split("base_model.model.", 1)[-1]]
        assert (after - before).abs().max() > 0, f"LoRA tensor {name} never moved"

    loaded = EmbeddingModel.load(final)  # saved heads load back in float32 on the bf16 backbone
    assert {p.dtype for p in loaded.pooler.parameters()} == {torch.float32}
    assert loaded.encode(["a red cat"]).dtype.name == "float32"


def test_every_design_starts_from_the_same_lora_weights(setup) -> None:
    root, base, files = setup
    designs = [*PAPER_DESIGNS, ("nv_latent", "bidirectional"), ("mean", "causal"), ("eos", "bidirectional")]
    starts = {}
    for pooling, attention in designs:
        cfg = training_config(
            base, files, root / "unused", model={"pooling": pooling, "attention": attention}
        )
        starts[(pooling, attention)] = _lora(build_model(cfg))
    reference = starts[PAPER_DESIGNS[0]]
    assert any(t.abs().max() > 0 for t in reference.values())  # lora_A is random, not all zero
    for design, weights in starts.items():
        assert weights.keys() == reference.keys(), design
        for name, tensor in weights.items():
            assert torch.equal(tensor, reference[name]), f"{design}: {name} differs from eos+causal"
    other_seed = training_config(base, files, root / "unused", training={"seed": 1})
    assert any(not torch.equal(t, reference[n]) for n, t in _lora(build_model(other_seed)).items())


def test_same_seed_same_head_whatever_ran_before(setup) -> None:
    root, base, files = setup
    cfg = training_config(
        base, files, root / "unused", model={"pooling": "multilayer", "attention": "causal"}
    )
    first = _head(build_model(cfg))
    torch.manual_seed(999)
    torch.randn(1000)
    second = _head(build_model(cfg))
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name
