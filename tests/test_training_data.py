"""Acceptance 4 and the data/config contract: precise errors for malformed JSONL, skip-and-count,
seeded order, weighted mixing with per-file instructions, no duplicate positives in a batch,
config validation, the CLI and hard-negative mining."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import save_tiny_backbone, training_config, write_pairs

from poolattn.backends.base import PoolattnBackend
from poolattn.cli import main
from poolattn.config import ConfigError
from poolattn.training import (
    BatchSampler,
    DataConfig,
    DataError,
    load_sources,
    load_train_config,
    read_examples,
    train,
)
from poolattn.training.config import read_train_run
from poolattn.training.mining import MiningSettings, mine_file, mine_hard_negatives

BAD_LINES = [
    ('{"query": "q", "positive": "p"', "line 3", "invalid JSON"),
    ('{"query": "q"}', "line 3", "'positive' is missing"),
    ('{"query": "  ", "positive": "p"}', "line 3", "'query' is empty"),
    ('{"query": "q", "positive": "p", "negative": ["n", 3]}', "line 3", "'negative[1]'"),
    ('{"query": "q", "positive": "p", "negative": 5}', "line 3", "'negative'"),
    ("[1, 2]", "line 3", "JSON object"),
]


def _file_with_bad_line(path: Path, bad: str) -> Path:
    good = [json.dumps({"query": f"q{i}", "positive": f"p{i}", "negative": f"n{i}"}) for i in range(4)]
    path.write_text("\n".join(good[:2] + [bad] + good[2:]) + "\n")
    return path


@pytest.mark.parametrize(("bad", "line", "field"), BAD_LINES)
def test_malformed_line_names_file_line_and_field(tmp_path: Path, bad: str, line: str, field: str) -> None:
    path = _file_with_bad_line(tmp_path / "bad.jsonl", bad)
    with pytest.raises(DataError) as info:
        read_examples(path)
    message = str(info.value)
    assert f"{path}:3" in message and field in message, message
    examples, skipped = read_examples(path, skip_invalid=True)
    assert (len(examples), skipped) == (4, 1)


def test_skip_option_runs_and_reports_count(tmp_path: Path, tokenizer) -> None:
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    good = write_pairs(tmp_path / "good.jsonl", 30)
    with good.open("a") as fh:
        fh.write('{"query": "x", "positive": ""}\nnot json\n')
    cfg = training_config(base, [good], tmp_path / "run", training={"steps": 1, "gradcache": False})
    with pytest.raises(DataError, match=r"good.jsonl:31: field 'positive' is empty"):
        train(cfg)
    cfg.data.skip_invalid = True
    final = train(cfg)
    run = read_train_run(tmp_path / "run")
    assert final.is_dir() and run["skipped_records"] == 2 and run["data"][0]["skipped"] == 2


def test_sampler_is_seeded_mixes_sources_and_never_repeats_a_positive(tmp_path: Path) -> None:
    a = write_pairs(tmp_path / "a.jsonl", 50)
    b = tmp_path / "b.jsonl"  # many queries share few positives: duplicates must be spread out
    b.write_text(
        "".join(json.dumps({"query": f"q{i}", "positive": f"shared {i % 5}"}) + "\n" for i in range(60))
    )
    cfg = DataConfig(train=[str(a), str(b)], instructions={"a": "Find A"}, weights={"a": 1.0, "b": 1.0})
    sources = load_sources(cfg)
    assert {s.name: s.examples[0].instruction for s in sources} == {
        "a": "Find A",
        "b": cfg.default_instruction,
    }

    def batches(seed: int, n: int = 30) -> list[list]:
        sampler = BatchSampler(load_sources(cfg), batch_size=8, seed=seed)
        return [sampler.next_batch() for _ in range(n)]

    first, again, other = batches(0), batches(0), batches(1)
    assert first == again and first != other
    for batch in first:
        positives = [e.positive.lower() for e in batch]
        assert len(set(positives)) == len(positives)
    share_a = sum(e.source == "a" for batch in first for e in batch) / (30 * 8)
    assert 0.35 < share_a < 0.65  # equal weights

    sampler = BatchSampler(load_sources(cfg), batch_size=8, seed=0)
    for _ in range(7):
        sampler.next_batch()
    state = json.loads(json.dumps(sampler.state_dict()))
    resumed = BatchSampler(load_sources(cfg), batch_size=8, seed=0)
    resumed.load_state_dict(state)
    assert [resumed.next_batch() for _ in range(5)] == [sampler.next_batch() for _ in range(5)]


def test_config_unknown_key_and_section_are_named(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        '[model]\npooling = "mean"\n[data]\ntrain = ["x.jsonl"]\n[training]\nlerning_rate = 1e-4\n'
    )
    with pytest.raises(
        ConfigError, match=r"training\.lerning_rate: unknown key; did you mean 'learning_rate'"
    ):
        load_train_config(path)
    path.write_text(path.read_text().replace("lerning_rate", "learning_rate"))
    with pytest.raises(ConfigError, match=r"did you mean \[lora\]"):
        load_train_config(path, ["lorra.r=4"])
    with pytest.raises(ConfigError, match=r"model\.pooling"):
        load_train_config(path, ["model.pooling=maen"])
    cfg = load_train_config(path, ["training.steps=7"])
    assert cfg.training.steps == 7 and cfg.model.pooling == "mean"


def test_example_config_is_valid() -> None:
    cfg = load_train_config(Path(__file__).parents[1] / "configs" / "train-example.toml")
    assert cfg.model.pooling == "multilayer" and cfg.training.batch_size == 256


def test_cli_train_and_mine(tmp_path: Path, tokenizer, capsys) -> None:
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    pairs = write_pairs(tmp_path / "pairs.jsonl", 24, negatives=False)
    toml = tmp_path / "t.toml"
    toml.write_text(
        f'[model]\nbase = "{base}"\npooling = "eos"\nmax_length = 24\n[data]\ntrain = ["{pairs}"]\n'
        f'[training]\nsteps = 2\nbatch_size = 4\nmini_batch_size = 4\noutput_dir = "{tmp_path / "run"}"\n'
        'progress = false\n[lora]\nr = 2\ntarget_modules = ["q_proj"]\n'
    )
    assert main(["train", str(toml), "--set", "training.warmup_steps=0"]) == 0
    assert "model saved to" in capsys.readouterr().out
    assert main(["train", str(toml)]) == 2  # output exists, no --resume
    assert main(["train", str(toml), "--set", "training.stepz=3"]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err

    out = tmp_path / "triples.jsonl"
    model_dir = tmp_path / "run" / "final"
    assert main(["mine", str(pairs), "-o", str(out), "--model", str(model_dir), "--range", "0:10"]) == 0
    triples, _ = read_examples(out)
    assert triples and all(len(t.negatives) == 1 and t.negatives[0] != t.positive for t in triples)


class _Fixed:
    """A deterministic encoder: texts map to given vectors (normalised)."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        import numpy as np

        self.np = np
        self.table = {k: np.array(v, dtype=np.float32) / np.linalg.norm(v) for k, v in table.items()}

    def encode(self, texts, *, query, instruction, batch_size):
        return self.np.stack([self.table[t] for t in texts])


