"""The rehearsal of the paper config (bench/rehearsal): the cache it builds resolves as a download
does, it changes only counts, the benchmark runs a subset of its tasks, and (slow) the whole
paper config runs offline under ``accelerate launch`` with two processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench" / "rehearsal"))

import build_cache  # noqa: E402
import run as rehearsal  # noqa: E402

# the settings a rehearsal may change: counts, where results go, and which benchmark tasks run
COUNT_KEYS = {
    "experiment.output_dir",
    "experiment.layer_attention_sample",
    "experiment.designs",  # --small only: two of the five designs
    "training.steps",
    "training.warmup_steps",
    "training.batch_size",
    "training.mini_batch_size",
    "model.max_length",
    "evaluation.batch_size",
    "evaluation.tasks",
}


@pytest.mark.parametrize("small", [False, True])
def test_rehearsal_changes_only_counts(tmp_path: Path, small: bool) -> None:
    sets = rehearsal.overrides(tmp_path, build_cache.TASKS, small)
    assert {s.split("=", 1)[0] for s in sets} <= COUNT_KEYS
    assert ("experiment.designs" in {s.split("=", 1)[0] for s in sets}) == small
    from poolattn.experiment.plan import load_experiment_config

    config = load_experiment_config(rehearsal.CONFIG, sets)
    model = config.shared["model"]
    assert model["base"] == "Qwen/Qwen2-0.5B" and model["dtype"] == "bfloat16"
    assert config.shared["data"]["hub"] == ["yixuantt/ir_data"]
    assert config.evaluation.benchmark == "MTEB(eng, v1)" and config.evaluation.local_data is None


def test_one_task_per_family_of_the_benchmark() -> None:
    import mteb

    bench = {str(t.metadata.name): str(t.metadata.type) for t in mteb.get_benchmark("MTEB(eng, v1)").tasks}
    assert set(build_cache.TASKS) <= set(bench)
    assert {bench[t] for t in build_cache.TASKS} == set(bench.values())  # every family


def test_benchmark_with_tasks_runs_only_those(tmp_path: Path) -> None:
    from poolattn.evaluation.runner import plan_tasks

    plan = plan_tasks(["SciFact", "STSBenchmark"], "MTEB(eng, v1)", None, None)
    assert sorted(str(task.metadata.name) for task, _ in plan) == ["STSBenchmark", "SciFact"]
    assert all(local is None for _, local in plan)
    with pytest.raises(ValueError, match="TRECClassification not in the benchmark"):
        plan_tasks(["SciFact", "TRECClassification"], "MTEB(eng, v1)", None, None)


def test_hub_layout_resolves_like_a_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import try_to_load_from_cache

    source = tmp_path / "config.json"
    source.write_text('{"a": 1}')
    commit = "0" * 40
    build_cache.place_in_hub(tmp_path / "hub", "model", "Org/Name", commit, {"config.json": source})
    found = try_to_load_from_cache("Org/Name", "config.json", cache_dir=tmp_path / "hub")
    assert found is not None and Path(found).read_text() == '{"a": 1}'
    assert Path(found).parent.name == commit and Path(found).is_symlink()


@pytest.mark.slow
@pytest.mark.rehearsal
@pytest.mark.needs_data
@pytest.mark.needs_model
def test_small_rehearsal_passes(tmp_path: Path, data_dir: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/rehearsal/run.py"),
            "--small",
            "--out",
            str(tmp_path),
            "--port",
            "29533",
        ],
        env={**os.environ, "POOLATTN_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])
    assert "PASSED" in done.stdout
