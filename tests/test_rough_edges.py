"""Issue 28: bad paths and files give one line and exit 2, quiet runs stay quiet (and not
silent), one wording for bad input lines, one rule for output paths, no pickles by default."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from helpers import save_tiny_backbone, training_config, write_pairs
from transformers import AutoModel, PreTrainedTokenizerBase

from poolattn.cli import main, quiet_process
from poolattn.config import ModelConfig
from poolattn.model import EmbeddingModel
from poolattn.model_dir import HEAD_FILE
from poolattn.settings import ALLOW_PICKLE_ENV
from poolattn.training import heartbeat
from poolattn.training.config import load_train_config
from poolattn.training.trainer import train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase) -> Path:
    return save_tiny_backbone(tmp_path_factory.mktemp("rough") / "backbone", tokenizer)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, backbone: Path) -> Path:
    model = EmbeddingModel.from_pretrained(str(backbone), pooling="latent", dtype="float32", max_length=24)
    return model.save(tmp_path_factory.mktemp("rough-model") / "model")


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- item 2
def test_truncated_head_weights_name_the_file(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in model_dir.iterdir():
        if item.is_file():
            (broken / item.name).write_bytes(item.read_bytes())
    head = broken / HEAD_FILE
    head.write_bytes(head.read_bytes()[:100])  # truncated mid-header
    texts = tmp_path / "t.txt"
    texts.write_text("hello\n")
    assert main(["encode", str(broken), "-i", str(texts), "-o", str(tmp_path / "v.npy")]) == 2
    err = one_error_line(capsys)
    assert str(head) in err and "corrupt or truncated" in err
    assert not (tmp_path / "v.npy").exists()


# ----------------------------------------------------------------------------- item 3
def test_encode_output_under_a_file_is_refused_before_work(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "t.txt"
    texts.write_text("hello\nworld\n")
    before = sorted(tmp_path.rglob("*"))
    assert main(["encode", str(model_dir), "-i", str(texts), "-o", str(texts / "x.npy")]) == 2
    err = one_error_line(capsys)
    assert f"{texts} is a file, not a folder" in err and "--output" in err
    assert sorted(tmp_path.rglob("*")) == before and texts.read_text() == "hello\nworld\n"


@pytest.mark.parametrize("command", ["eval", "mine"])
def test_eval_and_mine_refuse_an_output_under_a_file(
    command: str, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    pairs = write_pairs(tmp_path / "pairs.jsonl", 4)
    argv = ["eval", str(model_dir)] if command == "eval" else ["mine", str(pairs), "--model", str(model_dir)]
    assert main([*argv, "--output", str(afile / "out")]) == 2
    assert f"{afile} is a file, not a folder" in one_error_line(capsys)


def _experiment_toml(folder: Path, output_dir: str, data: Path, base: Path) -> Path:
    path = folder / "exp.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [experiment]
            output_dir = "{output_dir}"
            designs = ["mean+causal"]
            untrained = []
            [model]
            base = "{base}"
            [data]
            train = ["{data}"]
            [training]
            steps = 1
            batch_size = 4
            mini_batch_size = 4
            """
        )
    )
    return path


