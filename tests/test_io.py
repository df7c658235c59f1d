"""The shared helpers of issue 14, point 5: atomic writes, the one JSONL
reader, the one main-score average, the one text key and the one recipe wording."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poolattn.eval_results import EVAL_RUN_FILE, NoScoresError, task_main_score
from poolattn.io import (
    JsonlError,
    atomic_directory,
    atomic_file,
    read_jsonl,
    write_json_atomic,
    write_text_atomic,
)
from poolattn.stats.compare import ResultsError, load_results
from poolattn.training.data import same_text_key
from poolattn.training.recipe import adapter_text, recipe_text


class Boom(RuntimeError):
    pass


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ----------------------------------------------------------------------------- atomic writes
def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    write_text_atomic(path, "old\n")
    with pytest.raises(Boom), atomic_file(path) as tmp:
        tmp.write_text("half of the new")
        raise Boom
    assert path.read_text() == "old\n"
    assert _leftovers(tmp_path, {"report.md"}) == []


def test_a_failing_writer_of_a_new_file_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "scores.png"
    with pytest.raises(Boom), atomic_file(path) as tmp:
        tmp.write_bytes(b"\x89PNG half")
        raise Boom
    assert not path.exists()
    assert _leftovers(path.parent, set()) == []


def test_json_that_cannot_be_encoded_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    write_json_atomic(path, {"a": 1})

    class Unencodable:
        def __str__(self) -> str:
            raise Boom

    with pytest.raises(Boom):
        write_json_atomic(path, {"a": Unencodable()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert _leftovers(tmp_path, {"stats.json"}) == []


def test_text_is_written_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    write_text_atomic(path, "a,b\r\n1,é\r\n")  # csv's \r\n endings survive
    assert path.read_bytes() == "a,b\r\n1,é\r\n".encode()


def test_a_failing_directory_writer_keeps_the_old_directory(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("old")
    with pytest.raises(Boom), atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("new")
        raise Boom
    assert (target / "config.json").read_text() == "old"
    assert _leftovers(tmp_path, {"model"}) == []


def test_keep_existing_lets_the_first_writer_win(tmp_path: Path) -> None:
    target = tmp_path / "cache"
    with atomic_directory(target, keep_existing=True) as tmp:
        (tmp / "config.json").write_text("first")
    with atomic_directory(target, keep_existing=True) as tmp:
        (tmp / "config.json").write_text("second")
    assert (target / "config.json").read_text() == "first"
    assert _leftovers(tmp_path, {"cache"}) == []


# ----------------------------------------------------------------------------- JSONL
def test_jsonl_records_carry_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"x": 1}\n\n   \n[2]\n"three"\n')
    records = list(read_jsonl(path))
    assert [(r.line, r.value) for r in records] == [(1, {"x": 1}), (4, [2]), (5, "three")]
    assert records[1].where == f"{path}:4"


def test_a_bad_jsonl_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"x": 1}\n{"x": 2}\n{"x": \n{"x": 4}\n')
    with pytest.raises(JsonlError) as info:
        list(read_jsonl(path))
    assert str(info.value).startswith(f"{path}:3: invalid JSON (")
    assert (info.value.path, info.value.line) == (path, 3)
    bad: list[JsonlError] = []
    kept = [r.value["x"] for r in read_jsonl(path, on_bad_line=bad.append)]
    assert kept == [1, 2, 4] and [e.line for e in bad] == [3]


# ----------------------------------------------------------------------------- main score
TASK_JSON = {
    "task_name": "ToyTask",
    "scores": {
        "test": [
            {"hf_subset": "en", "main_score": 0.71},
            {"hf_subset": "de", "main_score": 0.52},
            {"hf_subset": "fr", "main_score": 0.6},
        ],
        "validation": [{"hf_subset": "default", "main_score": 0.9}],
    },
}


def _old_runner_main_score(task_json: dict, splits: list[str] | None = None) -> float:
    """evaluation/runner.py's ``main_score`` before the merge."""
    values = []
    for split, entries in task_json["scores"].items():
        if splits and split not in splits:
            continue
        values.extend(float(entry["main_score"]) for entry in entries)
    return sum(values) / len(values)


