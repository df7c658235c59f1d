"""The experiment end to end: tiny.toml on the real model, and kill-then-resume on a tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import save_tiny_backbone

from poolattn.cli import main
from poolattn.training.checkpoint import list_checkpoints
from poolattn.training.config import read_train_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
pytestmark = [pytest.mark.slow, pytest.mark.needs_data]


def read_state(out: Path, run: str) -> dict:
    return json.loads((out / run / "state.json").read_text())


# ~60 s on a 2-core AVX2 CPU (~100 s with a cold embedding cache): three runs of tiny.toml
@pytest.mark.needs_model
def test_tiny_config_end_to_end(tmp_path, data_dir, capsys):
    out = tmp_path / "tiny"
    assert (
        main(
            [
                "experiment",
                str(CONFIGS / "tiny.toml"),
                "--set",
                f"experiment.output_dir={json.dumps(str(out))}",
            ]
        )
        == 0
    )
    runs = ["eos+causal-seed0", "multilayer+bidirectional-seed0", "untrained-eos+causal-seed0"]
    for run in runs:
        assert read_state(out, run)["status"] == "done"
    report = (out / "report.md").read_text()
    for section in ("## Setup", "## Summary", "## Comparison", "## Training curves", "## Which layers"):
        assert section in report
    for run in runs:
        assert run in report
    assert "max_items=4" in report
    for png in ("training_curves.png", "layer_attention.png"):
        assert (out / png).stat().st_size > 1000
    assert list((out / "comparison").glob("*.png"))
    assert (out / "comparison" / "scores.csv").exists() and (out / "comparison" / "stats.json").exists()


@pytest.fixture
def tiny_experiment(tmp_path, tokenizer, data_dir) -> Path:
    """A tiny random Llama on disk, a small training file, and an experiment config using them."""
    model_dir = save_tiny_backbone(tmp_path / "tiny-llama", tokenizer)
    lines = (data_dir / "train" / "snli_triples.jsonl").read_text().splitlines()[:200]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    config = tmp_path / "exp.toml"
    config.write_text(
        f"""
[experiment]
output_dir = "{tmp_path / "out"}"
designs = ["eos+causal", "mean+bidirectional"]
untrained = ["eos+causal"]
[model]
base = "{model_dir}"
max_length = 24
[data]
train = ["pairs.jsonl"]
[training]
steps = 40
batch_size = 4
mini_batch_size = 8
warmup_steps = 0
save_every = 1
keep_checkpoints = 2
progress = false
[lora]
r = 2
alpha = 4
target_modules = ["q_proj", "v_proj"]
[evaluation]
local_data = "{data_dir}"
tasks = ["STSBenchmark", "SICK-R"]
max_items = 16
min_datasets = 2
"""
    )
    return config


def test_killed_experiment_resumes_without_retraining(tiny_experiment, capsys):
    out = tiny_experiment.parent / "out"
    second = out / "mean+bidirectional-seed0" / "train"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "poolattn.cli", "experiment", str(tiny_experiment)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if list_checkpoints(second):  # a finished checkpoint, not its temp folder
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # an abrupt stop, mid-training of the second design
    proc.wait()

    first = read_state(out, "eos+causal-seed0")
    assert first["status"] == "done"
    first_model = Path(first["model_dir"])
    stamp = first_model.stat().st_mtime_ns
    assert read_state(out, "mean+bidirectional-seed0")["status"] == "running"

    assert main(["experiment", str(tiny_experiment)]) == 0
    printed = capsys.readouterr().out
    assert "eos+causal-seed0: done already, skipped" in printed
    assert first_model.stat().st_mtime_ns == stamp  # not retrained
    run = read_train_run(out / "mean+bidirectional-seed0" / "train")
    assert run["resumed_from_step"] > 0  # the interrupted design resumed from its checkpoint
    steps = [
        json.loads(line)["step"]
        for line in (out / "mean+bidirectional-seed0" / "train" / "metrics.jsonl").open()
    ]
    assert steps == list(range(1, 41))
    for name in ("eos+causal-seed0", "mean+bidirectional-seed0", "untrained-eos+causal-seed0"):
        assert read_state(out, name)["status"] == "done"
        assert name in (out / "report.md").read_text()


def test_a_failed_design_does_not_stop_the_others(tiny_experiment):
    tiny_experiment.write_text(tiny_experiment.read_text().replace("steps = 40", "steps = 2"))
    out = tiny_experiment.parent / "out"
    # One design's trained model has vanished: its evaluation must fail, the rest must go on.
    broken = out / "mean+bidirectional-seed0"
    broken.mkdir(parents=True)
    (broken / "state.json").write_text(json.dumps({"status": "running", "model_dir": str(broken / "gone")}))
    assert main(["experiment", str(tiny_experiment)]) == 1  # a worker with a failed run says so (issue 28)
    assert read_state(out, "eos+causal-seed0")["status"] == "done"
    assert read_state(out, "untrained-eos+causal-seed0")["status"] == "done"
    state = read_state(out, "mean+bidirectional-seed0")
    assert state["status"] == "failed" and "gone" in state["error"]
    report = (out / "report.md").read_text()
    assert "mean+bidirectional-seed0 failed" in report and "## Summary" in report
