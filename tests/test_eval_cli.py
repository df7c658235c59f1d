"""``poolattn eval`` on a sentence-transformers reference model, and MODEL resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poolattn.cli import main
from poolattn.config import ConfigError
from poolattn.design import parse_design_spec


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")


@pytest.mark.needs_model("all-MiniLM-L6-v2")
@pytest.mark.needs_data
def test_cli_eval_packaged_minilm(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "minilm"
    code = main(
        [
            "eval",
            "all-MiniLM-L6-v2",
            "--output",
            str(out),
            "--local-data",
            str(data_dir / "eval"),
            "--tasks",
            "STSBenchmark",
            "--max-items",
            "40",
            "--no-embedding-cache",
        ]
    )
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["kind"] == "sentence-transformers" and not run["model"]["uses_instructions"]
    score = run["tasks"]["STSBenchmark"]["main_score"]
    assert 0.6 < score <= 1.0  # a trained encoder, unlike a random one
    assert "40/1379 pairs" in capsys.readouterr().out


def test_design_spec_parsing() -> None:
    assert parse_design_spec("smollm2-135m:eos+causal") == ("smollm2-135m", "eos", "causal")
    assert parse_design_spec("/models/x") is None
    with pytest.raises(ConfigError, match="POOLING\\+ATTENTION"):
        parse_design_spec("smollm2-135m:eos+sideways")


def test_cli_eval_unknown_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "no-such-model", "--output", str(tmp_path / "x"), "--tasks", "STSBenchmark"]) == 2
    assert "design spec like 'smollm2-135m:eos+causal'" in capsys.readouterr().err


@pytest.mark.needs_data
def test_benchmark_plan_uses_local_data_where_it_exists(data_dir: Path) -> None:
    from poolattn.evaluation.runner import plan_tasks

    plan = plan_tasks(None, "MTEB(eng, v1)", data_dir / "eval", max_items=5)
    local = {task.metadata.name for task, item in plan if item is not None}
    assert len(plan) == 56 and {"STSBenchmark", "SciFact", "Banking77Classification"} <= local
    assert "TRECClassification" not in local  # not part of the benchmark
    assert all(task.data_loaded for task, item in plan if item is not None)
