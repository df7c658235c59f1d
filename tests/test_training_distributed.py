"""Acceptance 3: a 2-process CPU run (accelerate launch, gloo) gives the same losses and the
same updated weights as a 1-process run with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import save_tiny_backbone, write_pairs
from safetensors.torch import load_file

from poolattn.training import load_train_config, train
from poolattn.training.config import read_train_run

CONFIG = """
[model]
base = "{base}"
pooling = "multilayer"
attention = "bidirectional"
max_length = 24
# Equality of one and two processes is an fp32 property: bf16 rounding differs with the
# reduction order of a gradient all-reduce.
dtype = "float32"
[data]
train = ["{triples}", "{pairs}"]
[training]
steps = 3
batch_size = 8
mini_batch_size = 3
learning_rate = 1e-3
warmup_steps = 1
output_dir = "{out}"
save_every = 10
progress = false
[lora]
r = 4
alpha = 8
dropout = 0.0
target_modules = ["q_proj", "v_proj", "down_proj"]
"""


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    out = dict(load_file(str(model_dir / "pooler.safetensors")))
    out.update(load_file(str(model_dir / "adapter" / "adapter_model.safetensors")))
    return out


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path: Path, tokenizer) -> None:
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    triples = write_pairs(tmp_path / "triples.jsonl", 40)
    pairs = write_pairs(
        tmp_path / "pairs.jsonl", 40, negatives=False, offset=100
    )  # uneven negatives per process
    paths = {}
    for name in ("one", "two"):
        paths[name] = tmp_path / f"{name}.toml"
        paths[name].write_text(CONFIG.format(base=base, triples=triples, pairs=pairs, out=tmp_path / name))

    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", "29517", "-m", "poolattn.cli", "train", str(paths["two"])]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    run = read_train_run(tmp_path / "two")
    assert run["processes"] == 2

    one = train(load_train_config(paths["one"]))
    assert _losses(tmp_path / "one") == pytest.approx(_losses(tmp_path / "two"), abs=1e-4)
    wa, wb = _weights(one), _weights(tmp_path / "two" / "final")
    assert set(wa) == set(wb)
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-4, rtol=0, msg=name)
