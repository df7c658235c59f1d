"""One reader of a saved model directory (``poolattn.model_dir``): the format version is checked
with an error naming the file and the version, ``full_finetune`` is part of the saved design,
``from_pretrained`` refuses arguments that contradict a saved design, and the sentence-transformers
module reads a directory through the same function as ``EmbeddingModel.load``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import save_tiny_backbone
from transformers import PreTrainedTokenizerBase

from poolattn import model_dir
from poolattn.config import ConfigError
from poolattn.model import EmbeddingModel
from poolattn.model_dir import BACKBONE_DIR, BUNDLED_BASE_DIR, DESIGN_FILE, read_design
from poolattn.st_module import PoolattnModule, load_model_dir

TEXTS = ["a cat sleeps on the mat", "the stock market fell today", "rain"]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase) -> Path:
    return save_tiny_backbone(tmp_path_factory.mktemp("tiny-base"), tokenizer)


@pytest.fixture(scope="module")
def saved(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved latent + bidirectional design with a LoRA adapter and a moved head."""
    model = EmbeddingModel.from_pretrained(
        str(base_dir), attention="bidirectional", pooling="latent", max_length=32, dtype="float32"
    )
    model.add_lora(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or name.startswith("pooler."):
                param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(3)) * 0.05)
    return model.save(tmp_path_factory.mktemp("saved") / "model")


def _edit_design(directory: Path, **changes) -> None:
    path = directory / DESIGN_FILE
    design = json.loads(path.read_text())
    design.update(changes)
    path.write_text(json.dumps(design))


# ----------------------------------------------------------------------------- the design file
@pytest.mark.parametrize("version", [99, None, "2"])
def test_unknown_format_version_names_the_file_and_the_version(saved: Path, tmp_path: Path, version) -> None:
    copy = Path(shutil.copytree(saved, tmp_path / "copy"))
    _edit_design(copy, format_version=version)
    with pytest.raises(ConfigError) as info:
        EmbeddingModel.load(copy)
    message = str(info.value)
    assert str(copy / DESIGN_FILE) in message
    assert f"format_version {version!r}" in message and "reads format 2" in message


def test_corrupt_design_files_are_named(saved: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(saved, tmp_path / "copy"))
    (copy / DESIGN_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match=f"{copy / DESIGN_FILE}: corrupt design file"):
        read_design(copy)
    (copy / DESIGN_FILE).write_text(json.dumps({"format_version": 2}))
    with pytest.raises(ConfigError, match="no 'model' table"):
        read_design(copy)
    design = json.loads((saved / DESIGN_FILE).read_text())
    (copy / DESIGN_FILE).write_text(json.dumps({**design, "full_finetune": "yes"}))
    with pytest.raises(ConfigError, match="full_finetune: expected true or false"):
        read_design(copy)
    (copy / DESIGN_FILE).write_text(json.dumps({**design, "model": {**design["model"], "polling": "mean"}}))
    with pytest.raises(ConfigError, match=r"model\.polling: unknown key; did you mean 'pooling'"):
        read_design(copy)


def test_read_design_reports_what_was_saved(saved: Path) -> None:
    design = read_design(saved)
    assert (design.config.pooling, design.config.attention, design.config.max_length) == (
        "latent",
        "bidirectional",
        32,
    )
    assert design.has_adapter and not design.full_finetune and design.bundled_base is None
    assert design.backbone_config() == design.config  # no local copy: the design's own base


# ----------------------------------------------------------------------------- full_finetune
def test_full_finetune_is_part_of_the_saved_design(base_dir: Path, tmp_path: Path) -> None:
    model = EmbeddingModel.from_pretrained(
        str(base_dir), pooling="mean", attention="causal", full_finetune=True, dtype="float32"
    )
    assert model.full_finetune
    with pytest.raises(AttributeError):
        model.full_finetune = False  # owned by the design, not set from outside
    with torch.no_grad():  # move the backbone's own weights: only a saved whole backbone keeps them
        next(model.backbone.parameters()).add_(0.5)
    before = model.encode(TEXTS)
    model.save(tmp_path / "ft")
    assert json.loads((tmp_path / "ft" / DESIGN_FILE).read_text())["full_finetune"] is True
    assert (tmp_path / "ft" / BACKBONE_DIR / "model.safetensors").is_file()
    loaded = EmbeddingModel.load(tmp_path / "ft")
    assert loaded.full_finetune and not loaded.has_adapter
    np.testing.assert_allclose(loaded.encode(TEXTS), before, atol=1e-6)
    loaded.save(tmp_path / "again")  # a re-save keeps it
    assert read_design(tmp_path / "again").full_finetune
    assert not EmbeddingModel.from_pretrained(str(base_dir), pooling="mean").full_finetune


