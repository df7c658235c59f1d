"""Hard-negative mining through its public entry points (``mine_file`` and ``poolattn mine``) with
a saved tiny poolattn model: every query gets the number of negatives it asked for, distinct,
and never its own positive or its query."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import refuses, save_tiny_backbone, write_pairs

from poolattn.cli import main
from poolattn.config import ConfigError
from poolattn.model import EmbeddingModel
from poolattn.training.mining import MiningSettings, mine_file, read_corpus

N_PAIRS = 24


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """A saved poolattn model (mean pooling) on a tiny random backbone: a model string for mining."""
    base = save_tiny_backbone(tmp_path_factory.mktemp("tiny"), tokenizer)
    model = EmbeddingModel.from_pretrained(str(base), pooling="mean", attention="causal", max_length=24)
    return model.save(tmp_path_factory.mktemp("models") / "miner")


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "pairs.jsonl", N_PAIRS, negatives=False)


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_negatives(records: list[dict], pairs: Path, wanted: int) -> None:
    """Every input pair comes back with ``wanted`` distinct negatives, none its positive or query."""
    source = read_records(pairs)
    assert [(r["query"], r["positive"]) for r in records] == [(r["query"], r["positive"]) for r in source]
    for r in records:
        negatives = [r["negative"]] if wanted == 1 else r["negative"]
        assert len(negatives) == wanted and len(set(negatives)) == wanted, r
        assert r["positive"] not in negatives and r["query"] not in negatives, r


# The filters off: no margin below the positive (scores lie in [-1, 1]) and no near-duplicate
# check; on a random model they could leave a query with fewer candidates than it asks for.
NO_FILTERS = {"margin": -2.0, "max_duplicate_similarity": 1.01}


@pytest.mark.parametrize("wanted", [1, 3])
def test_every_query_gets_its_negatives(model_dir: Path, pairs: Path, tmp_path: Path, wanted: int) -> None:
    settings = MiningSettings(num_negatives=wanted, batch_size=8, **NO_FILTERS)
    path, n_in, n_out = mine_file(pairs, tmp_path / "out.jsonl", str(model_dir), settings)
    assert (n_in, n_out) == (N_PAIRS, N_PAIRS)
    check_negatives(read_records(path), pairs, wanted)


def test_cli_mines_the_requested_number(
    model_dir: Path, pairs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "triples.jsonl"
    args = ["mine", str(pairs), "-o", str(out), "--model", str(model_dir), "--num-negatives", "2"]
    filters = ["--margin", "-2", "--max-duplicate-similarity", "1.01", "--range", "0:10"]
    assert main([*args, *filters]) == 0
    assert f"mined {N_PAIRS} triples from {N_PAIRS} pairs" in capsys.readouterr().out
    check_negatives(read_records(out), pairs, 2)


def test_a_triple_never_has_fewer_negatives_than_asked(model_dir: Path, pairs: Path, tmp_path: Path) -> None:
    """With the default filters a query may be dropped, but a kept one has all its negatives."""
    settings = MiningSettings(num_negatives=3, batch_size=8)
    path, _, _ = mine_file(pairs, tmp_path / "out.jsonl", str(model_dir), settings)
    records = read_records(path)
    assert records and all(isinstance(r["negative"], list) and len(r["negative"]) == 3 for r in records)


def test_a_variant_of_the_positive_never_lets_the_positive_through(
    model_dir: Path, pairs: Path, tmp_path: Path
) -> None:
    """The pool holds the positives and a corpus with case/spacing variants of them: neither the
    positive nor a variant of it (the same text to a reader) may come back as its negative."""
    positives = [r["positive"] for r in read_records(pairs)]
    corpus = tmp_path / "corpus.txt"
    variants = [p.upper() for p in positives[:8]] + ["  ".join(p.split()) for p in positives[8:16]]
    corpus.write_text("\n".join(variants))
    settings = MiningSettings(num_negatives=3, batch_size=8, **NO_FILTERS)
    path, _, n_out = mine_file(pairs, tmp_path / "out.jsonl", str(model_dir), settings, corpus_path=corpus)
    assert n_out == N_PAIRS
    for r in read_records(path):
        assert normalised(r["positive"]) not in {normalised(n) for n in r["negative"]}, r


def test_a_bad_corpus_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    no_text = '{"text": "a json text"}\nplain text line\n\n{"title": "no text field"}\n'
    refuses(read_corpus, corpus, no_text, f"{corpus}:4: field 'text' must be a string", ConfigError)
    corpus.write_text('{"text": "a json text"}\nplain text line\n')
    assert read_corpus(corpus) == ["a json text", "plain text line"]
    refuses(read_corpus, corpus, '{"text": broken\n', f"{corpus}:1: invalid JSON", ConfigError)
