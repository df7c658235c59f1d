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

from poolattn.backbone import verify_attention
from poolattn.cli import main as cli_main
from poolattn.export import export_kind, export_sentence_transformers
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


# plain where ST's own modules reproduce the design; the module export otherwise
PLAIN = {"eos", "mean", "weighted_mean"}


@pytest.mark.parametrize(("pooling", "attention", "opts"), DESIGNS, ids=[d[0] for d in DESIGNS])
def test_round_trip_matches_encode(
    tmp_path: Path, backbone_dir: Path, pooling: str, attention: str, opts: dict
) -> None:
    model = trained_like(backbone_dir, pooling, attention, **opts)
    model.save(tmp_path / "model")
    out = export_sentence_transformers(tmp_path / "model", tmp_path / "st")
    # weighted_mean+exclude_instruction: ST's position weights count the prompt, poolattn's do not
    plain = pooling in PLAIN and not (pooling == "weighted_mean" and opts.get("exclude_instruction"))
    assert export_kind(out) == ("plain" if plain else "module")
    st = SentenceTransformer(str(out), trust_remote_code=not plain)

    assert st.get_embedding_dimension() == model.embedding_dim
    assert_close(model.encode(TEXTS), st.encode(TEXTS))
    assert_close(model.encode(TEXTS, prompt_type="document"), st.encode_document(TEXTS))
    assert_close(model.encode(TEXTS, prompt_type="query"), st.encode_query(TEXTS))
    assert_close(
        model.encode(TEXTS, prompt_type="query"), st.encode(TEXTS, prompt_name="query", batch_size=2)
    )
    task = "Given a claim, find documents that support it"
    expected = model.encode(TEXTS, prompt_type="query", instruction=task)
    assert_close(expected, st.encode(TEXTS, prompt=query_prompt(model.config.query_template, task)))
    scifact = "Given a scientific claim, retrieve documents that support or refute the claim"
    assert_close(
        model.encode(TEXTS, prompt_type="query", instruction=scifact), st.encode(TEXTS, prompt_name="SciFact")
    )
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in PICKLE_SUFFIXES]
    names = {p.name for p in files}
    if plain:
        assert {"modules.json", "model.safetensors", "tokenizer.json"} <= names
        assert not {"poolattn.json", "adapter_model.safetensors"} & names  # merged, no poolattn files
        return
    assert_close(expected, st.encode_query(TEXTS, instruction=task))
    assert {"modules.json", "poolattn.json", "pooler.safetensors", "adapter_model.safetensors"} <= names
    reloaded = EmbeddingModel.load(next(out.glob("*_PoolattnModule")))  # the inner dir is a poolattn model
    assert reloaded.config.pooling == pooling


@pytest.mark.parametrize("pooling", sorted(PLAIN))
@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_plain_export_every_design(tmp_path: Path, backbone_dir: Path, pooling: str, attention: str) -> None:
    """No trust_remote_code, same vectors, the attention mode proven on the loaded weights, and a
    folder the size of the merged weights (the LoRA merged, nothing else bundled)."""
    model = trained_like(backbone_dir, pooling, attention)
    out = export_sentence_transformers(model, tmp_path / "st", plain=True)
    st = SentenceTransformer(str(out))
    verify_attention(st[0].auto_model, attention)  # raises unless the saved config builds the mode
    assert_close(model.encode(TEXTS, prompt_type="query"), st.encode_query(TEXTS))
    assert_close(model.encode(TEXTS), st.encode_document(TEXTS))
    assert model.has_adapter  # the caller's model is not merged in place
    weights = (out / "model.safetensors").stat().st_size
    merged = sum(
        p.numel() * p.element_size() for n, p in model.backbone.named_parameters() if "lora_" not in n
    )
    assert abs(weights - merged) < 0.05 * merged
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert total < weights + 2_000_000  # + tokenizer, configs and card


def test_plain_export_refuses_what_st_cannot_express(tmp_path: Path, backbone_dir: Path) -> None:
    model = trained_like(backbone_dir, "weighted_mean", "causal", exclude_instruction=True)
    model.save(tmp_path / "model")
    args = ["export", str(tmp_path / "model"), "--output", str(tmp_path / "st")]
    assert cli_main([*args, "--plain"]) == 2  # one line: why it cannot be plain
    assert not (tmp_path / "st").exists()
    assert cli_main(args) == 0  # default: falls back to the module export
    assert export_kind(tmp_path / "st") == "module"


def test_resave_from_sentence_transformers(tmp_path: Path, backbone_dir: Path) -> None:
    """A loaded export is a normal ST model: ``st.save`` writes a directory that loads the same."""
    model = trained_like(backbone_dir, "multilayer", "causal")
    first = SentenceTransformer(
        str(export_sentence_transformers(model, tmp_path / "a", plain=False)), trust_remote_code=True
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
        "--module",
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


def test_module_export_needs_trust_remote_code(tmp_path: Path, backbone_dir: Path) -> None:
    """sentence-transformers >= 6 imports non-ST module classes only with trust_remote_code=True."""
    out = export_sentence_transformers(
        trained_like(backbone_dir, "mean", "causal", lora=False), tmp_path / "st", plain=False
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
    """A bf16 model: the module export computes as poolattn does (bf16); the plain export stores
    its merged weights in bf16 and sentence-transformers computes them in float32, matching
    poolattn's float32 run of the same model (cosine >= 0.999; bf16 rounding, so not bit-equal)."""
    from safetensors import safe_open

    for pooling, opts in (("latent", {"exclude_instruction": True}), ("mean", {})):
        model = trained_like(backbone_dir, pooling, "bidirectional", dtype="bfloat16", **opts)
        model.save(tmp_path / pooling)
        out = export_sentence_transformers(tmp_path / pooling, tmp_path / f"{pooling}-st")
        plain = export_kind(out) == "plain"
        assert plain == (pooling == "mean")
        st = SentenceTransformer(str(out), trust_remote_code=not plain)
        if plain:
            with safe_open(str(out / "model.safetensors"), "pt") as weights:
                assert {weights.get_slice(k).get_dtype() for k in weights.keys()} == {"BF16"}
            assert st[0].auto_model.dtype == torch.float32  # stored in bf16, computed in float32
            model = EmbeddingModel.load(tmp_path / pooling, dtype="float32")
        ours, theirs = model.encode(TEXTS), st.encode(TEXTS)
        assert ours.dtype == np.float32
        cosine = (ours * theirs).sum(axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
        assert cosine.min() >= 0.999, cosine


def test_plain_export_ignores_a_chat_template(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    """An instruct model's tokenizer (SmolLM2's) has a chat template; sentence-transformers 6 would
    wrap every text in a chat turn with it, so the export drops it."""
    import copy

    chatty = copy.deepcopy(tokenizer)
    chatty.chat_template = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
    base = save_tiny_backbone(tmp_path / "chatty", chatty)
    model = trained_like(base, "eos", "causal")
    st = SentenceTransformer(str(export_sentence_transformers(model, tmp_path / "st", plain=True)))
    assert_close(model.encode(TEXTS, prompt_type="query"), st.encode_query(TEXTS))
    assert_close(model.encode(TEXTS), st.encode_document(TEXTS))
