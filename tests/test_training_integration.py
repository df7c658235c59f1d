"""Acceptance 5: a short run on the real SmolLM2 with the local data lowers the training loss,
and the trained model beats the untrained one (same design) on 150 STSBenchmark dev pairs."""

# ~80 s on a 2-core AVX2 CPU

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from poolattn.model import EmbeddingModel
from poolattn.training import build_model, train, train_config_from_dict

INSTRUCTION = "Retrieve semantically similar text"
# Sized for a 2-core CPU: 6 LoRA steps of 8 SNLI triples. Measured here (mean + causal): loss
# 2.39 -> 1.77 (mean of the first / last three), STSB dev Spearman on 150 pairs 0.498 -> 0.628.
# Batches of 4 (lr 4e-3) or 6 (lr 3e-3) fell below or near the thresholds; 8 at 3e-3 gained half as much.
STEPS, BATCH, LR, PAIRS = 6, 8, 4e-3, 150


def _sts_spearman(model: EmbeddingModel, rows: list[dict]) -> float:
    """STS is symmetric: both sentences embedded bare (as documents); cosine against the gold scores."""
    a = model.encode([r["sentence1"] for r in rows], prompt_type="document", batch_size=50)
    b = model.encode([r["sentence2"] for r in rows], prompt_type="document", batch_size=50)
    return float(spearmanr((a * b).sum(axis=1), [r["score"] for r in rows]).statistic)


@pytest.mark.needs_model
@pytest.mark.needs_data
@pytest.mark.slow
def test_short_run_lowers_loss_and_improves_sts(tmp_path: Path, data_dir: Path) -> None:
    dev = data_dir / "eval" / "sts" / "STSBenchmark" / "dev.jsonl"
    rows = [json.loads(line) for line in dev.read_text().splitlines()[:PAIRS]]
    config = train_config_from_dict(
        {
            "model": {"base": "smollm2-135m", "pooling": "mean", "attention": "causal", "max_length": 48},
            "data": {"train": [str(data_dir / "train" / "snli_triples.jsonl")], "instructions": {"snli_triples": INSTRUCTION}},
            "training": {
                "steps": STEPS, "batch_size": BATCH, "mini_batch_size": 32, "learning_rate": LR, "warmup_steps": 1,
                "output_dir": str(tmp_path / "run"), "save_every": 1000, "progress": False, "seed": 0,
            },
            "lora": {"r": 8, "alpha": 16, "dropout": 0.1},
        }
    )  # fmt: skip
    before = _sts_spearman(build_model(config), rows)  # LoRA starts at B = 0: exactly the untrained design
    final = train(config)
    losses = [
        json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    after = _sts_spearman(EmbeddingModel.load(final), rows)
    print(
        f"STSB dev ({PAIRS} pairs) Spearman before {before:.3f} after {after:.3f}; losses {np.round(losses, 3)}"
    )
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.2
    assert after > before + 0.03
