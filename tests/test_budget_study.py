"""bench/budget_study.py at --smoke size on a tiny random backbone and the real local data: every
variant is trained once per seed (resumed at each budget, never retrained), evaluated at each
budget, compared with the family test, tabled and plotted; the rate stays constant after warm-up."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from helpers import save_tiny_backbone, write_pairs

from poolattn.training.config import read_train_run

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "budget_study.py"


def _script():
    spec = importlib.util.spec_from_file_location("budget_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["budget_study"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _experiment(root: Path, base: Path, train: Path) -> Path:
    path = root / "tiny.toml"
    path.write_text(
        f"""
[experiment]
output_dir = "{root / "unused"}"
designs = ["eos+causal"]
[model]
base = "{base}"
max_length = 24
[data]
train = ["{train}"]
[training]
batch_size = 8
mini_batch_size = 8
learning_rate = 1e-3
warmup_steps = 1
[lora]
r = 4
alpha = 8
target_modules = ["q_proj", "v_proj"]
[evaluation]
batch_size = 16
"""
    )
    return path


@pytest.mark.slow  # ~1 min: 14 tiny trainings segments and 22 evaluations
@pytest.mark.needs_data
def test_smoke_study_end_to_end(tmp_path: Path, tokenizer, data_dir: Path) -> None:
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    config = _experiment(tmp_path, base, write_pairs(tmp_path / "pairs.jsonl", 24))
    out = tmp_path / "study"
    tasks = "STSBenchmark,BIOSSES,SciFact,MED"
    argv = ["--smoke", "--config", str(config), "--out", str(out), "--local-data", str(data_dir)]
    argv += ["--tasks", tasks, "--head-lr", "1e-2"]
    assert _script().main(argv) == 0

    result = json.loads((out / "budget_study.json").read_text())
    curves = result["curves"]
    assert set(curves) == {
        "eos+causal",
        "multilayer+causal",
        "multilayer+causal+warmup1",
        "multilayer+causal@head-lr0.01",
        "multilayer+causal+warmup1@head-lr0.01",
    }
    for label in ("eos+causal", "multilayer+causal+warmup1"):
        for family in ("STS", "Retrieval"):
            assert set(curves[label][family]) == {"1", "2"}
            assert all(len(v) == 2 for v in curves[label][family].values())  # two seeds each
    assert set(curves["multilayer+causal@head-lr0.01"]["STS"]) == {"1"}  # sweep: small budgets, one seed
    steps_tested = {(r["steps"], r["family"]) for r in result["verdicts"]}
    assert steps_tested == {(s, f) for s in (1, 2) for f in ("STS", "Retrieval")}
    assert all(r["verdict"] for r in result["verdicts"])

    # trained once: one continuous trajectory, resumed at the budget, warm-up first, constant rate
    train = out / "multilayer+causal+warmup1-seed0" / "train"
    metrics = [json.loads(line) for line in (train / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m["phase"]) for m in metrics] == [(1, "head_warmup"), (2, "joint"), (3, "joint")]
    assert read_train_run(train)["resumed_from_step"] == 2
    assert [m["lr"] for m in metrics if m["phase"] == "joint"] == pytest.approx([1e-3, 1e-3], rel=1e-5)
    assert (out / "budget_study.png").stat().st_size > 0
    table = (out / "budget_study.md").read_text()
    assert "| multilayer+causal+warmup1 |" in table and "Family tests per budget" in table


def test_bad_arguments_exit_2(tmp_path: Path, capsys) -> None:
    script = _script()
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--head-lr", "-1", "--estimate"])
    assert exit_info.value.code == 2
    assert script.main(["--config", str(tmp_path / "missing.toml"), "--estimate"]) == 2
    assert "budget_study:" in capsys.readouterr().err
