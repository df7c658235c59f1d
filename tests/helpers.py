"""Plain helpers for the tests (no fixtures, no tests): the one way to build a tiny model.

- ``build_tokenizer``: a small byte-level BPE trained in well under a second on a built-in word
  list, so no test needs a real model's tokenizer (SmolLM2-style: no BOS added, EOS appended by
  poolattn, its own pad token).
- ``tiny_backbone_config`` / ``tiny_backbone`` / ``save_tiny_backbone``: a tiny random backbone of
  every supported architecture, in memory or saved with its tokenizer as a loadable local ``base``.
- ``training_config``: a small, fast ``TrainConfig``; ``write_pairs``: synthetic training pairs.
- ``refuses``: a reader given a bad file fails with the expected message.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModel,
    Gemma3TextConfig,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from poolattn.training.config import TrainConfig, train_config_from_dict

ARCHITECTURES = ("llama", "mistral", "qwen2", "gemma3")
TINY = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)
SPECIAL = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<pad>", "unk_token": "<unk>"}
VOCAB_SIZE = 1024

# A few hundred English words, the vocabulary the tests' sentences are drawn from; anything else
# still tokenizes (byte-level), only into more pieces.
_WORDS = """
the a an and or of to in on at by for with from about as is are was were be been it its this that
these those there here what which who how why when where not no yes all any some many much more
most other another each every one two three four five six seven eight nine ten first second last
long short small large big little new old good bad great high low same different own only also
very just still even than then so such too again once quick brown fox jumps over lazy dog cat cats
dogs red blue green yellow black white car cars tree trees river rivers city cities song songs
book books rain sun sky sea water fire earth wind light dark day night time year week people man
woman child children world house home school work word words text texts sentence sentences query
queries document documents passage passages answer answers question questions find retrieve classify
given claim claims reviewer review scientific detailed written every supports refutes concrete
experimental evidence paraphrase paraphrases considerably longer needs tokens others do medium
length hello instruct instruction task tasks number numbers plants make energy photosynthesis
converts chemical nothing something thing things play plays played playing run runs ran running eat
eats ate eating read reads reading write writes wrote writing see sees saw seen go goes went gone
make makes made say says said know knows knew think thinks thought take takes took come comes came
give gives gave use uses used look looks looked want wants wanted like likes liked help helps
helped ask asks asked show shows showed try tries tried call calls called keep keeps kept let lets
begin begins began seem seems seemed feel feels felt leave leaves left put puts mean means meant
music sport sports game games team teams film films movie movies food drink fruit apple apples
bread milk coffee tea table chair door window room street road train trains plane bus boat ship
doctor teacher student students friend friends family mother father brother sister king queen war
peace money market price company business government country countries state states law health
science history art language languages computer computers phone data model models embedding
embeddings attention pooling layer layers mean vector vectors companion forces padded batch
""".split()


def build_tokenizer(directory: Path | None = None) -> PreTrainedTokenizerFast:
    """A tiny byte-level BPE (GPT-2 style, like SmolLM2's), saved to ``directory`` when given."""
    corpus = [" ".join(_WORDS[i : i + 12]) for i in range(0, len(_WORDS), 12)]
    # each word also alone and capitalised, so a word costs as many tokens with a space before
    # it as without (as in SmolLM2's vocabulary), whatever its place in a text
    corpus += _WORDS + [w.capitalize() for w in _WORDS] + [f"{w}{i}" for i, w in enumerate(_WORDS[:50])]
    corpus += ["Instruct: Query: 0 1 2 3 4 5 6 7 8 9 . , ; : ! ? ' \" ( ) - _ / \n"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL)
    if directory is not None:
        tokenizer.save_pretrained(directory)
    return tokenizer


def tiny_backbone_config(arch: str, vocab_size: int, **overrides: Any) -> PretrainedConfig:
    """A tiny random config of one architecture; ``overrides`` replace TINY's sizes."""
    sizes = {**TINY, **overrides}
    if arch == "llama":
        return LlamaConfig(vocab_size=vocab_size, **sizes)
    if arch == "mistral":
        return MistralConfig(vocab_size=vocab_size, sliding_window=None, **sizes)
    if arch == "qwen2":
        return Qwen2Config(vocab_size=vocab_size, **sizes)
    if arch == "gemma3":
        # Like the real Gemma 3: sliding-window layers, then a full-attention one.
        layer_types = (["sliding_attention"] * (sizes["num_hidden_layers"] - 1)) + ["full_attention"]
        sizes = {"head_dim": 8, "sliding_window": 4, "layer_types": layer_types, **sizes}
        return Gemma3TextConfig(vocab_size=vocab_size, **sizes)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def tiny_backbone(
    tokenizer: PreTrainedTokenizerBase,
    arch: str = "llama",
    seed: int = 0,
    attn_implementation: str = "sdpa",
    **overrides: Any,
) -> PreTrainedModel:
    """A tiny random backbone whose vocabulary fits ``tokenizer``, from a fixed seed."""
    torch.manual_seed(seed)
    config = tiny_backbone_config(arch, len(tokenizer), **overrides)
    return AutoModel.from_config(config, attn_implementation=attn_implementation)


def save_tiny_backbone(
    directory: Path, tokenizer: PreTrainedTokenizerBase, arch: str = "llama", seed: int = 0, **overrides: Any
) -> Path:
    """A tiny random backbone saved with its tokenizer, so poolattn (and subprocesses) load it by path."""
    tiny_backbone(tokenizer, arch, seed, **overrides).save_pretrained(directory)
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


def training_config(base: Path, train: list[Path], output: Path, **sections: dict[str, Any]) -> TrainConfig:
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
        data.setdefault(name, {}).update(values)
    return train_config_from_dict(data)


def refuses(
    read: Callable[[Path], Any], path: Path, text: str, match: str, error: type[Exception] = Exception
) -> None:
    """Write ``text`` to ``path``; ``read(path)`` must raise ``error`` with a message matching ``match``."""
    path.write_text(text)
    with pytest.raises(error, match=match):
        read(path)


@contextlib.contextmanager
def registered_pooler(name: str, cls: type) -> Iterator[str]:
    """Register a pooler class for one test only, so no other test's parametrisation sees it."""
    from poolattn.pooling import POOLERS, register

    assert name not in POOLERS
    register(name)(cls)
    try:
        yield name
    finally:
        POOLERS.pop(name, None)