def test_experiment_output_under_a_file_fails_status_too(
    tmp_path: Path, backbone: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("x")
    data = write_pairs(tmp_path / "pairs.jsonl", 8)
    config = _experiment_toml(tmp_path, "afile/runs", data, backbone)
    for extra in (["--status"], ["--dry-run"]):
        assert main(["experiment", str(config), *extra]) == 2
        err = one_error_line(capsys)
        assert "experiment.output_dir" in err and "is a file, not a folder" in err


def test_train_output_under_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    config = tmp_path / "train.toml"
    config.write_text('[data]\ntrain = ["x.jsonl"]\n[training]\noutput_dir = "afile/run"\n')
    assert main(["train", str(config)]) == 2
    assert "training.output_dir" in one_error_line(capsys)


# ----------------------------------------------------------------------------- item 4
def test_bad_train_config_is_reported_before_torch_is_imported(tmp_path: Path) -> None:
    """The fast answer (< 1.5 s) comes from not importing torch: checked in a fresh process."""
    config = tmp_path / "bad.toml"
    config.write_text('[data]\ntrain = ["x.jsonl"]\n[training]\nstepz = 2\n')
    code = (
        "import sys\nfrom poolattn.cli import main\nrc = main(['train', sys.argv[1]])\n"
        "print('torch' in sys.modules, rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout.split() == ["False", "2"], done.stdout + done.stderr
    assert "training.stepz: unknown key; did you mean 'steps'?" in done.stderr


# ----------------------------------------------------------------------------- item 6
def test_no_progress_hides_the_weight_loading_bar(
    backbone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sentence-transformers folder is loaded by sentence-transformers, whose transformers
    call draws "Loading weights" unless --no-progress turned the bars off process-wide."""
    from sentence_transformers import SentenceTransformer, models
    from transformers.utils import logging as hf_logging

    word = models.Transformer(str(backbone))
    st_dir = tmp_path / "st"
    SentenceTransformer(modules=[word, models.Pooling(word.get_embedding_dimension())]).save(str(st_dir))
    texts = tmp_path / "t.txt"
    texts.write_text("hello\n")
    capsys.readouterr()
    hf_logging.enable_progress_bar()  # another test in this worker may have run with --no-progress
    try:
        assert main(["encode", str(st_dir), "-i", str(texts), "-o", str(tmp_path / "a.npy")]) == 0
        assert "Loading weights" in capsys.readouterr().err  # the bar this test is about exists
        argv = ["encode", str(st_dir), "-i", str(texts), "-o", str(tmp_path / "b.npy"), "--no-progress"]
        assert main(argv) == 0
        assert "Loading weights" not in capsys.readouterr().err
    finally:
        hf_logging.enable_progress_bar()


def test_superseded_task_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    from mteb.abstasks.abstask import AbsTask

    class Task:  # the real check, on an object with the fields it reads
        superseded_by = "Old.v2"
        metadata = type("Metadata", (), {"name": "Old"})()
        check = AbsTask.check_if_dataset_is_superseded

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_process(argparse.Namespace(no_progress=False))
        with caplog.at_level(logging.WARNING, logger="mteb"):
            Task().check()
    logged = [r for r in caplog.records if "superseded by 'Old.v2'" in r.getMessage()]
    assert len(logged) + len([w for w in caught if "superseded" in str(w.message)]) == 1


def test_quiet_training_still_prints_progress_lines(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(heartbeat, "HEARTBEAT_SECONDS", 0.0)
    data = write_pairs(tmp_path / "pairs.jsonl", 16)
    cfg = training_config(backbone, [data], tmp_path / "run", training={"steps": 2, "gradcache": False})
    assert cfg.training.progress is False
    train(cfg)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train: step")]
    assert [line.split(",")[0] for line in lines] == ["train: step 1/2 (50%)", "train: step 2/2 (100%)"]
    assert "loss=" in lines[-1]


def test_heartbeat_waits_for_its_interval() -> None:
    beat = heartbeat.Heartbeat(total=100, every_s=3600)
    beat.update()
    beat.update()
    assert beat.last == beat.started  # nothing printed before the interval or the last step


# ----------------------------------------------------------------------------- item 7
def test_train_and_encode_word_a_bad_line_alike(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from poolattn.training.data import DataError, read_examples

    data = write_pairs(tmp_path / "pairs.jsonl", 2)
    with data.open("a") as fh:
        fh.write('{"query": "q"}\n')
    with pytest.raises(DataError) as info:
        read_examples(data)
    texts = tmp_path / "t.jsonl"
    texts.write_text('{"text": "a"}\n{"text": "b"}\n{"body": "c"}\n')
    assert main(["encode", str(model_dir), "-i", str(texts), "-o", str(tmp_path / "v.npy")]) == 2
    err = one_error_line(capsys)
    assert str(info.value).startswith(f"{data}:3: field 'positive' is missing; fix it or set ")
    assert str(info.value).endswith("data.skip_invalid = true to skip bad lines")
    assert f"{texts}:3: no field 'text'" in err and err.endswith("pass --skip-invalid to skip bad lines")


# ----------------------------------------------------------------------------- item 8
def test_output_dir_is_relative_to_the_config_file(
    tmp_path: Path, backbone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from poolattn.experiment.plan import load_experiment_config

    folder = tmp_path / "configs"
    folder.mkdir()
    data = write_pairs(tmp_path / "pairs.jsonl", 8)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    experiment = load_experiment_config(_experiment_toml(folder, "../runs/x", data, backbone))
    assert experiment.output_dir.resolve() == (tmp_path / "runs" / "x").resolve()
    first = experiment.runs()[0]
    assert Path(experiment.train_data(first)["training"]["output_dir"]).is_absolute()
    config = folder / "train.toml"
    config.write_text(f'[data]\ntrain = ["{data}"]\n[training]\noutput_dir = "out"\n')
    assert Path(load_train_config(config).training.output_dir) == folder / "out"
    monkeypatch.setenv("RUNS", str(tmp_path / "abs"))
    config.write_text(f'[data]\ntrain = ["{data}"]\n[training]\noutput_dir = "$RUNS/a"\n')
    assert Path(load_train_config(config).training.output_dir) == tmp_path / "abs" / "a"


def test_shipped_configs_still_write_under_the_repository_runs_folder() -> None:
    from poolattn.config import config_relative, load_toml

    for name in ("tiny.toml", "quick.toml", "train-example.toml"):
        raw = load_toml(REPO / "configs" / name)
        section = raw["experiment"] if "experiment" in raw else raw["training"]
        out = config_relative(section["output_dir"], REPO / "configs").resolve()
        assert out.parent == REPO / "runs", (name, out)


# ----------------------------------------------------------------------------- item 11
def test_pickled_backbone_is_refused_unless_allowed(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from poolattn.backbone import load_backbone
    from poolattn.config import ConfigError

    pickled = tmp_path / "pickled"
    reference = AutoModel.from_pretrained(backbone)
    reference.config.save_pretrained(pickled)  # transformers 5 writes safetensors only: pickle by hand
    torch.save(reference.state_dict(), pickled / "pytorch_model.bin")
    for name in os.listdir(backbone):
        if name.startswith("tokenizer") or name == "special_tokens_map.json":
            (pickled / name).write_bytes((backbone / name).read_bytes())
    assert (pickled / "pytorch_model.bin").is_file() and not list(pickled.glob("*.safetensors"))
    cfg = ModelConfig(base=str(pickled), dtype="float32")
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"only pickled weights.*{ALLOW_PICKLE_ENV}=1"):
        load_backbone(cfg)
    monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")
    model, _ = load_backbone(cfg)
    assert torch.equal(model.embed_tokens.weight, reference.embed_tokens.weight)


def test_cli_refuses_pickled_backbone_in_one_line(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps(json.loads((backbone / "config.json").read_text())))
    (pickled / "pytorch_model.bin").write_bytes(b"not even a pickle")
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    texts = tmp_path / "t.txt"
    texts.write_text("hello\n")
    assert main(["encode", str(pickled), "-i", str(texts), "-o", str(tmp_path / "v.npy")]) == 2
    assert "only pickled weights (pytorch_model.bin)" in one_error_line(capsys)


def test_truncated_checkpoint_weights_name_the_file(tmp_path: Path) -> None:
    """A checkpoint's truncated trainable.safetensors is reported by its path (issue 28 item 2)."""
    from safetensors.torch import save_file

    from poolattn.io import CorruptFileError
    from poolattn.training.checkpoint import CHECKPOINT_STATE_FILE, read_checkpoint

    ckpt = tmp_path / "checkpoint-000002"
    ckpt.mkdir()
    (ckpt / CHECKPOINT_STATE_FILE).write_text(json.dumps({"step": 2}))
    weights = ckpt / "trainable.safetensors"
    save_file({"w": torch.zeros(4, 4)}, str(weights))
    weights.write_bytes(weights.read_bytes()[:20])
    with pytest.raises(CorruptFileError, match="corrupt or truncated") as info:
        read_checkpoint(ckpt)
    assert str(weights) in str(info.value)
