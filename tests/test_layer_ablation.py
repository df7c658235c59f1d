"""``poolattn layers``: the layer ablation of a multilayer model trained by configs/tiny.toml
(on a tiny random backbone, so it runs in seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import save_tiny_backbone, write_pairs

from poolattn.cli import main
from poolattn.experiment import load_experiment_config
from poolattn.layer_ablation import (
    LayerSubsetBackend,
    LayerVectorCache,
    ablation_tasks,
    conditions,
    contiguous_blocks,
    layer_ablation,
    layer_mask,
    main_scores_only,
    score_condition,
)
from poolattn.model import EmbeddingModel
from poolattn.training import train, train_config_from_dict

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LAYERS = 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """configs/tiny.toml's multilayer design, trained on a 4-layer tiny random Llama (and
    synthetic pairs under the training file's name, so no data folder is needed)."""
    root = tmp_path_factory.mktemp("layers")
    base = save_tiny_backbone(root / "tiny-llama", tokenizer, num_hidden_layers=LAYERS)
    pairs = write_pairs(root / "snli_triples.jsonl", 32)
    overrides = [
        f"model.base={json.dumps(str(base))}",
        f"data.train={json.dumps([str(pairs)])}",
        f"experiment.output_dir={json.dumps(str(root / 'exp'))}",
    ]
    config = load_experiment_config(CONFIGS / "tiny.toml", overrides)
    run = next(r for r in config.runs() if r.trained and r.design.startswith("multilayer"))
    return train(train_config_from_dict(config.train_data(run), config.base_dir))


@pytest.mark.needs_data
def test_cli_writes_json_and_png(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ablation"
    args = [
        "layers",
        str(trained),
        "--output",
        str(out),
        "--tasks",
        "STSBenchmark,SciFact",
        "--max-items",
        "8",
    ]
    args += ["--blocks", "2"]
    assert main(args) == 0
    result = json.loads((out / "layer_ablation.json").read_text())
    assert (out / "layer_ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["layers"] == LAYERS and [r["layer"] for r in result["per_layer"]] == [1, 2, 3, 4]
    assert [t["split"] for t in result["tasks"]] == ["dev", "test"]  # STSBenchmark's dev file
    assert result["tasks"][0]["files"] == {"eval": str(Path(result["tasks"][0]["source"]) / "dev.jsonl")}
    assert [b["layers"] for b in result["blocks"]] == [[1, 2], [3, 4]]
    assert abs(sum(r["attention_mass"] for r in result["per_layer"]) - 1) < 1e-4
    for row in result["per_layer"]:
        assert row["importance"] == pytest.approx(result["all"]["mean"] - row["removed"]["mean"])
    assert "importance" in capsys.readouterr().out


@pytest.mark.needs_data
def test_only_one_layer_equals_removing_all_others_and_backbone_runs_once(trained: Path) -> None:
    model = EmbeddingModel.load(trained)
    rows = {"n": 0}
    forward = model.backbone.forward

    def counting(*args, **kwargs):
        rows["n"] += int(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    model.backbone.forward = counting
    cache = LayerVectorCache(model, batch_size=8)
    result = layer_ablation(model, tasks=["STSBenchmark"], max_items=8, cache=cache)
    texts = len(cache.vectors_by_key)
    assert texts > 0 and rows["n"] == texts == cache.backbone_texts == result["backbone_texts"]

    items = ablation_tasks(None, ["STSBenchmark"], 8)
    for row in result["per_layer"]:
        removed = set(range(1, LAYERS + 1)) - {row["layer"]}
        kept = [j for j in range(1, LAYERS + 1) if j not in removed]
        assert score_condition(cache, kept, items, model.fingerprint()) == row["only"]
    assert rows["n"] == texts  # the whole grid and the rescoring reused the cached vectors


@pytest.mark.needs_data
def test_skipping_mteb_extras_keeps_every_main_score(trained: Path) -> None:
    """The grid skips mteb's retrieval abstention metrics (most of its time at small max-items):
    the task results lose those extra keys and keep every main score, bit for bit."""
    from poolattn.eval_results import task_main_score
    from poolattn.evaluation.encoder import MTEBEncoder
    from poolattn.evaluation.runner import run_mteb_task

    model = EmbeddingModel.load(trained)
    cache = LayerVectorCache(model, batch_size=8)
    items = ablation_tasks(None, ["STSBenchmark", "SciFact", "TREC"], 8)
    for kept in ([1, 2, 3, 4], [2]):
        encoder = MTEBEncoder(LayerSubsetBackend(cache, kept, "fp"), cache_dir=None)
        for item in items:
            full = run_mteb_task(encoder, item.task, 32)
            with main_scores_only(items):
                lean = run_mteb_task(encoder, item.task, 32)
            splits = item.task.metadata.eval_splits
            assert task_main_score(lean, splits) == task_main_score(full, splits)
            if item.family == "Retrieval":
                extra = {k for k in full["scores"]["test"][0] if k.startswith("nauc")}
                assert extra and not extra & set(lean["scores"]["test"][0])
    again = run_mteb_task(encoder, items[1].task, 32)  # the evaluator is whole again afterwards
    assert any(k.startswith("nauc") for k in again["scores"]["test"][0])


def test_masking_a_layer_equals_dropping_its_key(trained: Path) -> None:
    """Removing a layer from the key set is the same as pooling without that layer's vector."""
    pooler = EmbeddingModel.load(trained).pooler
    torch.manual_seed(0)
    vectors = torch.randn(3, LAYERS, pooler.hidden_size) * 50
    kept = [1, 3, 4]
    masked = pooler.pool_vectors(vectors, layer_mask(kept, LAYERS))
    keys = vectors + pooler.layer_position.weight
    dropped = pooler.pool(keys[:, [k - 1 for k in kept]])
    torch.testing.assert_close(masked, dropped, atol=1e-5, rtol=1e-5)
    assert (masked - pooler.pool_vectors(vectors)).abs().max() > 1e-4


def test_grid_and_blocks() -> None:
    assert contiguous_blocks(30, 4) == [
        tuple(range(1, 9)),
        tuple(range(9, 17)),
        tuple(range(17, 24)),
        tuple(range(24, 31)),
    ]
    names = [c.name for c in conditions(30)]
    assert names[0] == "all" and len(names) == 1 + 30 + 4 + 30
    assert "without 1-8" in names and "only 30" in names
    with pytest.raises(ValueError, match="at least one layer"):
        layer_mask([], 4)
    with pytest.raises(ValueError, match="outside"):
        layer_mask([5], 4)


def test_non_multilayer_model_is_refused(tiny_model) -> None:
    with pytest.raises(ValueError, match="multilayer"):
        LayerVectorCache(tiny_model("latent", "causal"))


def test_experiment_attention_mass_per_layer(trained: Path) -> None:
    from poolattn.experiment.layers import attention_per_layer

    mass = attention_per_layer(EmbeddingModel.load(trained), ["a cat sleeps", "the stock market fell"])
    assert len(mass) == LAYERS and abs(sum(mass) - 1) < 1e-5 and min(mass) > 0
