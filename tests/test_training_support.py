"""Helpers shared by the training tests: a tiny backbone saved to disk, small JSONL files,
and a compact config builder. (No tests here.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, LlamaConfig, PreTrainedTokenizerBase

from poolattn.training import TrainConfig, train_config_from_dict

TINY = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)


def save_tiny_backbone(directory: Path, tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> Path:
    """A tiny random llama saved with its tokenizer, so subprocesses can load it by path."""
    torch.manual_seed(seed)
    model = AutoModel.from_config(LlamaConfig(vocab_size=len(tokenizer), **TINY))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_pairs(path: Path, n: int, negatives: bool = True, offset: int = 0) -> Path:
    """``n`` synthetic query/positive(/negative) records with distinct positives."""
    words = ["red", "blue", "green", "cat", "dog", "car", "tree", "river", "city", "song", "book", "rain"]
    with path.open("w") as fh:
        for i in range(offset, offset + n):
            a, b, c = words[i % 12], words[(i // 12) % 12], words[(i * 7) % 12]
            rec: dict[str, Any] = {"query": f"a {a} {b} number {i}", "positive": f"the {a} and {b} {i} {c}"}
            if negatives:
                rec["negative"] = f"nothing about {c} {i}"
            fh.write(json.dumps(rec) + "\n")
    return path


def tiny_config(base: Path, train: list[Path], output: Path, **sections: dict[str, Any]) -> TrainConfig:
    """A small, fast TrainConfig; ``sections`` update the [model]/[data]/[training]/[lora] tables."""
    data: dict[str, Any] = {
        "model": {"base": str(base), "pooling": "mean", "attention": "causal", "max_length": 24},
        "data": {"train": [str(p) for p in train]},
        "training": {
            "steps": 4,
            "batch_size": 8,
            "mini_batch_size": 4,
            "learning_rate": 1e-3,
            "warmup_steps": 1,
            "output_dir": str(output),
            "save_every": 2,
            "progress": False,
            "seed": 0,
        },
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
    }
    for name, values in sections.items():
        data[name].update(values)
    return train_config_from_dict(data)
