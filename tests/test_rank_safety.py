"""Rank safety under ``accelerate launch`` (two CPU processes, gloo): a failure on rank 0 or on
rank 1, or rank 0 losing its run lock, stops every rank; the run is never recorded "done";
``poolattn experiment`` exits non-zero. One tiny run (random Llama, one STS task) each."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import save_tiny_backbone

from poolattn.experiment.state import read_state

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]
TESTS = Path(__file__).resolve().parent
CONFIG = TESTS.parent / "configs" / "tiny.toml"
RUN = "eos+causal-seed0"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(tmp_path: Path, tokenizer, data_dir: Path, script: list[str], steps: int = 2) -> subprocess.Popen:
    """``accelerate launch`` of two CPU processes running ``script`` on a one-run grid."""
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    sets = {
        "experiment.output_dir": json.dumps(str(tmp_path / "out")),
        "experiment.designs": '["eos+causal"]',
        "experiment.untrained": "[]",
        "model.base": json.dumps(str(base)),
        "training.steps": str(steps),
        "training.save_every": "100000",
        "evaluation.local_data": json.dumps(str(data_dir)),
        "evaluation.tasks": '["STSBenchmark"]',
    }
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_port()), *script, "experiment", str(CONFIG)]  # fmt: skip
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    log = (tmp_path / "launch.log").open("w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize(("where", "rank"), [("train", "1"), ("eval", "0")])
def test_a_failure_on_one_rank_fails_the_run_on_every_rank(
    tmp_path: Path, tokenizer, data_dir, where: str, rank: str
) -> None:
    """Rank 1 failing as training starts (rank 0 waits in a collective), or rank 0 failing in its
    evaluators (rank 1 serves encoding): state "failed" with the error, non-zero exit."""
    proc = launch(tmp_path, tokenizer, data_dir, [str(TESTS / "rank_fault.py"), where, rank])
    code = proc.wait(timeout=600)
    log = (tmp_path / "launch.log").read_text()
    assert code != 0, log[-3000:]
    state = read_state(tmp_path / "out" / RUN)
    assert state["status"] == "failed", log[-3000:]
    assert f"injected failure on rank {rank}" in state["error"]
    assert log.count(f"{RUN}: FAILED") == 1  # recorded and said once, by rank 0
    assert not (tmp_path / "out" / "report.md").exists()


def test_rank_0_losing_its_lock_stops_every_rank_promptly(tmp_path: Path, tokenizer, data_dir) -> None:
    proc = launch(tmp_path, tokenizer, data_dir, ["-m", "poolattn.cli"], steps=100_000)
    run_dir = tmp_path / "out" / RUN
    metrics = run_dir / "train" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().strip():
            break
        time.sleep(0.1)
    assert proc.poll() is None, (tmp_path / "launch.log").read_text()[-3000:]
    (run_dir / "run.lock").unlink()  # e.g. the run's folder cleaned out: another worker may start it
    start = time.monotonic()
    code = proc.wait(timeout=120)
    log = (tmp_path / "launch.log").read_text()
    assert code != 0 and time.monotonic() - start < 30, log[-3000:]
    assert "lost its lock" in log
    state = read_state(run_dir)
    assert state["status"] == "running" and "finished_at" not in state  # nothing recorded
    assert len(metrics.read_text().splitlines()) < 100_000
