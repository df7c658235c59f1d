"""Everything poolattn writes follows the umask: a shared output folder and an exported model
are readable by others under umask 0022, and private under 0077 (issue 28, item 1).

Covered writers: a saved model, a training run (checkpoint, final model, run record,
metrics), a sentence-transformers export, the conversion cache (the same ``atomic_directory``
with ``keep_existing`` that ``backbone._convert_gguf`` uses, filled with safetensors files as
``save_pretrained`` fills it) and the report writers (``write_text_atomic``/``write_json_atomic``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import save_tiny_backbone, training_config, write_pairs
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerBase

from poolattn import io
from poolattn.export import export_sentence_transformers
from poolattn.model import EmbeddingModel
from poolattn.training.trainer import train


@pytest.fixture(params=[0o022, 0o077], ids=["umask-0022", "umask-0077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under this umask (io reads the umask once per process: forget it around)."""
    old = os.umask(request.param)
    io._umask.cache_clear()
    try:
        yield request.param
    finally:
        os.umask(old)
        io._umask.cache_clear()


def write_everything(root: Path, tokenizer: PreTrainedTokenizerBase) -> list[Path]:
    """Every kind of output poolattn writes, under ``root``; returns the top folders written."""
    backbone = save_tiny_backbone(root / "inputs" / "backbone", tokenizer)
    data = write_pairs(root / "inputs" / "pairs.jsonl", 16)
    model = EmbeddingModel.from_pretrained(str(backbone), pooling="mean", dtype="float32", max_length=24)
    model.save(root / "out" / "model")
    cfg = training_config(
        backbone, [data], root / "out" / "run", training={"steps": 1, "save_every": 1, "gradcache": False}
    )
    train(cfg)
    export_sentence_transformers(root / "out" / "model", root / "out" / "export")
    with io.atomic_directory(root / "out" / "cache" / "models" / "tiny", keep_existing=True) as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text("{}")
    io.write_text_atomic(root / "out" / "report" / "report.md", "# report\n")
    io.write_json_atomic(root / "out" / "report" / "summary.json", {"ok": True})
    return [root / "out"]


def test_written_files_follow_the_umask(
    umask: int, tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    (top,) = write_everything(tmp_path, tokenizer)
    paths = [top, *top.rglob("*")]
    kinds = {p.suffix for p in paths if p.is_file()}
    assert {".safetensors", ".json", ".md"} <= kinds and any("checkpoint" in str(p) for p in paths)
    wrong = []
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        if umask == 0o022:  # group and others read files and enter folders
            needed = 0o055 if path.is_dir() else 0o044
            if mode & needed != needed:
                wrong.append(f"{oct(mode)} {path.relative_to(tmp_path)}")
        elif mode & 0o077:  # 0077: nothing for group or others
            wrong.append(f"{oct(mode)} {path.relative_to(tmp_path)}")
    assert not wrong, "\n".join(wrong)
