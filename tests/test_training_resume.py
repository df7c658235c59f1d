"""Acceptance 2: 2N steps == N steps, stop, resume N more (weights within 1e-5, same data order);
checkpoints are atomic, pruned, and the final directory loads and encodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import save_tiny_backbone, training_config, write_pairs
from safetensors.torch import load_file

from poolattn.model import EmbeddingModel
from poolattn.training import OutputExistsError, TrainingDiverged, train
from poolattn.training.checkpoint import list_checkpoints


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    out = dict(load_file(str(model_dir / "pooler.safetensors")))
    out.update(load_file(str(model_dir / "adapter" / "adapter_model.safetensors")))
    return out


@pytest.fixture
def setup(tmp_path: Path, tokenizer):
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    files = [
        write_pairs(tmp_path / "triples.jsonl", 40),
        write_pairs(tmp_path / "pairs.jsonl", 30, False, 100),
    ]
    return tmp_path, base, files


def test_resume_equals_uninterrupted_run(setup) -> None:
    root, base, files = setup
    # latent pooler: the trainable head, LoRA (dropout on) and both sources are all exercised
    model = {"pooling": "latent", "attention": "bidirectional"}
    extra = {"instructions": {"triples": "Find the match"}, "weights": {"pairs": 1.0, "triples": 2.0}}
    full = train(training_config(base, files, root / "full", model=model, data=extra, training={"steps": 6}))
    half_cfg = training_config(base, files, root / "half", model=model, data=extra, training={"steps": 6})
    half_cfg.training.max_steps_this_run = 3  # stop as if killed after step 3 (a checkpoint at 2 and 3)
    stopped = train(half_cfg)
    assert stopped.parent.name == "step-00000003" and not (root / "half" / "final").exists()
    half_cfg.training.max_steps_this_run = None
    resumed = train(half_cfg, resume=True)

    a, b = _metrics(root / "full"), _metrics(root / "half")
    assert [m["step"] for m in b] == list(range(1, 7))
    assert [m["batch"] for m in a] == [m["batch"] for m in b], "data order differs after resume"
    for x, y in zip(a, b, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5)
    wa, wb = _weights(full), _weights(resumed)
    assert set(wa) == set(wb)
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-5, rtol=0, msg=name)
    assert len(list_checkpoints(root / "half")) == 2  # keep_checkpoints default 2
    assert not [p for p in (root / "half" / "checkpoints").iterdir() if p.name.startswith(".tmp")]

    loaded = EmbeddingModel.load(resumed)
    assert loaded.config.pooling == "latent" and loaded.has_adapter
    emb = loaded.encode(["a red cat", "the river"])
    assert emb.shape == (2, 32)


def test_same_seed_same_run_and_existing_output_refused(setup) -> None:
    root, base, files = setup
    cfg = training_config(base, files, root / "one", training={"steps": 2, "gradcache": False})
    train(cfg)
    with pytest.raises(OutputExistsError, match="--resume"):
        train(cfg)
    other = train(training_config(base, files, root / "two", training={"steps": 2, "gradcache": False}))
    assert [m["batch"] for m in _metrics(root / "one")] == [m["batch"] for m in _metrics(root / "two")]
    torch.testing.assert_close(_weights(root / "one" / "final"), _weights(other), atol=0, rtol=0)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(setup) -> None:
    root, base, files = setup
    cfg = training_config(
        base, files, root / "nan", training={"steps": 8, "save_every": 1, "learning_rate": 1e30}
    )
    cfg.training.max_grad_norm = 1e30
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(cfg)
    kept = list_checkpoints(root / "nan")
    assert kept, "the last good checkpoint must be kept"
    weights = _weights(kept[-1] / "model")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_full_finetune_gradient_checkpointing_symmetric(setup) -> None:
    root, base, files = setup
    training = {"steps": 2, "full_finetune": True, "gradient_checkpointing": True, "symmetric": True}
    final = train(
        training_config(base, files, root / "ft", model={"pooling": "multilayer"}, training=training)
    )
    loaded = EmbeddingModel.load(final)
    assert loaded.full_finetune and not loaded.has_adapter
    before = EmbeddingModel.from_pretrained(str(base), pooling="multilayer", max_length=24)
    moved = [
        n
        for n, p in loaded.backbone.named_parameters()
        if not torch.equal(p, dict(before.backbone.named_parameters())[n])
    ]
    assert moved, "full fine-tuning must update the backbone weights"
