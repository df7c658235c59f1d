"""Head warm-up (training.head_warmup_steps): the head trains alone on cached backbone states
(LoRA untouched), then head and LoRA train together; it works with GradCache, resumes mid-warm-up
to bit-identical weights, leaves the joint phase's data order alone, is a no-op for designs
without a trainable head, and is recorded in the saved recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import save_tiny_backbone, training_config, write_pairs
from safetensors.torch import load_file

from poolattn.config import ConfigError
from poolattn.training import build_model, train
from poolattn.training.checkpoint import CHECKPOINT_DIR, checkpoint_name
from poolattn.training.config import read_train_run
from poolattn.training.head_warmup import HeadInputCache


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> tuple[Path, Path, list[Path]]:
    root = tmp_path_factory.mktemp("warm")
    base = save_tiny_backbone(root / "tiny", tokenizer)
    # 20 examples at batch 8: the sampler wraps within the warm-up, so texts repeat (cache hits)
    return root, base, [write_pairs(root / "triples.jsonl", 20)]


def _config(setup, name: str, pooling: str = "multilayer", **training):
    root, base, files = setup
    recipe = {"steps": 3, "head_warmup_steps": 3, "save_every": 1, "keep_checkpoints": 20, **training}
    return training_config(
        base,
        files,
        root / name,
        model={"pooling": pooling, "attention": "bidirectional"},
        data={"instructions": {"triples": "Find the match"}},
        training=recipe,
    )


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _checkpoint(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / CHECKPOINT_DIR / checkpoint_name(step) / "trainable.safetensors"))


def _split(weights: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    lora = {k: v for k, v in weights.items() if "lora_" in k}
    head = {k: v for k, v in weights.items() if k.startswith("pooler.")}
    assert lora and head and len(lora) + len(head) == len(weights)
    return lora, head


def _assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("pooling", ["latent", "multilayer", "nv_latent"])
def test_cached_head_inputs_give_the_models_embeddings(setup, pooling: str) -> None:
    model = build_model(_config(setup, f"unused-{pooling}", pooling))
    model.eval()
    texts = ["a red cat number 1", "the river", "a red cat number 1", "one two three four five six"]
    features = model.tokenize(texts, "query", ["Find it", None, "Find it", "Find it"])
    cache = HeadInputCache(model)
    with torch.no_grad():
        expected = model(features)
        got = cache(features)
        assert cache.backbone_texts == 3  # a repeated text runs through the backbone once
        again = cache(features)
    assert cache.backbone_texts == 3
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, got, atol=0, rtol=0)
    if pooling != "multilayer":  # the probe found that these heads read the last layer only
        assert cache.read_layers == (cache.num_states - 1,)  # the last of the states the model keeps


def test_warmup_trains_only_the_head_then_lora_joins(setup) -> None:
    cfg = _config(setup, "warm")
    start_lora, start_head = _split(
        {n: p.detach().clone() for n, p in build_model(cfg).named_parameters() if p.requires_grad}
    )
    final = train(cfg)
    run = final.parent

    phases = [(m["step"], m["phase"]) for m in _metrics(run)]
    assert phases == [
        (1, "head_warmup"),
        (2, "head_warmup"),
        (3, "head_warmup"),
        (4, "joint"),
        (5, "joint"),
        (6, "joint"),
    ]
    previous_head = start_head
    for step in (1, 2, 3):  # every warm-up step moves the head and leaves LoRA bit-identical
        lora, head = _split(_checkpoint(run, step))
        _assert_same(lora, start_lora)
        assert all(
            not torch.equal(head[k], previous_head[k])
            for k in ("pooler.latents", "pooler.layer_position.weight")
        )
        previous_head = head
    lora, _ = _split(_checkpoint(run, 6))
    moved = [k for k in lora if "lora_B" in k and not torch.equal(lora[k], start_lora[k])]
    assert moved, "LoRA did not train after the warm-up"
    card = json.loads((final / "model_card.json").read_text())
    assert card["training"]["head_warmup_steps"] == 3 and card["training"]["steps"] == 3
    assert read_train_run(run)["head_warmup_steps"] == 3

    plain = train(_config(setup, "no-warm", head_warmup_steps=0))
    joint = [m["batch"] for m in _metrics(run) if m["phase"] == "joint"]
    assert joint == [m["batch"] for m in _metrics(plain.parent)], "the warm-up changed the joint phase's data"


@pytest.mark.parametrize("pooling", ["latent", "multilayer"])
def test_resume_mid_warmup_equals_an_uninterrupted_run(setup, pooling: str) -> None:
    full = train(_config(setup, f"full-{pooling}", pooling, head_warmup_steps=4, steps=2))
    cfg = _config(setup, f"half-{pooling}", pooling, head_warmup_steps=4, steps=2)
    cfg.training.max_steps_this_run = 3  # killed after warm-up step 3 of 4 (texts repeat across the cut)
    stopped = train(cfg)
    assert stopped.parent.name == checkpoint_name(3)
    assert (stopped.parent / "head_warmup_optimizer.json").exists()
    cfg.training.max_steps_this_run = None
    resumed = train(cfg, resume=True)
    _assert_same(load_file(str(full / "pooler.safetensors")), load_file(str(resumed / "pooler.safetensors")))
    adapter = "adapter/adapter_model.safetensors"
    _assert_same(load_file(str(full / adapter)), load_file(str(resumed / adapter)))
    assert [m["loss"] for m in _metrics(full.parent)] == [m["loss"] for m in _metrics(resumed.parent)]


def test_gradcache_and_plain_warmups_agree(setup) -> None:
    heads = []
    for gradcache in (True, False):
        cfg = _config(setup, f"gc-{gradcache}", "latent", steps=1, gradcache=gradcache, mini_batch_size=3)
        cfg.training.max_steps_this_run = 3  # the warm-up only
        heads.append(_split(_checkpoint(train(cfg).parent.parent.parent, 3))[1])
    for name in heads[0]:
        torch.testing.assert_close(heads[0][name], heads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_no_trainable_head_is_a_noop(setup) -> None:
    warm = train(_config(setup, "eos-warm", "eos"))
    plain = train(_config(setup, "eos-plain", "eos", head_warmup_steps=0))
    metrics = _metrics(warm.parent)
    assert [(m["step"], m["phase"]) for m in metrics] == [(1, "joint"), (2, "joint"), (3, "joint")]
    assert read_train_run(warm.parent)["head_warmup_steps"] == 0
    adapter = "adapter/adapter_model.safetensors"
    _assert_same(load_file(str(warm / adapter)), load_file(str(plain / adapter)))


def test_bad_values_are_config_errors(setup) -> None:
    with pytest.raises(ConfigError, match="training.head_warmup_steps: must be >= 0"):
        _config(setup, "neg", head_warmup_steps=-1)
    cfg = _config(setup, "changed", "latent", head_warmup_steps=2, steps=1)
    cfg.training.max_steps_this_run = 1
    train(cfg)
    cfg.training.head_warmup_steps = 3
    with pytest.raises(ConfigError, match="trained with 2 head warm-up steps"):
        train(cfg, resume=True)
