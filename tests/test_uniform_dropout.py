"""LoRA dropout with a uniform-draw mask (issue 25): the distribution of nn.Dropout, swapped into
every LoRA layer, replayable by GradCache, and a training run that learns as the reference does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import save_tiny_backbone, training_config, write_pairs
from peft.tuners.lora import LoraLayer

from poolattn.model import EmbeddingModel
from poolattn.peft_compat import UniformDropout
from poolattn.training import train


def test_mask_keeps_one_minus_p_and_rescales() -> None:
    torch.manual_seed(0)
    p, n = 0.1, 200_000
    drop = UniformDropout(p).train()
    x = torch.ones(n, requires_grad=True)
    out = drop(x)
    kept = out != 0
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * sigma
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())  # d out / d x is the scaled mask itself
    assert torch.equal(drop.eval()(x), x) and torch.equal(UniformDropout(0.0).train()(x), x)


def test_dtype_is_kept_and_the_stream_replays() -> None:
    drop = UniformDropout(0.25).train()
    x = torch.randn(64, 32, dtype=torch.bfloat16)
    assert drop(x).dtype == torch.bfloat16
    state = torch.get_rng_state()
    first = drop(x)
    torch.set_rng_state(state)  # what GradCache's replay does before its second forward
    assert torch.equal(drop(x), first)


def test_add_lora_swaps_every_dropout(tiny_model) -> None:
    model = tiny_model()
    model.add_lora(r=4, alpha=8, dropout=0.1)
    layers = [m for m in model.backbone.modules() if isinstance(m, LoraLayer)]
    assert layers
    for layer in layers:
        assert all(type(d) is UniformDropout and d.p == 0.1 for d in layer.lora_dropout.values())
    plain = tiny_model()
    plain.add_lora(r=4, alpha=8, dropout=0.0)  # no dropout: peft's Identity stays
    assert not any(isinstance(m, UniformDropout) for m in plain.backbone.modules())


def _losses(tmp_path: Path, tokenizer, name: str) -> list[float]:
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    cfg = training_config(
        base,
        [write_pairs(tmp_path / "pairs.jsonl", 64)],
        tmp_path / name,
        training={"steps": 12, "batch_size": 8, "learning_rate": 3e-3, "warmup_steps": 0, "save_every": 100},
        lora={"dropout": 0.1},
    )
    train(cfg)
    lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_training_learns_as_with_nn_dropout(tmp_path: Path, tokenizer, monkeypatch) -> None:
    """Numbers kept within noise: the same run with peft's nn.Dropout and with UniformDropout
    starts at the same loss (only the masks differ) and lowers it alike."""
    uniform = _losses(tmp_path, tokenizer, "uniform")
    monkeypatch.setattr(EmbeddingModel, "uniform_dropout", False)
    reference = _losses(tmp_path, tokenizer, "reference")
    assert uniform != reference  # the masks really differ
    assert uniform[0] == pytest.approx(reference[0], rel=0.05)
    for losses in (uniform, reference):
        assert sum(losses[-3:]) < sum(losses[:3])
    assert sum(uniform[-3:]) / 3 == pytest.approx(sum(reference[-3:]) / 3, rel=0.15)
