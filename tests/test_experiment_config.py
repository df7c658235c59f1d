"""Experiment configs parse, validate and print their plan without running anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolattn.cli import main
from poolattn.config import ConfigError
from poolattn.experiment import PAPER_DESIGNS, load_experiment_config, parse_design

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["paper-qwen2-0.5b", "paper-mistral-7b"])
def test_paper_configs_dry_run_prints_the_plan(name, capsys):
    assert main(["experiment", str(CONFIGS / f"{name}.toml"), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    for design in PAPER_DESIGNS:
        assert f"{design}-seed0" in plan
    assert "1000 steps, batch 2048" in plan and "lr 1e-05" in plan and "warm-up 100" in plan
    assert "r 16, alpha 32, dropout 0.1" in plan and "MTEB(eng, v1)" in plan


@pytest.mark.parametrize("name", ["tiny", "quick"])
def test_shipped_local_configs_validate(name):
    config = load_experiment_config(CONFIGS / f"{name}.toml")
    assert config.runs()


def test_grid_is_designs_times_seeds_plus_untrained(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text(
        '[experiment]\ndesigns = ["eos+causal", "mean+bidirectional"]\nseeds = [1, 2]\nuntrained = ["eos+causal"]\n'
        '[data]\ntrain = ["x.jsonl"]\n'
    )
    names = [r.name for r in load_experiment_config(path).runs()]
    assert names == [
        "eos+causal-seed1",
        "eos+causal-seed2",
        "mean+bidirectional-seed1",
        "mean+bidirectional-seed2",
        "untrained-eos+causal-seed1",
    ]


def test_bad_design_and_unknown_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match="choose one of"):
        parse_design("max+causal")
    with pytest.raises(ConfigError, match="must look like"):
        parse_design("eos")
    path = tmp_path / "e.toml"
    path.write_text('[experiment]\ndesign = ["eos+causal"]\n[data]\ntrain = ["x.jsonl"]\n')
    with pytest.raises(ConfigError, match="experiment.design: unknown key; did you mean 'designs'"):
        load_experiment_config(path)
    path.write_text("[experiment]\n[trainng]\nsteps = 1\n")
    with pytest.raises(ConfigError, match=r"did you mean \[training\]"):
        load_experiment_config(path)


def test_demo_runs_every_design_with_two_seeds_and_the_baseline():
    """The demo (issue 25): a design verdict needs replicate seeds of every design."""
    names = [run.name for run in load_experiment_config(CONFIGS / "quick.toml").runs()]
    expected = [f"{design}-seed{seed}" for design in PAPER_DESIGNS for seed in (0, 1)]
    assert sorted(names) == sorted([*expected, "untrained-eos+causal-seed0"])


def test_design_seeds_replicate_only_the_named_designs():
    sets = [
        "experiment.designs=['eos+causal', 'latent+causal']",
        "experiment.design_seeds={'eos+causal' = [0, 1]}",
    ]
    names = [run.name for run in load_experiment_config(CONFIGS / "tiny.toml", sets).runs()]
    assert names.count("eos+causal-seed1") == 1 and "eos+causal-seed0" in names
    assert "latent+causal-seed1" not in names and "untrained-eos+causal-seed1" not in names
    assert len(names) == 2 + 1 + 1  # two designs, one replicate, the baseline


def test_design_seeds_must_name_a_design():
    with pytest.raises(ConfigError, match="design_seeds"):
        load_experiment_config(CONFIGS / "tiny.toml", ["experiment.design_seeds={'mean+causal' = [0, 1]}"])
