"""Each record file has one name and one reader: a checkpoint's ``trainer_state.json`` and the
trainer's ``training_run.json`` are no longer called like a grid run's ``state.json`` or an
evaluation's ``run.json``, and their readers still accept the old names (older runs resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from poolattn.config import ConfigError
from poolattn.eval_results import EVAL_RUN_FILE, read_eval_run
from poolattn.experiment.state import STATE_FILE, StateError, read_state, recorded_runs
from poolattn.training.checkpoint import (
    CHECKPOINT_STATE_FILE,
    latest_checkpoint,
    list_checkpoints,
    read_checkpoint,
    write_checkpoint,
)
from poolattn.training.config import TRAIN_RUN_FILE, read_train_run


class _Model:
    def save(self, directory: Path) -> None:
        Path(directory).mkdir()


def _checkpoint(out: Path, step: int) -> Path:
    return write_checkpoint(
        out,
        step,
        model=_Model(),
        trainable={"w": torch.arange(3.0)},
        optimizer_state=None,
        scheduler_state={"last_epoch": step},
        rng_states=[],
        data_state={"position": step},
    )


def test_names_differ_from_the_grid_and_evaluation_records() -> None:
    assert len({CHECKPOINT_STATE_FILE, STATE_FILE}) == 2
    assert len({TRAIN_RUN_FILE, EVAL_RUN_FILE}) == 2


def test_checkpoint_state_written_under_new_name_and_old_name_still_resumes(tmp_path: Path) -> None:
    new = _checkpoint(tmp_path, 2)
    assert (new / CHECKPOINT_STATE_FILE).is_file() and not (new / "state.json").exists()
    old = _checkpoint(tmp_path, 4)
    (old / CHECKPOINT_STATE_FILE).rename(old / "state.json")  # a checkpoint written before the rename
    assert list_checkpoints(tmp_path) == [new, old] and latest_checkpoint(tmp_path) == old
    state = read_checkpoint(old)
    assert state["step"] == 4 and state["data"] == {"position": 4}
    assert torch.equal(state["trainable"]["w"], torch.arange(3.0))
    (old / "state.json").unlink()  # no state file: not a complete checkpoint
    assert list_checkpoints(tmp_path) == [new]


def test_training_record_read_under_new_or_old_name(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no training record"):
        read_train_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"step": 1}))  # an older run
    assert read_train_run(tmp_path) == {"step": 1}
    (tmp_path / TRAIN_RUN_FILE).write_text(json.dumps({"step": 2}))  # the new name wins
    assert read_train_run(tmp_path) == {"step": 2}
    (tmp_path / TRAIN_RUN_FILE).write_text("{oops")
    with pytest.raises(ConfigError, match=f"{TRAIN_RUN_FILE}: corrupt training record"):
        read_train_run(tmp_path)


def test_grid_state_and_evaluation_record_readers(tmp_path: Path) -> None:
    for name, status in (("b-seed0", "done"), ("a-seed0", "running")):
        (tmp_path / name).mkdir()
        (tmp_path / name / STATE_FILE).write_text(json.dumps({"status": status}))
    (tmp_path / "c-seed0").mkdir()  # not started: no state
    assert [(d.name, s["status"]) for d, s in recorded_runs(tmp_path)] == [
        ("a-seed0", "running"),
        ("b-seed0", "done"),
    ]
    (tmp_path / "a-seed0" / STATE_FILE).write_text("{oops")
    with pytest.raises(StateError, match=r"a-seed0/state.json: corrupt JSON"):
        read_state(tmp_path / "a-seed0")
    (tmp_path / EVAL_RUN_FILE).write_text(json.dumps({"tasks": {}}))
    assert read_eval_run(tmp_path) == read_eval_run(tmp_path / EVAL_RUN_FILE) == {"tasks": {}}
    (tmp_path / EVAL_RUN_FILE).write_text("[]")
    with pytest.raises(ValueError, match="not an evaluation record"):
        read_eval_run(tmp_path)