def test_mining_rank_window_margin_and_duplicates() -> None:
    from poolattn.training import Example

    enc = _Fixed(
        {
            "q": [1, 0, 0],
            "pos": [0.9, 0.1, 0],
            "dup of pos": [0.9, 0.1, 0.001],  # near-duplicate of the positive: skipped
            "close": [0.7, 0.5, 0],
            "far": [0, 1, 0],
            "q2": [0, 0, 1],
            "pos2": [0, 0.2, 1],
        }
    )
    examples = [Example("q", "pos"), Example("q2", "pos2")]
    corpus = ["dup of pos", "close", "far"]
    mined = mine_hard_negatives(examples, enc, MiningSettings(num_negatives=1), corpus)
    assert mined[0].negatives == ("close",)
    mined = mine_hard_negatives(
        examples, enc, MiningSettings(num_negatives=2, rank_start=0, rank_end=5), corpus
    )
    assert mined[0].negatives == ("close", "far")
    strict = mine_hard_negatives(examples, enc, MiningSettings(margin=0.5), corpus)
    assert strict[0].negatives == ("far",)


@pytest.mark.needs_model("all-MiniLM-L6-v2")
@pytest.mark.needs_data
@pytest.mark.slow
def test_mining_with_packaged_minilm(tmp_path: Path, data_dir: Path) -> None:
    pairs = tmp_path / "quora.jsonl"
    lines = (data_dir / "train" / "quora_duplicate_pairs.jsonl").read_text().splitlines()[:120]
    pairs.write_text("\n".join(lines) + "\n")
    path, n_in, n_out = mine_file(
        pairs, tmp_path / "out.jsonl", "all-MiniLM-L6-v2", MiningSettings(rank_start=1)
    )
    triples, _ = read_examples(path)
    assert n_in == 120 and n_out == len(triples) > 90
    assert all(t.negatives[0] not in (t.positive, t.query) for t in triples)


def test_poolattn_encoder_adapter(tiny_model) -> None:
    enc = PoolattnBackend(tiny_model("mean", "causal"))
    q = enc.encode(["a", "b"], query=True, instruction="Find", batch_size=32)
    d = enc.encode(["a", "b"], query=False, instruction=None, batch_size=32)
    assert q.shape == d.shape == (2, 32)


def test_top_level_entry_points_are_the_training_ones() -> None:
    import poolattn
    import poolattn.training

    assert poolattn.train is poolattn.training.train
    assert poolattn.load_train_config is poolattn.training.load_train_config
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        poolattn.trian  # noqa: B018
