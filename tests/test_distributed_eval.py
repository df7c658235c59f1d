"""Distributed evaluation: encoding sharded over ranks gives the single-process vectors and scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import save_tiny_backbone

from poolattn.backends.base import PoolattnBackend
from poolattn.evaluation import evaluate
from poolattn.evaluation.distributed import EncodeServer, ProcessGroup, ShardedBackend
from poolattn.experiment.state import read_state
from poolattn.model import length_chunks
from poolattn.training.config import read_train_run

TEXTS = [f"sentence number {i} " + "word " * (i % 11) for i in range(53)] + ["short", "short", "x"]
# one local dataset per task family (each family's evaluator encodes in its own way)
FAMILY_TASKS = {"STS": "STSBenchmark", "Retrieval": "SciFact", "Classification": "Emotion",
                "Clustering": "TwentyNewsgroups", "PairClassification": "MSRP", "Reranking": "TRECQA"}  # fmt: skip


class TwoRanks(ProcessGroup):
    """Rank 0 of a simulated two-process group: rank 1's server answers inline."""

    def __init__(self, peer: EncodeServer) -> None:
        super().__init__(rank=0, world=2)
        self.peer = peer
        self.pending: dict[str, Any] | None = None
        self.requests: list[dict[str, Any]] = []

    def scatter(self, values: list[Any] | None) -> Any:
        self.pending = values[1]
        self.requests.append(values[1])
        return values[0]

    def gather(self, value: Any) -> list[Any]:
        request = self.pending
        reply = {"encoded": self.peer.encoded} if request["op"] == "stop" else self.peer.handle(request)
        return [value, reply]


def test_units_are_the_chunks_encode_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("poolattn.model.ENCODE_CHUNK", 8)
    units = length_chunks(TEXTS, 4)  # a distributed unit is one of these
    assert [len(u) for u in units] == [8] * 7
    assert sorted(i for u in units for i in u) == list(range(len(TEXTS)))
    lengths = [len(TEXTS[i]) for u in units for i in u]
    assert lengths == sorted(lengths, reverse=True)  # longest first, as encode() orders them


@pytest.mark.parametrize("query", [True, False])
def test_sharded_encoding_is_bit_identical_and_balanced(tiny_model, monkeypatch, query: bool) -> None:
    monkeypatch.setattr("poolattn.model.ENCODE_CHUNK", 8)  # several units per request
    backend = PoolattnBackend(tiny_model(pooling="mean", attention="bidirectional"))
    single = backend.encode(TEXTS, query=query, instruction="Find it" if query else None, batch_size=4)
    group = TwoRanks(EncodeServer(backend))
    sharded = ShardedBackend(backend, group, backend.fingerprint())
    out = sharded.encode(TEXTS, query=query, instruction="Find it" if query else None, batch_size=4)
    assert out.dtype == np.float32 and np.array_equal(out, single)  # bit for bit
    counts = sharded.stop()
    assert sum(counts) == len(TEXTS) and min(counts) >= 24  # 4 units of 8 vs 3 units (+ the tail)
    assert group.requests[-1] == {"op": "stop"}


def test_an_error_on_another_rank_is_raised_on_rank_0(tiny_model) -> None:
    backend = PoolattnBackend(tiny_model())

    class Broken:
        def encode(self, *args: Any, **kwargs: Any) -> np.ndarray:
            raise MemoryError("CUDA out of memory")

    sharded = ShardedBackend(backend, TwoRanks(EncodeServer(Broken())), "fp")
    sharded.assigned = [100, 0]  # the next unit goes to rank 1
    with pytest.raises(RuntimeError, match="rank 1 failed: MemoryError: CUDA out of memory"):
        sharded.encode(["a text"], query=False, instruction=None, batch_size=4)


# ~25 s on a 2-core AVX2 CPU
@pytest.mark.slow
@pytest.mark.needs_data
def test_two_process_evaluation_equals_single_process(
    tmp_path: Path, tokenizer, tiny_model, data_dir
) -> None:
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    from poolattn.model import EmbeddingModel

    model_dir = EmbeddingModel.from_pretrained(str(base), pooling="mean", attention="bidirectional").save(
        tmp_path / "model"
    )
    tasks = list(FAMILY_TASKS.values())
    args = ["--max-items", "8", "--batch-size", "4", "--local-data", str(data_dir), "--no-embedding-cache"]
    args += ["--tasks", ",".join(tasks)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", "29519", "-m", "poolattn.cli", "eval", str(model_dir),
           "--output", str(tmp_path / "two"), *args]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("results:") == 1  # rank 0 reports, rank 1 stays quiet

    one = evaluate(
        str(model_dir),
        tmp_path / "one",
        tasks,
        local_data=data_dir,
        max_items=8,
        batch_size=4,
        cache_dir_path=None,
    )
    two = json.loads((tmp_path / "two" / "run.json").read_text())
    assert {task["family"] for task in one["tasks"].values()} == set(FAMILY_TASKS)
    assert set(two["tasks"]) == set(one["tasks"])
    for name, task in one["tasks"].items():
        assert two["tasks"][name]["main_score"] == task["main_score"], name  # identical, not close
    assert two["model"]["fingerprint"] == one["model"]["fingerprint"]
    assert two["model"]["source"] == str(model_dir)
    per_rank = two["distributed"]["encoded_per_rank"]
    total = one["embedding_cache_stats"]["encoded"]
    assert two["distributed"]["processes"] == 2 and sum(per_rank) == total
    assert min(per_rank) >= 0.4 * total, per_rank  # each rank encoded about half


@pytest.mark.slow
@pytest.mark.needs_data
def test_experiment_under_accelerate_launch_claims_once_and_shards_evaluation(
    tmp_path: Path, tokenizer, data_dir
) -> None:
    """configs/tiny.toml's grid (tiny random Llama) as one 2-process worker: rank 0 claims each
    run once, both ranks train it, and its evaluation is encoded by both ranks."""
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    out = tmp_path / "out"
    sets = {
        "experiment.output_dir": json.dumps(str(out)),
        "model.base": json.dumps(str(base)),
        "training.steps": "4",
        "evaluation.local_data": json.dumps(str(data_dir)),
        "evaluation.tasks": '["STSBenchmark", "SICK-R"]',
    }
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.toml"
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", "29523", "-m", "poolattn.cli", "experiment", str(config)]  # fmt: skip
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("comparing and writing the report") == 1  # rank 0 only
    for name in ("eos+causal-seed0", "multilayer+bidirectional-seed0", "untrained-eos+causal-seed0"):
        assert len(read_state(out / name)["workers"]) == 1
        run = json.loads((out / name / "eval" / "run.json").read_text())
        assert run["distributed"]["processes"] == 2 and min(run["distributed"]["encoded_per_rank"]) > 0
        if not name.startswith("untrained"):
            assert read_train_run(out / name / "train")["processes"] == 2
    assert (out / "report.md").exists()