def _old_compare_main_score(task_json: dict) -> float:
    """stats/compare.py's ``_task_main_score`` before the merge (all splits)."""
    return float(np.mean([float(e["main_score"]) for s in task_json["scores"].values() for e in s]))


def test_one_main_score_equals_both_old_ones() -> None:
    assert task_main_score(TASK_JSON) == _old_compare_main_score(TASK_JSON)
    assert task_main_score(TASK_JSON) == pytest.approx(_old_runner_main_score(TASK_JSON), abs=1e-15)
    assert task_main_score(TASK_JSON, ["test"]) == pytest.approx((0.71 + 0.52 + 0.6) / 3, abs=1e-15)
    assert task_main_score(TASK_JSON, ["test"]) == pytest.approx(
        _old_runner_main_score(TASK_JSON, ["test"]), abs=1e-15
    )
    with pytest.raises(NoScoresError, match="ToyTask: no scores"):
        task_main_score(TASK_JSON, ["dev"])


def _results_dir(root: Path, task_json: object) -> Path:
    root.mkdir()
    (root / "ToyTask.json").write_text(json.dumps(task_json))
    run = {"model": {"design": "d"}, "tasks": {"ToyTask": {"file": "ToyTask.json", "family": "STS"}}}
    (root / EVAL_RUN_FILE).write_text(json.dumps(run))
    return root


def test_compare_reads_the_same_main_score_and_names_the_bad_file(tmp_path: Path) -> None:
    good = load_results(_results_dir(tmp_path / "good", TASK_JSON))
    assert good.scores == {"ToyTask": task_main_score(TASK_JSON)}
    with pytest.raises(ResultsError, match=r"empty/ToyTask\.json: no scores$"):
        load_results(_results_dir(tmp_path / "empty", {"task_name": "ToyTask", "scores": {}}))
    with pytest.raises(ResultsError, match=r"ToyTask\.json: not an mteb task result"):
        load_results(_results_dir(tmp_path / "bad", {"scores": {"test": [{"no": 1}]}}))


# ----------------------------------------------------------------------------- text key, recipe
def test_same_text_key_ignores_case_and_whitespace_runs() -> None:
    assert same_text_key("  The  Cat\tsat\n") == same_text_key("the cat SAT")
    assert same_text_key("the cat") != same_text_key("the cats")


RECIPE = {
    "steps": 1000,
    "batch_size": 2048,
    "mini_batch_size": 32,
    "gradcache": True,
    "learning_rate": 1e-5,
    "head_learning_rate": 1e-4,
    "warmup_steps": 100,
    "temperature": 0.05,
    "full_finetune": False,
    "lora": {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
}


def test_recipe_and_adapter_wording() -> None:
    assert recipe_text(RECIPE) == (
        "1000 steps, batch 2048 queries (GradCache mini-batch 32), lr 1e-05 (head 0.0001), "
        "warm-up 100, temperature 0.05"
    )
    same_lr = {**RECIPE, "head_learning_rate": 1e-5, "gradcache": False}
    assert recipe_text(same_lr) == "1000 steps, batch 2048 queries, lr 1e-05, warm-up 100, temperature 0.05"
    assert adapter_text(RECIPE) == "LoRA r 16, alpha 32, dropout 0.1 on q_proj, v_proj"
    assert adapter_text({**RECIPE, "full_finetune": True}) == "full fine-tuning"


def test_a_line_that_is_not_utf8_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "\xff"}\n')
    with pytest.raises(JsonlError, match=f"{path}:2: invalid JSON \\(not UTF-8"):
        list(read_jsonl(path))


def test_atomic_files_get_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    """mkstemp creates owner-only files; outputs on shared storage must honour the umask instead."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    write_text_atomic(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
