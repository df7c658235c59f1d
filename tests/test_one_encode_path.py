"""One encode path: the library, ``poolattn encode``, distributed evaluation and the layer ablation
build the same batches (``EmbeddingModel.input_batches``) and so return the same vectors, bit for
bit; ``poolattn encode`` never changes a model it is given."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import poolattn.model as model_module
from poolattn.backends.base import PoolattnBackend
from poolattn.config import ConfigError
from poolattn.encode_file import encode_file
from poolattn.evaluation.distributed import ProcessGroup, ShardedBackend
from poolattn.evaluation.encoder import MTEBEncoder
from poolattn.layer_ablation import LayerSubsetBackend, LayerVectorCache
from poolattn.model import EmbeddingModel
from poolattn.st_module import PoolattnModule, query_prompt

INSTRUCTION = "Retrieve passages that answer the question"
TEXTS = [
    "A man is playing a guitar.",
    "ok",
    "The stock market fell today, sharply and for the third day running.",
    "x y z " * 40,  # over max_length: truncated, EOS kept
    "Photosynthesis converts light into chemical energy.",
    "tabs\tinside",
] + [f"text number {i} " + "word " * (i % 7) for i in range(13)]  # 19 unique texts of varied lengths
BATCH = 3


def library(model: EmbeddingModel, query: bool) -> np.ndarray:
    if query:
        return model.encode(TEXTS, prompt_type="query", instruction=INSTRUCTION, batch_size=BATCH)
    return model.encode(TEXTS, prompt_type="document", batch_size=BATCH)


def encode_command(model: EmbeddingModel, query: bool, tmp_path: Path) -> np.ndarray:
    source, out = tmp_path / "texts.txt", tmp_path / "vectors.npy"
    source.write_text("".join(t + "\n" for t in TEXTS))
    options = {"prompt_type": "query", "instruction": INSTRUCTION} if query else {}
    encode_file(model, source, out, batch_size=BATCH, progress=False, overwrite=True, **options)
    return np.load(out)


def distributed(model: EmbeddingModel, query: bool) -> np.ndarray:
    """Rank 0's sharded encoder of a one-process group, behind evaluation's mteb encoder."""
    backend = PoolattnBackend(model)
    sharded = ShardedBackend(backend, ProcessGroup(), backend.fingerprint())
    encoder = MTEBEncoder(sharded, cache_dir=None, batch_size=BATCH)
    try:
        return encoder.encode_texts(TEXTS, query=query, instruction=INSTRUCTION if query else None)
    finally:
        encoder.cache.close()


def ablation(model: EmbeddingModel, query: bool, expected: np.ndarray) -> None:
    """The ablation's "all layers" condition: its backbone batches are the library's, so pooled
    batch by batch its cached per-layer vectors give the library's vectors bit for bit; its
    backend pools every cached text in one pass (fewer torch calls on a 65-condition grid), which
    moves the head's float32 rounding (<= 1e-6) but nothing else."""
    cache = LayerVectorCache(model, batch_size=BATCH)
    every = range(1, cache.num_layers + 1)
    instruction = INSTRUCTION if query else None
    vectors = LayerSubsetBackend(cache, every, "fp").encode(
        TEXTS, query=query, instruction=instruction, batch_size=BATCH
    )
    assert cache.backbone_texts == len(TEXTS) and np.abs(vectors - expected).max() <= 1e-6
    cached = torch.stack(
        [cache.vectors_by_key[k] for k in cache.keys(TEXTS, query=query, instruction=instruction)]
    )
    batches = model.input_batches(TEXTS, "query" if query else "document", instruction, BATCH)
    for rows, _ in batches:
        pooled = torch.nn.functional.normalize(cache.pool(cached[rows], every), dim=-1)
        assert np.array_equal(pooled.numpy(), expected[rows])


@pytest.mark.parametrize("query", [True, False])
@pytest.mark.parametrize(
    "design",
    [
        {
            "pooling": "multilayer",
            "attention": "bidirectional",
            "padding_side": "left",
            "poolers": {"multilayer": {"layer_vector": "mean"}},
        },
        {
            "pooling": "multilayer",
            "attention": "causal",
            "padding_side": "right",
            "poolers": {"multilayer": {"layer_vector": "eos"}},
        },
        {"pooling": "mean", "attention": "bidirectional", "padding_side": "left"},
    ],
    ids=["multilayer-mean-left", "multilayer-eos-right", "mean-left"],
)
def test_every_encoder_gives_the_library_vectors(
    tiny_model: Callable, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, design: dict, query: bool
) -> None:
    monkeypatch.setattr(model_module, "ENCODE_CHUNK", 6)  # several chunks (distributed units) of 2 batches
    model = tiny_model(**design, exclude_instruction=True, max_length=24)
    expected = library(model, query)
    assert expected.shape == (len(TEXTS), model.embedding_dim) and expected.dtype == np.float32
    paths = {
        "poolattn encode": encode_command(model, query, tmp_path),
        "distributed": distributed(model, query),
    }
    for name, vectors in paths.items():
        assert vectors.dtype == np.float32 and np.array_equal(vectors, expected), name  # bit for bit
    if design["pooling"] == "multilayer":
        ablation(model, query, expected)


def test_st_module_tokenizes_as_the_model(tiny_model: Callable) -> None:
    """The sentence-transformers module's query prompt gives the model's own query inputs."""
    model = tiny_model("mean", "bidirectional", padding_side="left", exclude_instruction=True)
    module = PoolattnModule(model, bundle_backbone=False)
    ours = model.tokenize(TEXTS, "query", INSTRUCTION)
    theirs = module.preprocess(TEXTS, prompt=query_prompt(model.config.query_template, INSTRUCTION))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    free = module.preprocess(TEXTS[:2], prompt="Represent: ")
    assert free["pooling_mask"].sum() < free["attention_mask"].sum()  # a free-form prefix stays out


def test_encode_file_leaves_a_callers_model_as_it_was(tiny_model: Callable, tmp_path: Path) -> None:
    model = tiny_model("latent", "bidirectional", max_length=32)
    model.train()
    config, weights = model.config, {k: v.clone() for k, v in model.state_dict().items()}
    source = tmp_path / "t.txt"
    source.write_text("a fairly long sentence that will be cut short by the token limit\nshort\n")
    encode_file(model, source, tmp_path / "v.npy", max_length=6, progress=False)
    assert model.training and model.config is config and config.max_length == 32
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in weights.items())
    with pytest.raises(ConfigError, match="dtype: applies to a model named by a string"):
        encode_file(model, source, tmp_path / "w.npy", dtype="float32", progress=False)

    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(modules=[PoolattnModule(model, bundle_backbone=False)], device="cpu")
    st.train()  # sentence-transformers' encode switches its model to eval mode and leaves it so
    encode_file(st, source, tmp_path / "st.npy", progress=False)
    assert st.training and model.training
    with pytest.raises(ConfigError, match="max_length: set max_seq_length"):
        encode_file(st, source, tmp_path / "st2.npy", max_length=6, progress=False)
    assert st.max_seq_length == 32
