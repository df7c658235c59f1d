"""`poolattn eval` writes mteb's own results layout: mteb's ResultCache reads the model's meta
(with the design in experiment_kwargs) and every task's score back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import save_tiny_backbone
from transformers import PreTrainedTokenizerBase

from poolattn.cli import main as cli_main
from poolattn.evaluation.mteb_results import MTEB_DIR

PICKS = ("sts/STSBenchmark", "retrieval/SciFact", "pair_classification/MSRP")


@pytest.mark.needs_data
def test_mteb_loader_reads_poolattn_eval_output(
    data_dir: Path, tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    from mteb.cache import ResultCache

    root = tmp_path / "data"
    for pick in PICKS:
        (root / pick).parent.mkdir(parents=True, exist_ok=True)
        (root / pick).symlink_to(data_dir / "eval" / pick)
    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    out = tmp_path / "eval"
    args = ["eval", f"{base}:mean+bidirectional", "--local-data", str(root), "--max-items", "6"]
    assert cli_main([*args, "--output", str(out), "--no-embedding-cache"]) == 0
    run = json.loads((out / "run.json").read_text())

    results = ResultCache(out / MTEB_DIR).load_results(
        require_model_meta=True, include_remote=False, load_experiments="match_name"
    )
    [model] = results.model_results
    meta = json.loads((out / run["mteb_results"] / "model_meta.json").read_text())
    assert model.model_name == meta["name"] and model.model_revision == meta["revision"]
    assert meta["embed_dim"] == 32 and meta["similarity_fn_name"] == "cosine" and meta["max_tokens"] > 0
    assert meta["n_parameters"] > 0 and meta["framework"] == ["PyTorch"]
    assert meta["experiment_kwargs"]["pooling"] == "mean"
    assert meta["experiment_kwargs"]["attention"] == "bidirectional"
    scores = {r.task_name: r.get_score() for r in model.task_results}
    assert set(scores) == set(run["tasks"])
    for task, info in run["tasks"].items():
        assert scores[task] == pytest.approx(info["main_score"])
