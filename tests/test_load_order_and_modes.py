"""Three small bugs kept fixed: ``encode --dtype float32`` loads a float32 model (never bf16
weights cast up), ``encode`` gives a training model back in training mode even when it fails,
and ``evaluate`` reads the data before it loads the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import save_tiny_backbone
from transformers import PreTrainedTokenizerBase

from poolattn.encode_file import _resolve
from poolattn.evaluation import runner as eval_runner
from poolattn.evaluation.local import LocalDataError
from poolattn.model import EmbeddingModel


def test_encode_dtype_float32_loads_float32_weights(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    """A model saved in bf16 (what ``dtype = "auto"`` gives on a bf16-capable CPU) encoded with
    ``dtype="float32"``: its backbone holds the float32 weights from disk, bit for bit."""
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    EmbeddingModel.from_pretrained(base, pooling="mean", dtype="bfloat16", max_length=16).save(tmp_path / "m")
    reference = EmbeddingModel.from_pretrained(base, pooling="mean", dtype="float32", max_length=16)
    name, weight = next((n, w) for n, w in reference.backbone.named_parameters() if w.dim() == 2)
    assert not torch.equal(weight, weight.to(torch.bfloat16).float())  # bf16 would round these

    backend, _ = _resolve(str(tmp_path / "m"), None, "float32")
    loaded = dict(backend.model.backbone.named_parameters())[name]
    assert loaded.dtype == torch.float32 and backend.model.config.dtype == "float32"
    assert torch.equal(loaded, weight)


def test_encode_restores_training_mode_when_it_fails(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = EmbeddingModel.from_pretrained(save_tiny_backbone(tmp_path / "tiny", tokenizer), pooling="mean")
    model.train()

    def broken(_features: dict) -> torch.Tensor:
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(model, "forward", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        model.encode(["a text", "another"])
    assert model.training  # still a training model: the next step trains with dropout as before
    monkeypatch.undo()
    model.eval()
    model.encode(["a text"])
    assert not model.training  # and an eval model stays in eval mode


def test_evaluate_reads_the_data_before_loading_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed local file stops the run before any model work (the model is never loaded)."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    data = tmp_path / "data" / "sts" / "ToySTS"
    data.mkdir(parents=True)
    rows = [{"sentence1": f"a {i}", "sentence2": f"b {i}", "score": i % 5} for i in range(6)]
    rows[1]["score"] = []
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    loads: list[str] = []
    monkeypatch.setattr(eval_runner, "load_backend", lambda spec: loads.append(spec))
    with pytest.raises(LocalDataError, match=r"ToySTS/test.jsonl:2: field 'score'"):
        eval_runner.evaluate("smollm2-135m:eos+causal", tmp_path / "out", local_data=tmp_path / "data")
    assert loads == []