# ----------------------------------------------------------------------------- from_pretrained
def test_from_pretrained_on_a_saved_directory_refuses_a_contradicting_design(saved: Path) -> None:
    with pytest.raises(ConfigError, match=r"attention='causal' \(saved: 'bidirectional'\)"):
        EmbeddingModel.from_pretrained(str(saved), attention="causal")
    with pytest.raises(ConfigError, match=r"pooling='eos' \(saved: 'latent'\)") as info:
        EmbeddingModel.from_pretrained(str(saved), pooling="eos")
    assert str(saved) in str(info.value)
    with pytest.raises(ConfigError, match=r"max_length=64 \(saved: 32\)"):
        EmbeddingModel.from_pretrained(saved, max_length=64)
    with pytest.raises(ConfigError, match="full_finetune=True"):
        EmbeddingModel.from_pretrained(saved, full_finetune=True)
    with pytest.raises(ConfigError, match="not a design field"):
        EmbeddingModel.from_pretrained(saved, no_such_option=1)


def test_from_pretrained_on_a_saved_directory_accepts_the_saved_design(saved: Path) -> None:
    expected = EmbeddingModel.load(saved).encode(TEXTS)
    for kwargs in ({}, {"attention": "bidirectional", "pooling": "latent", "max_length": 32}):
        model = EmbeddingModel.from_pretrained(saved, **kwargs)
        assert model.config.name == "latent+bidirectional" and model.has_adapter
        np.testing.assert_array_equal(model.encode(TEXTS), expected)


# ----------------------------------------------------------------------------- one reader
def test_sentence_transformers_module_reads_through_the_same_function(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    real = model_dir.read_design

    def spy(directory):
        calls.append(Path(directory))
        return real(directory)

    monkeypatch.setattr(model_dir, "read_design", spy)
    import poolattn.model as model_module
    import poolattn.st_module as st_module

    monkeypatch.setattr(model_module, "read_design", spy)
    monkeypatch.setattr(st_module, "read_design", spy)
    EmbeddingModel.load(saved)
    assert calls == [saved]
    module = PoolattnModule.load(str(saved))
    assert calls[1:] and all(c == saved for c in calls[1:])
    assert module.model.config == EmbeddingModel.load(saved).config


def test_a_bundled_base_is_used_by_both_loaders(saved: Path, base_dir: Path, tmp_path: Path) -> None:
    """A directory whose ``config.base`` is gone still loads from its bundled ``base/`` copy,
    whichever loader reads it; the design keeps its original ``base``."""
    moved_base = Path(shutil.copytree(base_dir, tmp_path / "base-elsewhere"))
    model = EmbeddingModel.from_pretrained(str(moved_base), pooling="mean", dtype="float32")
    directory = model.save(tmp_path / "model")
    shutil.copytree(moved_base, directory / BUNDLED_BASE_DIR)
    expected = model.encode(TEXTS)
    shutil.rmtree(moved_base)

    loaded = EmbeddingModel.load(directory)
    assert loaded.config.base == str(moved_base)
    np.testing.assert_allclose(loaded.encode(TEXTS), expected, atol=1e-6)
    via_st, bundled = load_model_dir(directory)
    assert bundled == directory / BUNDLED_BASE_DIR and via_st.config == loaded.config
    np.testing.assert_allclose(via_st.encode(TEXTS), expected, atol=1e-6)


def test_sentence_transformers_module_reports_the_unknown_version_too(saved: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(saved, tmp_path / "copy"))
    _edit_design(copy, format_version=7)
    with pytest.raises(ConfigError, match=f"{copy / DESIGN_FILE}: format_version 7"):
        PoolattnModule.load(str(copy))


def test_a_newer_format_asks_for_an_upgrade(saved: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(saved, tmp_path / "copy"))
    _edit_design(copy, format_version=3)
    with pytest.raises(ConfigError, match="written by a newer poolattn .*upgrade poolattn"):
        EmbeddingModel.load(copy)
