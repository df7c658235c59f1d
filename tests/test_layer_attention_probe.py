"""Layer attention of a multilayer run takes its probe texts from the run's own training data
(local files or a hub dataset), so a paper config with no local data folder gets it too, and
``experiment.layer_attention_sample = 0`` turns it off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import save_tiny_backbone

from poolattn.design import model_config
from poolattn.experiment.layers import layer_attention, probe_texts
from poolattn.experiment.plan import load_experiment_config
from poolattn.model import EmbeddingModel
from poolattn.settings import DATA_DIR_ENV
from poolattn.training.config import DataConfig


def write_examples(path: Path, tag: str, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(
                json.dumps({"query": f"q {tag} {i}", "positive": f"doc {tag} {i}", "negative": "x"}) + "\n"
            )
    return path


def test_probe_texts_take_turns_over_local_sources(tmp_path: Path) -> None:
    write_examples(tmp_path / "a.jsonl", "a", 5)
    write_examples(tmp_path / "b.jsonl", "b", 2)
    (tmp_path / "b.jsonl").open("a").write(json.dumps({"query": "q", "positive": "doc a 0"}) + "\n")
    data = DataConfig(train=["a.jsonl", "b.jsonl"])
    texts = probe_texts(data, 6, str(tmp_path))
    # in turn from each source, a repeated text once, the count respected
    assert texts == ["doc a 0", "doc b 0", "doc a 1", "doc b 1", "doc a 2", "doc a 3"]
    every = ["doc a 0", "doc b 0", "doc a 1", "doc b 1", "doc a 2", "doc a 3", "doc a 4"]
    assert probe_texts(data, 100, str(tmp_path)) == every


def test_probe_texts_read_only_the_first_rows_of_a_hub_dataset(tmp_path: Path, monkeypatch) -> None:
    """A dataset repository as ``datasets`` loads it (here a local folder: no network)."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    repo = tmp_path / "ir_data"
    repo.mkdir()
    write_examples(repo / "train.jsonl", "hub", 50)
    lines = (repo / "train.jsonl").read_text().splitlines()
    lines[10] = json.dumps({"query": "q", "positive": None, "negative": "x"})  # unreadable if parsed
    (repo / "train.jsonl").write_text("\n".join(lines) + "\n")
    data = DataConfig(hub=[str(repo)])
    assert probe_texts(data, 4) == [f"doc hub {i}" for i in range(4)]


@pytest.fixture
def experiment(tmp_path: Path, tokenizer, monkeypatch) -> Path:
    """A multilayer experiment on a tiny model whose only data is its training file: no local
    evaluation folder, and none in the environment."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    backbone = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    write_examples(tmp_path / "pairs.jsonl", "t", 12)
    config = tmp_path / "exp.toml"
    config.write_text(
        f"""
[experiment]
output_dir = "out"
designs = ["multilayer+bidirectional"]
untrained = []
layer_attention_sample = 5
[model]
base = "{backbone}"
max_length = 16
[data]
train = ["pairs.jsonl"]
[evaluation]
benchmark = "MTEB(eng, v1)"
"""
    )
    return config


def test_layer_attention_without_a_local_data_folder(experiment: Path) -> None:
    config = load_experiment_config(experiment)
    run = config.runs()[0]
    model = EmbeddingModel.from_config(model_config(**run.model))
    mass = layer_attention(model, config, run)
    assert mass is not None and len(mass) == model.pooler.num_layers
    assert abs(sum(mass) - 1) < 1e-5 and min(mass) > 0


def test_layer_attention_sample_zero_turns_it_off(experiment: Path) -> None:
    config = load_experiment_config(experiment, ["experiment.layer_attention_sample=0"])
    run = config.runs()[0]
    model = EmbeddingModel.from_config(model_config(**run.model))
    assert layer_attention(model, config, run) is None
