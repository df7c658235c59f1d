"""Model cards: every saved, trained and exported model directory carries a generated README.md
whose YAML front matter parses, whose body names the design and the base, and which loading
ignores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import save_tiny_backbone, tiny_backbone, training_config, write_pairs
from huggingface_hub import ModelCard
from transformers import PreTrainedTokenizerBase

from poolattn.design import model_config
from poolattn.model import EmbeddingModel
from poolattn.model_card import CARD_DATA_FILE, CardError, base_info, update_model_card


def read_card(directory: Path) -> tuple[dict[str, Any], str]:
    """(front matter, body) of a directory's README.md."""
    text = (directory / "README.md").read_text()
    assert text.startswith("---\n")
    matter, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(matter), body


@pytest.mark.parametrize(
    ("base", "hub_id", "licence"),
    [
        ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
        ("gemma3-270m", "google/gemma-3-270m", "gemma"),
    ],
)
def test_saved_model_has_a_card_with_front_matter(
    base: str, hub_id: str, licence: str, tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    # A tiny random backbone standing in for the alias: saving never touches the base.
    cfg = model_config(pooling="multilayer", attention="bidirectional", base=base, dtype="float32")
    model = EmbeddingModel(tiny_backbone(tokenizer), tokenizer, cfg)
    out = model.save(tmp_path / "my-model")
    matter, body = read_card(out)
    assert matter["library_name"] == "poolattn"
    assert matter["base_model"] == hub_id and matter["license"] == licence
    assert matter["pipeline_tag"] == "sentence-similarity"
    assert {"poolattn", "pooling-multilayer", "attention-bidirectional"} <= set(matter["tags"])
    card = ModelCard.load(out / "README.md")  # the hub's own parser reads the metadata back
    assert card.data.base_model == hub_id and card.data.license == licence
    assert card.data.pooling == "multilayer" and card.data.attention == "bidirectional"
    assert "# my-model" in body and "**bidirectional** attention and **multilayer** pooling" in body
    assert f"`{base}` ({hub_id})" in body
    assert "16 latents, 8 heads x 64 dims" in body  # the head size
    head = sum(p.numel() for p in model.pooler.parameters())
    assert f"| head parameters | {head:,} |" in body
    assert "Instruct: {instruction}\\nQuery: {text}" in body  # the prompt template
    assert f'EmbeddingModel.load("{out}")' in body and "SentenceTransformer(" in body
    assert "No training is recorded" in body


def test_loading_ignores_the_card(tokenizer: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    backbone_dir = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    model = EmbeddingModel.from_pretrained(
        str(backbone_dir), pooling="latent", attention="causal", dtype="float32"
    )
    out = model.save(tmp_path / "m")
    matter, body = read_card(out)
    assert "base_model" not in matter and matter["license"] == "other"  # a local path is no hub id
    card = ModelCard.load(out / "README.md")
    assert card.data.poolattn_base == str(backbone_dir) and card.data.pooling == "latent"
    assert f"`{backbone_dir}`" in body and "design `latent+causal`" in body
    before = EmbeddingModel.load(out).fingerprint()
    (out / "README.md").write_text("hand-edited nonsense\n---\n: [")
    (out / CARD_DATA_FILE).write_text("{not json")
    assert EmbeddingModel.load(out).fingerprint() == before
    with pytest.raises(CardError, match="corrupt card data"):
        update_model_card(out, results={"tasks": {}})


RUN = {  # the shape of a poolattn eval run.json
    "model": {"fingerprint": "0123456789abcdef0123"},
    "settings": {"max_items": 40, "mteb_version": "2.26.24"},
    "tasks": {
        "STSBenchmark": {
            "family": "STS",
            "main_score_name": "cosine_spearman",
            "main_score": 0.5,
            "sampling": {"max_items": 40, "kept": 40, "total": 1379, "unit": "pairs"},
        },
        "SICK-R": {
            "family": "STS",
            "main_score_name": "cosine_spearman",
            "main_score": 0.7,
            "sampling": None,
        },
        "SciFact": {
            "family": "Retrieval",
            "main_score_name": "ndcg_at_10",
            "main_score": 0.25,
            "sampling": None,
        },
    },
}


def test_trained_model_card_has_recipe_and_evaluation(
    tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    from poolattn.training import train

    base = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    files = [write_pairs(tmp_path / "triples.jsonl", 20)]
    cfg = training_config(
        base, files, tmp_path / "run", training={"steps": 2, "seed": 7, "learning_rate": 2e-3}
    )
    final = train(cfg)
    matter, body = read_card(final)
    assert matter["library_name"] == "poolattn" and "lora" in matter["tags"]
    recipe = json.loads((final / CARD_DATA_FILE).read_text())["training"]
    assert recipe["steps"] == 2 and recipe["seed"] == 7 and recipe["examples"] == 20
    assert recipe["data"][0]["location"].endswith("triples.jsonl")
    assert recipe["instructions"] == {"triples": recipe["default_instruction"]}
    assert "## Training" in body and "triples.jsonl" in body and "| seed | 7 |" in body
    assert "| learning rate (backbone / head) | 0.002 / 0.002 |" in body

    results_dir = tmp_path / "eval"
    results_dir.mkdir()
    (results_dir / "run.json").write_text(json.dumps(RUN))
    update_model_card(final, results=results_dir)
    matter_after, body = read_card(final)
    assert matter_after == matter
    assert "| STS | 2 | 60.00 |" in body and "| Retrieval | 1 | 25.00 |" in body  # family means
    assert "| STS | STSBenchmark | cosine_spearman | 50.00 | 40/1379 pairs |" in body  # with the sampling
    assert "max items per dataset: 40" in body and "## Training" in body  # the recipe is kept
    EmbeddingModel.load(final)  # still a loadable model directory


def test_export_directory_has_a_card(tokenizer: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    from poolattn.export import export_sentence_transformers

    backbone_dir = save_tiny_backbone(tmp_path / "tiny", tokenizer)
    model = EmbeddingModel.from_pretrained(
        str(backbone_dir), pooling="eos", attention="causal", dtype="float32"
    )
    model_dir = model.save(tmp_path / "m")
    update_model_card(model_dir, results=RUN)
    out = export_sentence_transformers(model_dir, tmp_path / "m-st", instruction="Find it")
    matter, body = read_card(out)
    assert (
        matter["library_name"] == "sentence-transformers" and matter["pipeline_tag"] == "sentence-similarity"
    )
    assert {"poolattn", "sentence-transformers", "pooling-eos", "attention-causal"} <= set(matter["tags"])
    assert "design `eos+causal`" in body and f"`{backbone_dir}`" in body
    assert f'SentenceTransformer("{out}")' in body and "Find it" in body  # plain: no remote code
    assert "| STS | 2 | 60.00 |" in body  # the evaluation travels with the export
    card = ModelCard.load(out / "README.md")
    assert card.data.pooling == "eos" and card.data.attention == "causal" and card.data.license == "other"
    out = export_sentence_transformers(model_dir, tmp_path / "m-mod", instruction="Find it", plain=False)
    matter, body = read_card(out)
    assert f'SentenceTransformer("{out}", trust_remote_code=True)' in body
    module = next(p for p in out.iterdir() if p.is_dir() and p.name.endswith("PoolattnModule"))
    inner_matter, inner_body = read_card(module)
    assert inner_matter["library_name"] == "poolattn"
    assert f'EmbeddingModel.load("{out}/{module.name}")' in inner_body  # not the temporary export folder


def test_base_info() -> None:
    assert base_info("HuggingFaceTB/SmolLM2-360M") == ("HuggingFaceTB/SmolLM2-360M", "apache-2.0")
    assert base_info("someone/some-model") == ("someone/some-model", None)
    assert base_info("/models/local") == (None, None)
