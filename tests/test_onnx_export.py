"""ONNX export of a trainable-head design: onnxruntime alone (no poolattn code in the loop)
reproduces poolattn's normalised embeddings for texts of mixed length and any batch size."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from helpers import save_tiny_backbone
from huggingface_hub import ModelCard
from transformers import PreTrainedTokenizerBase

from poolattn.cli import main as cli_main
from poolattn.model import EmbeddingModel
from poolattn.onnx_export import ONNX_CONFIG_FILE

WORDS = "the quick brown fox jumps over the lazy dog while a red car runs along the river".split()
TEXTS = [" ".join(WORDS[: 1 + (i * 7) % len(WORDS)] * (1 + i % 4)) for i in range(100)]  # 1 to ~60 words

# onnxruntime + tokenizers only: the documented way to call an ONNX export (OnnxEncoder's code,
# inlined so that no poolattn module is imported)
STANDALONE = """
import json, sys, numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
folder, prompt = sys.argv[1], sys.argv[2]
cfg = json.load(open(folder + "/poolattn_onnx.json"))
tok = Tokenizer.from_file(folder + "/tokenizer.json")
tok.enable_padding(pad_id=cfg["pad_token_id"], pad_token=cfg["pad_token"])
tok.enable_truncation(max_length=cfg["max_length"])
texts = json.load(sys.stdin)
enc = tok.encode_batch([cfg["prompts"][prompt] + t if prompt else t for t in texts])
feeds = {"input_ids": np.array([e.ids for e in enc]), "attention_mask": np.array([e.attention_mask for e in enc])}
vectors = ort.InferenceSession(folder + "/model.onnx").run([cfg["output"]], feeds)[0]
assert "poolattn" not in sys.modules
np.save(sys.stdout.buffer, vectors)
"""


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_onnx_multilayer_bidirectional(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    torch.manual_seed(1)
    model = EmbeddingModel.from_pretrained(
        str(base), pooling="multilayer", attention="bidirectional", dtype="float32"
    )
    model.add_lora(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name or name.startswith("pooler."):
                param.add_(torch.randn_like(param) * 0.05)
    model.eval().save(tmp_path / "model")
    out = tmp_path / "onnx"
    assert cli_main(["export", str(tmp_path / "model"), "--format", "onnx", "--output", str(out)]) == 0
    assert (out / "model.onnx").exists() and (out / "tokenizer.json").exists()

    for prompt, kind in (("", "document"), ("query", "query")):
        run = subprocess.run(
            [sys.executable, "-c", STANDALONE, str(out), prompt],
            input=json.dumps(TEXTS).encode(),
            capture_output=True,
            check=True,
        )

        theirs = np.load(io.BytesIO(run.stdout))
        ours = model.encode(TEXTS, prompt_type=kind)
        assert theirs.shape == ours.shape
        assert cosines(ours, theirs).min() >= 0.999

    assert json.loads((out / ONNX_CONFIG_FILE).read_text())["design"] == model.config.name
    card = ModelCard.load(out / "README.md")
    assert card.data.pooling == "multilayer" and card.data.attention == "bidirectional"
    assert card.data.library_name == "onnx"
