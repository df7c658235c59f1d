"""The rehearsal of the paper config (bench/rehearsal): the cache it builds resolves as a download
does, it changes only counts, each form keeps its own model shape, the benchmark runs a subset of
its tasks, and (slow, in ``make test``) the smaller form of the whole paper config runs offline
under ``accelerate launch`` with two processes against a tiny Qwen2 under the real hub id."""

from __future__ import annotations

import json
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


def test_each_form_keeps_its_model_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The full form rehearses the real shape, the smaller one a tiny Qwen2; a cache home whose
    manifest names another shape is rebuilt, never reused."""
    assert rehearsal.FULL["shape"] == build_cache.QWEN2_05B
    tiny = rehearsal.SMALL["shape"]
    assert tiny["hidden_size"] < build_cache.QWEN2_05B["hidden_size"]
    assert tiny["num_attention_heads"] > tiny["num_key_value_heads"] > 1  # grouped-query attention
    assert tiny["tie_word_embeddings"] and tiny["num_hidden_layers"] >= 2  # layer attention has layers
    built: list[dict] = []

    def build(home: Path, data: Path, tasks: list[str], items: int, train_items: int, shape: dict) -> None:
        built.append(shape)
        manifest = {
            "build_version": build_cache.BUILD_VERSION,
            "model": {"id": build_cache.MODEL_ID, **shape},
            "tasks": {t: {} for t in tasks},
            "items": items,
            "train_items": train_items,
        }
        home.mkdir(exist_ok=True)
        (home / "rehearsal.json").write_text(json.dumps(manifest))

    monkeypatch.setattr(build_cache, "build", build)
    home = tmp_path / "hf"
    rehearsal.ensure_cache(home, tmp_path, rehearsal.FULL)
    rehearsal.ensure_cache(home, tmp_path, rehearsal.FULL)  # the same shape and counts: reused
    assert built == [build_cache.QWEN2_05B]
    rehearsal.ensure_cache(home, tmp_path, rehearsal.SMALL)  # a real-shaped cache: rebuilt tiny
    assert built == [build_cache.QWEN2_05B, tiny]


@pytest.mark.slow
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
        timeout=1200,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])
    assert "PASSED" in done.stdout
