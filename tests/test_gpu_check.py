"""bench/gpu_check.py's smoke mode: every check of the GPU run, at tiny sizes on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.needs_model  # the tokenizer of the default model
def test_gpu_check_cpu_smoke_mode() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu"],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    checks = [line for line in lines if "check" in line]
    attention = [c for c in checks if c["check"] == "attention"]
    assert len(attention) == 6  # two modes x batch 1, right- and left-padded batches (sdpa)
    bidirectional = [c for c in attention if c["mode"] == "bidirectional"]
    assert all(min(c["first_token_deltas"]) > 1e-3 for c in bidirectional)
    assert {c["check"] for c in checks} == {"attention", "gradcache_step", "encode"}
    assert all(c["ok"] for c in checks) and lines[-1]["failed"] == 0


def test_gpu_check_refuses_cuda_without_a_gpu() -> None:
    if __import__("torch").cuda.is_available():
        pytest.skip("a CUDA device is present: the refusal cannot happen here")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and "no CUDA device" in done.stderr
