"""sentence-transformers export: ST loads the directory and reproduces ``EmbeddingModel.encode``.

The test models are built from a tiny random backbone saved to disk (so the design's
``base`` is a real local directory), with a LoRA adapter and a perturbed head so the
round trip is not trivially at initialisation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import save_tiny_backbone
from sentence_transformers import SentenceTransformer
from transformers import PreTrainedTokenizerBase

from poolattn.cli import main as cli_main
from poolattn.export import export_sentence_transformers
from poolattn.model import EmbeddingModel
from poolattn.st_module import PICKLE_SUFFIXES, instruction_from_prompt, query_prompt

TEXTS = [
    "A man is playing a guitar.",
    "Someone plays an instrument on a small stage in front of a crowd of friends.",
    "The stock market fell today.",
    "ok",
]
SUFFIX_TEMPLATE = "Instruct: {instruction}\nQuery: {text}\nAnswer:"

DESIGNS = [  # pooling, attention, extra options
    ("eos", "causal", {}),
    ("mean", "bidirectional", {"exclude_instruction": True}),
    ("weighted_mean", "causal", {"exclude_instruction": True, "query_template": SUFFIX_TEMPLATE}),
    ("latent", "bidirectional", {"exclude_instruction": True, "padding_side": "left"}),
    ("multilayer", "bidirectional", {}),
    ("nv_latent", "bidirectional", {"exclude_instruction": True}),
]


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase) -> Path:
    """A tiny random Llama saved with its tokenizer: a loadable local ``base``."""
    return save_tiny_backbone(tmp_path_factory.mktemp("tiny-backbone"), tokenizer)


def trained_like(
    backbone_dir: Path, pooling: str, attention: str, lora: bool = True, **opts
) -> EmbeddingModel:
    """A design with a LoRA adapter and head weights moved away from their initialisation."""
    torch.manual_seed(1)
    # Exactness is a float32 property: under bf16 compute, ST's batches differ from encode()'s
    # length-sorted ones, and bf16 rounding then differs by ~1e-3 (see test_round_trip_bf16).
    opts.setdefault("dtype", "float32")
    model = EmbeddingModel.from_pretrained(str(backbone_dir), attention=attention, pooling=pooling, **opts)
    if lora:
        model.add_lora(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name or name.startswith("pooler."):
                param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


def assert_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    cosine = (ours * theirs).sum(axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    assert cosine.min() >= 0.9999, cosine
    assert np.abs(ours - theirs).max() <= 1e-5


@pytest.mark.parametrize(("pooling", "attention", "opts"), DESIGNS, ids=[d[0] for d in DESIGNS])
def test_round_trip_matches_encode(
    tmp_path: Path, backbone_dir: Path, pooling: str, attention: str, opts: dict
) -> None:
    model = trained_like(backbone_dir, pooling, attention, **opts)
    model.save(tmp_path / "model")
    out = export_sentence_transformers(tmp_path / "model", tmp_path / "st")
    st = SentenceTransformer(str(out), trust_remote_code=True)

    assert st.get_embedding_dimension() == model.embedding_dim
    assert_close(model.encode(TEXTS), st.encode(TEXTS))
    assert_close(model.encode(TEXTS, prompt_type="document"), st.encode_document(TEXTS))
    assert_close(model.encode(TEXTS, prompt_type="query"), st.encode_query(TEXTS))
    assert_close(
        model.encode(TEXTS, prompt_type="query"), st.encode(TEXTS, prompt_name="query", batch_size=2)
    )
    task = "Given a claim, find documents that support it"
    expected = model.encode(TEXTS, prompt_type="query", instruction=task)
    assert_close(expected, st.encode_query(TEXTS, instruction=task))
    assert_close(expected, st.encode(TEXTS, prompt=query_prompt(model.config.query_template, task)))

    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in PICKLE_SUFFIXES]
    names = {p.name for p in files}
    assert {"modules.json", "poolattn.json", "pooler.safetensors", "adapter_model.safetensors"} <= names
    reloaded = EmbeddingModel.load(next(out.glob("*_PoolattnModule")))  # the inner dir is a poolattn model
    assert reloaded.config.pooling == pooling


def test_resave_from_sentence_transformers(tmp_path: Path, backbone_dir: Path) -> None:
    """A loaded export is a normal ST model: ``st.save`` writes a directory that loads the same."""
    model = trained_like(backbone_dir, "multilayer", "causal")
    first = SentenceTransformer(
        str(export_sentence_transformers(model, tmp_path / "a")), trust_remote_code=True
    )
    first.save(str(tmp_path / "b"))
    second = SentenceTransformer(str(tmp_path / "b"), trust_remote_code=True)
    assert_close(model.encode(TEXTS, prompt_type="query"), second.encode_query(TEXTS))
    assert_close(model.encode(TEXTS), second.encode(TEXTS))


def test_cli_export_without_bundled_backbone(tmp_path: Path, backbone_dir: Path) -> None:
    model = trained_like(backbone_dir, "eos", "causal", lora=False)
    model.save(tmp_path / "model")
    args = [
        "export",
        str(tmp_path / "model"),
        "--format",
        "sentence-transformers",
        "--output",
        str(tmp_path / "st"),
    ]
    assert cli_main([*args, "--no-bundle-backbone"]) == 0
    assert not list((tmp_path / "st").glob("*/base"))
    st = SentenceTransformer(str(tmp_path / "st"), trust_remote_code=True)
    assert_close(model.encode(TEXTS), st.encode(TEXTS))
    assert cli_main(args) == 2  # refuses to overwrite
    assert cli_main([*args, "--overwrite"]) == 0
    assert list((tmp_path / "st").glob("*/base/model.safetensors"))


def test_loading_needs_trust_remote_code(tmp_path: Path, backbone_dir: Path) -> None:
    """sentence-transformers >= 6 imports non-ST module classes only with trust_remote_code=True."""
    out = export_sentence_transformers(
        trained_like(backbone_dir, "mean", "causal", lora=False), tmp_path / "st"
    )
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(out))


def test_instruction_from_prompt() -> None:
    template = "Instruct: {instruction}\nQuery: {text}"
    prompt = query_prompt(template, "Find a\nduplicate")
    assert prompt == "Instruct: Find a\nduplicate\nQuery: "
    assert instruction_from_prompt(template, prompt) == "Find a\nduplicate"
    assert instruction_from_prompt(SUFFIX_TEMPLATE, query_prompt(SUFFIX_TEMPLATE, "X")) == "X"
    assert instruction_from_prompt(template, "query: ") is None
    assert instruction_from_prompt("{text} <- {instruction}", "anything") is None


def test_round_trip_bf16(tmp_path: Path, backbone_dir: Path) -> None:
    """Under bf16 compute the export keeps the design and dtype: ST's vectors agree with encode()'s
    to bf16 precision (cosine >= 0.999; batching differs, so bit-equality is not expected)."""
    model = trained_like(backbone_dir, "latent", "bidirectional", dtype="bfloat16", exclude_instruction=True)
    model.save(tmp_path / "model")
    st = SentenceTransformer(
        str(export_sentence_transformers(tmp_path / "model", tmp_path / "st")), trust_remote_code=True
    )
    ours, theirs = model.encode(TEXTS), st.encode(TEXTS)
    assert ours.dtype == np.float32
    cosine = (ours * theirs).sum(axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    assert cosine.min() >= 0.999, cosine
