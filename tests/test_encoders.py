"""The one encoder layer (``poolattn.backends``): every model-string kind resolves to a backend,
one fingerprint serves evaluation and mining (unchanged in content, so old embedding caches stay
valid), and the one design parser takes its pooler names from the registry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import save_tiny_backbone, write_pairs

from poolattn.backends import resolve
from poolattn.backends.base import (
    Backend,
    PoolattnBackend,
    SentenceTransformerBackend,
    as_backend,
)
from poolattn.backends.resolve import load_backend
from poolattn.config import ConfigError, to_dict
from poolattn.design import model_config, parse_design, parse_design_spec
from poolattn.evaluation.encoder import MTEBEncoder
from poolattn.experiment.plan import ExperimentConfig
from poolattn.model import EmbeddingModel
from poolattn.pooling import POOLERS, Pooler, register
from poolattn.training import read_examples
from poolattn.training.mining import MiningSettings, mine_file

TEXTS = ["red cat", "blue dog", "green tree river"]


@pytest.fixture
def backbone_dir(tmp_path: Path, tokenizer) -> Path:
    return save_tiny_backbone(tmp_path / "tiny", tokenizer)


@pytest.fixture
def first_token_pooler() -> Iterator[str]:
    """A user pooler registered for one test (the first token's last-layer state)."""

    @register("first_token")
    class FirstTokenPooler(Pooler):
        def forward(self, hidden_states, attention_mask, pooling_mask):  # noqa: D102
            return hidden_states[-1][:, 0].float()

    yield "first_token"
    POOLERS.pop("first_token", None)


def old_fingerprint(header: object, module: torch.nn.Module, sort_keys: bool) -> str:
    """The formula used before the refactor, kept here so cached embeddings stay addressable."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(header, sort_keys=sort_keys).encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- resolver
def test_saved_poolattn_dir_resolves_to_the_same_model(backbone_dir: Path, tmp_path: Path) -> None:
    model = EmbeddingModel.from_pretrained(str(backbone_dir), pooling="mean", attention="bidirectional")
    model.save(tmp_path / "saved")
    backend = load_backend(str(tmp_path / "saved"))
    assert isinstance(backend, PoolattnBackend) and backend.name == "poolattn/mean+bidirectional"
    assert backend.fingerprint() == PoolattnBackend(model).fingerprint()
    expected = model.encode(TEXTS, prompt_type="document")
    got = backend.encode(TEXTS, query=False, instruction=None, batch_size=2)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_design_spec_on_a_local_backbone_builds_that_design(backbone_dir: Path) -> None:
    backend = load_backend(f"{backbone_dir}:mean+bidirectional")
    assert isinstance(backend, PoolattnBackend)
    assert (backend.model.config.pooling, backend.model.config.attention) == ("mean", "bidirectional")
    assert backend.encode(TEXTS, query=True, instruction="Find", batch_size=4).shape == (3, 32)


def test_sentence_transformers_dir_resolves_by_its_markers(backbone_dir: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer, models

    word = models.Transformer(str(backbone_dir))
    st = SentenceTransformer(modules=[word, models.Pooling(word.get_embedding_dimension(), "mean")])
    st.save(str(tmp_path / "my-st"))
    backend = load_backend(str(tmp_path / "my-st"))
    assert isinstance(backend, SentenceTransformerBackend) and not backend.uses_instructions
    assert backend.name == "sentence-transformers/my-st"
    vectors = backend.encode(TEXTS, query=True, instruction="ignored", batch_size=2)
    assert vectors.shape == (3, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    cast = load_backend(str(tmp_path / "my-st"), dtype="bfloat16")  # loaded in float32, cast whole
    assert {p.dtype for p in cast.model.parameters()} == {torch.bfloat16}
    with pytest.raises(ConfigError, match="dtype: 'bf16' is not valid"):
        load_backend(str(tmp_path / "my-st"), dtype="bf16")


@pytest.mark.parametrize("spec", ["all-MiniLM-L6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"])
def test_minilm_names_mean_the_packaged_copy(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(resolve, "load_sentence_transformer", lambda name: asked.append(name) or object())
    backend = load_backend(spec)
    assert isinstance(backend, SentenceTransformerBackend) and asked == ["all-MiniLM-L6-v2"]
    assert backend.name == "sentence-transformers/all-MiniLM-L6-v2"


def test_backbone_alias_and_alias_spec_go_to_from_pretrained(
    tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[tuple, dict]] = []

    def fake(*args, **kwargs) -> EmbeddingModel:
        calls.append((args, kwargs))
        return tiny_model()

    monkeypatch.setattr(EmbeddingModel, "from_pretrained", staticmethod(fake))
    assert isinstance(load_backend("smollm2-135m"), PoolattnBackend)
    assert isinstance(load_backend("smollm2-135m:latent+causal"), PoolattnBackend)
    assert calls == [
        (("smollm2-135m",), {}),
        (("smollm2-135m",), {"attention": "causal", "pooling": "latent"}),
    ]


def test_unknown_strings_and_foreign_dirs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="design spec like 'smollm2-135m:eos\\+causal'"):
        load_backend("no-such-model")
    (tmp_path / "plain").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a poolattn model dir"):
        load_backend(str(tmp_path / "plain"))
    with pytest.raises(ConfigError, match="'sideways' is not valid"):
        load_backend("smollm2-135m:eos+sideways")


def test_as_backend_wraps_models_and_passes_backends_through(tiny_model) -> None:
    model = tiny_model()
    backend = as_backend(model)
    assert isinstance(backend, PoolattnBackend) and isinstance(backend, Backend)
    assert as_backend(backend) is backend
    with pytest.raises(TypeError, match="cannot encode with a str"):
        as_backend("a string")


# ----------------------------------------------------------------------------- fingerprint
def test_one_fingerprint_for_evaluation_and_mining_unchanged_in_content(
    backbone_dir: Path, tmp_path: Path
) -> None:
    model = EmbeddingModel.from_pretrained(str(backbone_dir), pooling="latent", attention="causal")
    model.save(tmp_path / "m")
    weights = old_fingerprint(to_dict(model.config), model, sort_keys=True)
    assert model.fingerprint() == weights
    dtype = str(model.compute_dtype).removeprefix("torch.")
    with_dtype = hashlib.blake2b(f"{weights}|compute_dtype={dtype}".encode(), digest_size=16).hexdigest()
    mining = load_backend(str(tmp_path / "m"))  # what mine_file resolves
    evaluation = MTEBEncoder(load_backend(str(tmp_path / "m")), cache_dir=None)  # and poolattn eval
    try:
        assert mining.fingerprint() == evaluation.model_fingerprint == with_dtype
    finally:
        evaluation.cache.close()


def test_sentence_transformers_fingerprint_unchanged_in_content() -> None:
    module = torch.nn.Linear(3, 2)
    module.max_seq_length = 128  # what SentenceTransformerBackend reads besides the weights
    backend = SentenceTransformerBackend(module, "ref")
    header = {"name": "sentence-transformers/ref", "max_seq_length": 128}
    assert backend.fingerprint() == old_fingerprint(header, module, sort_keys=False)
    with torch.no_grad():
        module.weight[0, 0] += 1
    assert backend.fingerprint() != old_fingerprint(header, torch.nn.Linear(3, 2), sort_keys=False)


def test_mining_resolves_model_strings_like_evaluation(backbone_dir: Path, tmp_path: Path) -> None:
    model = EmbeddingModel.from_pretrained(str(backbone_dir), pooling="mean", attention="causal")
    model.save(tmp_path / "m")
    pairs = write_pairs(tmp_path / "pairs.jsonl", 12, negatives=False)
    settings = MiningSettings(rank_start=0, rank_end=5, batch_size=4)
    by_string, n_in, n_out = mine_file(pairs, tmp_path / "a.jsonl", str(tmp_path / "m"), settings)
    by_object, _, _ = mine_file(pairs, tmp_path / "b.jsonl", PoolattnBackend(model), settings)
    assert n_in == 12 and n_out > 0
    triples = [
        [(e.query, e.positive, e.negatives) for e in read_examples(p)[0]] for p in (by_string, by_object)
    ]
    assert triples[0] == triples[1]


# ----------------------------------------------------------------------------- design parser
def test_design_parser_takes_pooler_names_from_the_registry(first_token_pooler: str) -> None:
    assert parse_design(f"{first_token_pooler}+causal") == (first_token_pooler, "causal")
    assert parse_design_spec(f"smollm2-135m:{first_token_pooler}+bidirectional") == (
        "smollm2-135m",
        first_token_pooler,
        "bidirectional",
    )
    assert model_config(pooling=first_token_pooler).pooling == first_token_pooler  # the config agrees


def test_registered_pooler_resolves_end_to_end(first_token_pooler: str, backbone_dir: Path) -> None:
    backend = load_backend(f"{backbone_dir}:{first_token_pooler}+causal")
    assert type(backend.model.pooler).__name__ == "FirstTokenPooler"
    for text in TEXTS:  # one text at a time: no padding, so token 0 is the text's first token
        with torch.no_grad():
            states = backend.model.hidden_states(backend.model.tokenize([text], "document"))
        first = torch.nn.functional.normalize(states[-1][:, 0].float(), dim=-1).numpy()
        got = backend.encode([text], query=False, instruction=None, batch_size=4)
        np.testing.assert_allclose(got, first, atol=1e-5)
    vectors = backend.encode(["red cat", "red dog"], query=False, instruction=None, batch_size=4)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)  # causal: same first token


def test_experiment_plan_and_eval_share_the_parser(first_token_pooler: str) -> None:
    from poolattn.experiment import parse_design as experiment_parse_design

    assert experiment_parse_design is parse_design
    with pytest.raises(ConfigError, match="experiment.designs: 'max\\+causal' pooling: 'max' is not valid"):
        ExperimentConfig.model_for(_PlanStub(), "max+causal")
    assert ExperimentConfig.model_for(_PlanStub(), f"{first_token_pooler}+causal") == {
        "base": "b",
        "pooling": first_token_pooler,
        "attention": "causal",
    }


class _PlanStub:
    shared = {"model": {"base": "b"}}


def test_a_backbone_folder_resolves_to_its_default_design(backbone_dir: Path) -> None:
    """A plain transformers folder (what mining accepted before the encoder layer) still works."""
    backend = load_backend(str(backbone_dir))
    assert isinstance(backend, PoolattnBackend)
    assert (backend.model.config.pooling, backend.model.config.attention) == ("eos", "causal")
